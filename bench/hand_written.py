"""Each hand-written hot path against the code it replaces, in CPU per call.

    python -m bench.hand_written [--calls 3000]

- a steady document's values: clymene/_speedups.c `shape_values` against the Python
  path of `parser.values_in_shape` (the same function with the extension unused);
- remote-write encoding of a scrape batch of known series: `_speedups.encode_known`
  against the Python loop of `remote_write_pb._encode_known`;
- the GET of a target and the POST of a remote-write body: clymene.http1 against urllib3
  (a connection pool used directly, as clymene did before; requests costs more again).

The GET and POST go to a synthetic target and a remote-write sink in processes of their
own on 127.0.0.1; only the CPU time of the calling thread is counted. Calls run back to
back, so caches are warm: in a farm every figure is higher (bench/scrape_profile.py
--pace shows by how much), the ratios hold.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import urllib3

from bench.scrape_profile import _start, _stop
from bench.targets import body
from clymene import http1
from clymene.scrape import parser
from clymene.storage import remote_write_pb as pb

TEXT = "text/plain; version=0.0.4; charset=utf-8"


def _cpu_per_call(fn: Callable[[], object], calls: int) -> float:
    fn()
    start = time.thread_time()
    for _ in range(calls):
        fn()
    return (time.thread_time() - start) / calls


def _with_and_without_c(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    c = _cpu_per_call(fn, calls)
    saved = parser._speedups, pb._speedups
    parser._speedups = pb._speedups = None
    try:
        python = _cpu_per_call(fn, calls)
    finally:
        parser._speedups, pb._speedups = saved
    return c, python


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hand_written", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--series", type=int, default=500)
    args = p.parse_args(argv)
    if parser._speedups is None:
        raise SystemExit("clymene._speedups is not built: pip install -e . first")
    rows: list[tuple[str, str, float, str, float]] = []

    first, second = body(args.series, 0), body(args.series, 1)
    parser.parse(first, TEXT)
    shape = parser.text_shape(first, TEXT)
    assert shape is not None
    c, python = _with_and_without_c(lambda: parser.values_in_shape(second, TEXT, shape),
                                    args.calls)
    rows.append((f"values of a steady document ({args.series} lines)", "C", c, "Python", python))

    labels = [tuple(sorted({"__name__": key.partition("{")[0], "job": "bench",
                            "instance": "127.0.0.1:1", "i": str(i)}.items()))
              for i, (key, _, _) in enumerate(parser.parse(first, TEXT))]
    values = [v for _, v, _ in parser.parse(second, TEXT)]
    batch = [(lb, v, 1_700_000_000_000) for lb, v in zip(labels, values, strict=True)]
    pb.encode_write_request(batch)  # heads cached, as after a target's first scrape
    c, python = _with_and_without_c(lambda: pb.encode_write_request(batch), args.calls)
    rows.append((f"remote-write encoding ({len(batch)} samples)", "C", c, "Python", python))

    workdir = Path(tempfile.mkdtemp(prefix="clymene-hand-written-"))
    procs: list[subprocess.Popen] = []
    try:
        target, info = _start(["bench.targets", "--targets", "1", "--series",
                               str(args.series)], workdir / "t.json", workdir)
        procs.append(target)
        sink, sink_info = _start(["bench.sink"], workdir / "s.json", workdir)
        procs.append(sink)
        port, sink_port = info["ports"][0], sink_info["port"]
        headers = {"Accept": "text/plain", "Accept-Encoding": "gzip",
                   "User-Agent": "clymene/bench"}

        pool = http1.Pool("127.0.0.1", port)
        head = http1.request_head("GET", "/metrics", "127.0.0.1", port, headers)

        def lean_get() -> bytes:
            deadline = time.monotonic() + 10
            with pool.request("GET", head, b"", 10, deadline) as resp:
                return resp.read(deadline)

        manager = urllib3.PoolManager(retries=False)
        url_pool = manager.connection_from_url(f"http://127.0.0.1:{port}/metrics")

        def urllib3_get() -> bytes:
            resp = url_pool.urlopen("GET", "/metrics", headers=headers, retries=False,
                                    redirect=False, preload_content=False,
                                    decode_content=False, timeout=urllib3.Timeout(10, 10))
            try:
                return resp.read(decode_content=False)
            finally:
                resp.release_conn()

        gets = max(1, args.calls // 3)
        rows.append(("GET of a target (gzip body, not unpacked)", "http1",
                     _cpu_per_call(lean_get, gets), "urllib3", _cpu_per_call(urllib3_get, gets)))

        payload = pb.compress(pb.encode_write_request(batch))
        post_headers = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                        "X-Prometheus-Remote-Write-Version": "0.1.0",
                        "User-Agent": "clymene/bench"}
        sink_pool = http1.Pool("127.0.0.1", sink_port)

        def lean_post() -> bytes:
            deadline = time.monotonic() + 10
            post_head = http1.request_head("POST", "/api/v1/write", "127.0.0.1", sink_port,
                                           post_headers, len(payload))
            with sink_pool.request("POST", post_head, payload, 10, deadline) as resp:
                return resp.read(deadline)

        sink_url_pool = manager.connection_from_url(f"http://127.0.0.1:{sink_port}/")

        def urllib3_post() -> bytes:
            return sink_url_pool.urlopen("POST", "/api/v1/write", body=payload,
                                         headers=post_headers, retries=False, redirect=False,
                                         timeout=urllib3.Timeout(total=10)).data

        rows.append((f"POST of a remote-write body ({len(payload)} bytes)", "http1",
                     _cpu_per_call(lean_post, gets), "urllib3",
                     _cpu_per_call(urllib3_post, gets)))
    finally:
        _stop(procs)
        shutil.rmtree(workdir, ignore_errors=True)

    print("| hot path | hand-written | us per call | replaced code | us per call | ratio |")
    print("|---|---|---:|---|---:|---:|")
    for what, mine, mine_s, theirs, theirs_s in rows:
        print(f"| {what} | {mine} | {mine_s * 1e6:.1f} | {theirs} | {theirs_s * 1e6:.1f} "
              f"| {theirs_s / mine_s:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
