"""Profile of one scrape without Celery: Runner.run in a loop against synthetic targets.

    python -m bench.scrape_profile --targets 20 --series 500 --scrapes 400 [--profile]

Starts the synthetic targets (bench.targets), a sink (bench.sink) and a private Redis,
publishes a config through clymene's own discovery, then calls `Runner.run` for the
targets in turn, the way a worker process would, and prints the CPU time per scrape and
per sample of this process (the hot path: fetch, parse, relabel, staleness, encode,
write, state). With --profile it prints the top functions by cumulative time.
Celery's own cost per task is measured by bench/e2e.py, not here.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from tests.servers import kill_group, start_redis, wait_until


def _start(args: list[str], ready: Path, workdir: Path) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-m", *args, "--ready-file", str(ready)],
                            cwd=Path(__file__).resolve().parent.parent, start_new_session=True)
    wait_until(lambda: ready.exists() and ready.read_text().strip(), timeout=30)
    return proc, json.loads(ready.read_text())


def _stop(procs: list[subprocess.Popen]) -> None:
    """Stop what _start started, by process group."""
    for proc in procs:
        kill_group(proc)


def _time_stages(runner: object) -> dict[str, float]:
    """Wrap the stages of a scrape so that each adds its thread CPU time to the returned
    dict (the wrappers cost about a microsecond each)."""
    from clymene.scrape import http as scrape_http
    from clymene.scrape import loop
    from clymene.storage import prometheus

    spent: dict[str, float] = {}

    def timed(owner: object, attr: str, name: str) -> None:
        inner = getattr(owner, attr)
        spent[name] = 0.0

        def wrapper(*args: object, **kwargs: object) -> object:
            start = time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[name] += time.thread_time() - start
        setattr(owner, attr, wrapper)

    timed(runner, "_begin", "redis: lock + target")
    timed(scrape_http.Fetcher, "fetch", "fetch (GET, gunzip)")
    timed(loop, "process", "parse, relabel, staleness")
    timed(prometheus, "encode_write_request", "remote-write encoding")
    timed(prometheus, "compress", "snappy")
    timed(prometheus.HTTPSender, "post", "POST")
    timed(runner, "_finish", "redis: state + unlock")
    timed(runner, "run", "Runner.run in all")
    return spent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scrape_profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", type=int, default=20)
    p.add_argument("--series", type=int, default=500)
    p.add_argument("--scrapes", type=int, default=400)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--stages", action="store_true",
                   help="CPU per stage (fetch, process, encode, compress, POST, the two "
                        "Redis round trips), timed with thread_time around each")
    p.add_argument("--pace", type=float, default=0.0,
                   help="seconds between scrapes (0: back to back, caches hot); a farm "
                        "scraping 200 targets every 5 s starts one every 0.025 s")
    args = p.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="clymene-profile-"))
    procs: list[subprocess.Popen] = []
    redis_server = None
    try:
        targets, info = _start(["bench.targets", "--targets", str(args.targets),
                                "--series", str(args.series)], workdir / "t.json", workdir)
        procs.append(targets)
        sink, sink_info = _start(["bench.sink"], workdir / "s.json", workdir)
        procs.append(sink)
        redis_server = start_redis(workdir)
        client = redis.Redis.from_url(redis_server.redis_url(0))
        config = workdir / "c.yml"
        addresses = ", ".join(f"'127.0.0.1:{port}'" for port in info["ports"])
        config.write_text("global: {scrape_interval: 5s}\nscrape_configs:\n"
                          f"  - job_name: bench\n    static_configs: [{{targets: [{addresses}]}}]\n")

        from clymene.discovery.manager import Discovery
        from clymene.registry import load_targets
        from clymene.scrape.runner import Runner
        from clymene.storage.prometheus import RemoteWriteStorage

        Discovery(str(config), client).step()
        targets_by_id = load_targets(client)
        sink_url = f"http://127.0.0.1:{sink_info['port']}/api/v1/write"
        runner = Runner(client, [RemoteWriteStorage(sink_url)])
        order = list(targets_by_id.values())
        for t in order:  # warm the caches: the first scrape of a target parses everything
            runner.run(t.id, t.rev)
        stages = _time_stages(runner) if args.stages else None
        profiler = cProfile.Profile(time.process_time) if args.profile else None
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        if profiler:
            profiler.enable()
        outcomes: dict[str, int] = {}
        in_runs = 0.0  # CPU of this thread inside Runner.run (the rest: other threads)
        for i in range(args.scrapes):
            t = order[i % len(order)]
            run0 = time.thread_time()
            outcome = runner.run(t.id, t.rev)
            in_runs += time.thread_time() - run0
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if args.pace:
                time.sleep(args.pace)
        if profiler:
            profiler.disable()
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
        samples = args.scrapes * (args.series + 5)
        print(f"{args.scrapes} scrapes of {args.series} series: outcomes {outcomes}")
        print(f"CPU {cpu * 1000 / args.scrapes:.3f} ms per scrape, "
              f"{cpu * 1e6 / samples:.2f} us per sample; wall {wall * 1000 / args.scrapes:.3f} ms"
              + (f" (with {args.pace} s pauses)" if args.pace else "")
              + f"; inside Runner.run {in_runs * 1000 / args.scrapes:.3f} ms")
        if stages is not None:
            for name, seconds in stages.items():
                print(f"  {name:28s} {seconds * 1e6 / args.scrapes:8.1f} us per scrape")
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    finally:
        _stop(procs)
        if redis_server is not None:
            redis_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
