"""What Celery itself costs per task, with clymene's settings and with each trimmed
setting put back to Celery's default.

    python -m bench.celery_overhead [--rate 40] [--seconds 20]

For each variant it starts a worker (threads pool, 2 threads, as bench/e2e.py runs
clymene) on a private redis-server with a no-op task (bench/celery_noop.py), sends it
tasks with the arguments of a scrape task at the farm's rate (200 targets every 5 s =
40 per second, in bursts every --tick as beat sends them), and prints the worker's CPU per
task (utime+stime from /proc, after a warm-up), also beyond what it spends idle over
as long a window, and the tasks it took off the queue. Everything runs on
127.0.0.1 and is stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

from tests.servers import kill_group, start_redis

ROOT = Path(__file__).resolve().parent.parent

# (what changes, Celery settings changed from clymene's; None: clymene's own)
VARIANTS: list[tuple[str, dict[str, object]]] = [
    ("clymene's settings (no results, events off, prefetch 4, no ack emulation)", {}),
    ("+ ack emulation (Celery's default: unacked bookkeeping in Redis)",
     {"broker_transport_options": {}}),
    ("+ task events (what Flower turns on while it watches)",
     {"worker_send_task_events": True}),
    ("+ a Redis result backend (results stored)",
     {"task_ignore_result": False, "result_backend": "{broker}"}),
    ("prefetch 1 instead of 4", {"worker_prefetch_multiplier": 1}),
    ("prefetch 16 instead of 4", {"worker_prefetch_multiplier": 16}),
]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_variant(broker: str, conf: dict[str, object], rate: float, tick: float,
                 seconds: float, workdir: Path) -> tuple[float, float, float, int]:
    """(worker CPU seconds idle over the window, per task, per task beyond idle, tasks
    taken off the queue in the window)."""
    conf = {k: (v.format(broker=broker) if isinstance(v, str) else v) for k, v in conf.items()}
    env = dict(os.environ, CLYMENE_BROKER_URL=broker, BENCH_CELERY_CONF=json.dumps(conf),
               PYTHONPATH=str(ROOT))
    log = open(workdir / "worker.log", "ab")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.celery_noop", "worker", "-Q", "scrape",
         "--pool", "threads", "--concurrency", "2", "-l", "WARNING", "--without-gossip",
         "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        from bench import celery_noop

        celery_noop.app.conf.broker_url = broker
        client = redis.Redis.from_url(broker)
        # The message says whether to keep the result (the worker follows it).
        ignore_result = bool(conf.get("task_ignore_result", True))

        def send(n: int) -> None:
            # As beat sends them: the tasks due within one tick, together, every tick.
            per_tick = max(1, round(rate * tick))
            start = time.monotonic()
            for i in range(n):
                args = [uuid.uuid4().hex, "rev", "bench", f"127.0.0.1:{i}", time.time()]
                celery_noop.noop.apply_async(args=args, queue="scrape",
                                             ignore_result=ignore_result)
                if (i + 1) % per_tick == 0:
                    wait = start + (i + 1) / rate - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)

        send(int(rate * 5))  # warm-up: the worker connects, imports, fills its caches
        time.sleep(1)
        before = _cpu_seconds(worker.pid)
        time.sleep(seconds + 1)  # idle: what the worker spends with no task at all
        idle = _cpu_seconds(worker.pid) - before
        before = _cpu_seconds(worker.pid)
        n = int(rate * seconds)
        send(n)
        time.sleep(1)
        used = _cpu_seconds(worker.pid) - before
        left = client.llen("scrape")
        if not ignore_result:  # the variant must have done what it says
            assert client.keys("celery-task-meta-*"), "no result was stored"
        client.flushdb()
        return idle, used / n, (used - idle) / n, n - left
    finally:
        kill_group(worker, timeout=20)
        log.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.celery_overhead", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=40.0, help="tasks per second")
    p.add_argument("--tick", type=float, default=0.1,
                   help="seconds between bursts (beat's --beat.tick); 0: one by one")
    p.add_argument("--seconds", type=float, default=15.0,
                   help="measured seconds per variant (and as long idle before)")
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="clymene-celery-"))
    server = start_redis(workdir)
    rows = []
    try:
        for name, conf in VARIANTS:
            idle, per_task, beyond_idle, n = _run_variant(
                server.redis_url(0), conf, args.rate, args.tick, args.seconds, workdir)
            rows.append((name, idle, per_task, beyond_idle))
            print(f"{name}: {per_task * 1000:.3f} ms CPU per task, {beyond_idle * 1000:.3f} "
                  f"beyond idle ({idle:.2f} s idle; {n} tasks taken)", flush=True)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n| worker settings ({args.rate:g} no-op tasks/s in bursts every {args.tick:g} s, "
          "threads pool, 2 threads) "
          f"| idle CPU s in {args.seconds:g} s | worker CPU ms per task | beyond idle |")
    print("|---|---:|---:|---:|")
    for name, idle, per_task, beyond_idle in rows:
        print(f"| {name} | {idle:.2f} | {per_task * 1000:.3f} | {beyond_idle * 1000:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
