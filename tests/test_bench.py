"""Tests of the benchmark's parts: targets, sink, CPU accounting (`pytest bench/test_bench.py`)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import ThreadingHTTPServer

import cramjam
import pytest

from bench import e2e
from bench.sink import Counts, count_samples, make_handler
from bench.targets import FAMILIES, TargetServer, body, go_float, plan
from clymene.scrape import STALE_NAN
from clymene.scrape.parser import parse
from clymene.storage.remote_write_pb import encode_write_request

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.mark.parametrize(("value", "text"), [
    (0.0, "0"), (1.0, "1"), (100.0, "100"), (123456.0, "123456"), (1234567.0, "1.234567e+06"),
    (1e11, "1e+11"), (9.1e9, "9.1e+09"), (0.25, "0.25"), (0.0001, "0.0001"),
    (1.5e-05, "1.5e-05"), (-3.5, "-3.5"), (5000.37, "5000.37"), (12345678.9, "1.23456789e+07"),
])
def test_go_float_writes_what_go_writes(value: float, text: str) -> None:
    assert go_float(value) == text


@pytest.mark.parametrize("series", [1, 7, 14, 100, 500, 1234])
def test_body_has_exactly_the_asked_series(series: int) -> None:
    bodies = [body(series, v) for v in range(3)]
    for b in bodies:
        entries = parse(b, "text/plain; version=0.0.4")
        assert len(entries) == series
        assert len({key for key, _, _ in entries}) == series  # no duplicate series
    keys = [[k for k, _, _ in parse(b, "text/plain")] for b in bodies]
    assert keys[0] == keys[1] == keys[2]  # same series in every variant
    assert bodies[0] != bodies[1]  # ... with other values


def test_body_mix_at_500_series() -> None:
    kinds = {family[1]: units for family, units in plan(500)}
    assert set(kinds) == {"counter", "gauge", "histogram", "summary"}
    text = body(500, 0).decode()
    assert '# TYPE node_cpu_seconds_total counter' in text
    assert 'node_cpu_seconds_total{cpu="0",mode="idle"} 5000' in text
    assert 'http_request_duration_seconds_bucket{handler="/api/v1/endpoint0",le="+Inf"} 1000' in text
    assert sum(units * family[3] for family, units in plan(500)) == 500
    assert len(FAMILIES) == 16


def test_count_samples_matches_the_encoder() -> None:
    batch = [((("__name__", "m"), ("i", str(i)), ("pad", "x" * 200)), float(i), 1000 + i)
             for i in range(300)]
    batch += [(batch[0][0], 2.0, 5000), (batch[1][0], STALE_NAN, 5000)]
    data = encode_write_request(batch)
    assert count_samples(data) == (300, 302)
    with pytest.raises(ValueError):
        count_samples(data[:-3])


def _get(url: str, headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers)
    with _opener.open(req, timeout=5) as r:
        return dict(r.headers), r.read()


def test_target_server_rotates_bodies_gzips_and_counts_agents() -> None:
    server = TargetServer(targets=2, series=20, variants=2)
    stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(stop,))
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.ports[1]}/metrics"
        h1, b1 = _get(url, {"User-Agent": "Prometheus/2.42.0", "Accept-Encoding": "gzip"})
        h2, b2 = _get(url, {"User-Agent": "clymene/0.1.0"})
        assert h1["Content-Encoding"] == "gzip"
        assert "Content-Encoding" not in h2
        assert h2["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        # Target 1 starts at variant 1, then variant 0.
        assert gzip.decompress(b1) == body(20, 1)
        assert b2 == body(20, 0)
        _, stats = _get(f"http://127.0.0.1:{server.control_port}/stats", {})
        assert json.loads(stats) == {"by_agent": {"Prometheus": 1, "clymene": 1}, "served": 2}
    finally:
        stop.set()
        thread.join()
        server.close()


def test_sink_counts_samples_and_stale_markers() -> None:
    counts = Counts()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(counts))
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        labels = (("__name__", "up"), ("job", "x"))
        payload = encode_write_request([(labels, 1.0, 1), (labels, STALE_NAN, 2)])
        req = urllib.request.Request(f"{url}/api/v1/write",
                                     data=bytes(cramjam.snappy.compress_raw(payload)),
                                     method="POST")
        with _opener.open(req, timeout=5) as r:
            assert r.status == 204
        bad = urllib.request.Request(f"{url}/api/v1/write", data=b"not snappy", method="POST")
        with pytest.raises(urllib.error.HTTPError) as exc:
            _opener.open(bad, timeout=5)
        assert exc.value.code == 400
        _, got = _get(f"{url}/count", {})
        assert json.loads(got) == {"requests": 1, "bytes": len(req.data), "series": 1,
                                   "samples": 2, "stale_markers": 1, "errors": 1}
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# A parent that forks a child burning ~0.6 s of CPU, waits for it, then sleeps: the
# child's CPU reaches the tree's total only through the parent's cutime/cstime.
_BURNER = """
import os, time
time.sleep(0.3)
pid = os.fork()
if pid == 0:
    t = time.process_time()
    while time.process_time() - t < 0.6:
        pass
    os._exit(0)
os.waitpid(pid, 0)
time.sleep(30)
"""


def test_cpu_of_a_child_that_exits_in_the_window_is_counted() -> None:
    proc = subprocess.Popen([sys.executable, "-c", _BURNER], start_new_session=True)
    try:
        system = e2e.System("burner", [e2e.Proc("burner", proc, e2e.Path(os.devnull))])
        sampler = e2e.Sampler([system])
        sampler.begin()  # before the fork (the parent sleeps 0.3 s first)
        deadline = time.monotonic() + 15
        forked = False
        while time.monotonic() < deadline:
            size = len(system.tree(e2e.scan_procs()))
            forked = forked or size == 2
            if forked and size == 1:
                break  # the child burned its CPU and was reaped
            time.sleep(0.02)
        sampler.end()
        assert forked
        cpu = sampler.cpu_seconds("burner")
        assert 0.58 <= cpu <= 0.8, cpu
        assert set(sampler.breakdown("burner")) == {"burner"}
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def test_parse_duration() -> None:
    assert e2e.parse_duration("5s") == 5.0
    assert e2e.parse_duration("1m30s") == 90.0
    assert e2e.parse_duration("500ms") == 0.5
    assert e2e.parse_duration("12") == 12.0
    assert e2e.go_duration(0.5) == "500ms"
    assert e2e.go_duration(10) == "10s"
    with pytest.raises(Exception, match="invalid duration"):
        e2e.parse_duration("5 parsecs")
