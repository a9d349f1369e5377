"""Log agent throughput: CRI files -> `clymene promtail` -> the Loki test receiver
(or, with `--output kafka`, a Tansu broker's `clymene-logs` topic).

    python -m bench.logs_throughput --lines 300000 --files 10 --size 200 [--output kafka]

Writes `--lines` CRI lines of `--size` bytes over `--files` files under a temporary
/var/log/pods-like tree while `clymene promtail` (its own process, pipeline `cri: {}`,
protobuf+snappy by default) tails them and pushes to tests/loki_receiver.py in this
process. Measures the agent's CPU seconds (utime+stime from /proc/<pid>/stat) from just
before the first line is written until the receiver holds every line, and reports lines
per CPU second (lines/s per core) and wall-clock lines/s. The receiver's decoding is not
counted. Checks that every line arrived exactly once, in order per file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.loki_receiver import LokiReceiver  # noqa: E402
from tests.servers import free_port, http_get, start_tansu  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rfc3339(ns: int) -> str:
    sec, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{nanos:09d}Z"


def delivered(rx: LokiReceiver, port: int, output: str) -> int:
    if output == "loki":
        return rx.count()
    try:
        _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    except OSError:
        return 0
    for line in body.decode().splitlines():
        if line.startswith("promtail_sent_entries_total "):
            return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=300_000)
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--size", type=int, default=200, help="bytes per CRI line")
    ap.add_argument("--encoding", default="protobuf")
    ap.add_argument("--output", choices=("loki", "kafka"), default="loki",
                    help="kafka: a Tansu broker, topic clymene-logs (delivery counted by "
                         "the agent's promtail_sent_entries_total)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="clymene-logs-bench-"))
    rx = LokiReceiver()
    port = free_port()
    broker = None
    extra_env: dict[str, str] = {}
    if args.output == "kafka":
        broker = start_tansu(tmp / "tansu")
        extra_env = {"STORAGE_TYPE": "kafka", "KAFKA_PRODUCER_BROKERS": broker.url}
    pods = tmp / "pods"
    cfg = tmp / "promtail.yml"
    cfg.write_text(f"""
server: {{http_listen_address: 127.0.0.1, http_listen_port: {port}}}
positions: {{filename: {tmp}/positions.yaml, sync_period: 10s}}
scrape_configs:
  - job_name: pods
    static_configs:
      - labels: {{job: pods, __path__: '{pods}/*/*/*.log'}}
    pipeline_stages:
      - cri: {{}}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOKI_", "STORAGE_"))}
    env.update(extra_env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "clymene", "promtail", "--promtail.config.file", str(cfg),
         "--loki.client.url", rx.url, "--loki.client.encoding", args.encoding,
         "--log-level", "warn"], cwd=ROOT, env=env, start_new_session=True)
    try:
        time.sleep(2.0)  # started and idle
        per_file = args.lines // args.files
        base = 1_700_000_000_000_000_000
        # Lines are prepared before the window, so the writer costs the agent nothing.
        prefix_len = len(rfc3339(base)) + len(" stdout F ")
        files = []
        for i in range(args.files):
            d = pods / f"bench_pod-{i}_uid{i}" / "c"
            d.mkdir(parents=True)
            body = []
            for n in range(per_file):
                text = f"pod-{i} line {n:08d} "
                text += "x" * (args.size - prefix_len - len(text) - 1)
                body.append(f"{rfc3339(base + n * 1000)} stdout F {text}\n")
            files.append((d / "0.log", "".join(body)))
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.monotonic()
        for path, data in files:
            path.write_text(data)
        total = per_file * args.files
        deadline = time.monotonic() + 600
        while delivered(rx, port, args.output) < total and time.monotonic() < deadline:
            time.sleep(0.05)
        wall = time.monotonic() - t0
        cpu = cpu_seconds(proc.pid) - cpu0
        if args.output == "kafka":
            ok = delivered(rx, port, "kafka") == total
        else:
            got = rx.lines()
            ok = rx.count() == total and rx.rejected == 0 and rx.duplicates == 0 and all(
                len(v) == per_file for v in got.values())
        line_bytes = len(files[0][1].split("\n", 1)[0]) + 1
        print(f"lines: {total:,} of {line_bytes} bytes over {args.files} files "
              f"({args.output}, {args.encoding}); delivered "
              f"{delivered(rx, port, args.output):,}, exact: {ok}")
        print(f"agent CPU {cpu:.2f} s -> {total / cpu:,.0f} lines/s per core; "
              f"wall {wall:.2f} s -> {total / wall:,.0f} lines/s")
        return 0 if ok else 1
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        rx.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
