"""One run of Prometheus 2.42 (agent) and clymene over every case of the suite.

Prometheus takes about 5 s to start its targets, so all cases share a single run of about
25 s: the session fixture `diff` starts the exporters, the scripted targets, both systems
(clymene with two worker processes), waits until every target was scraped often enough
by both (half way, a target leaves a file_sd file and a job leaves the configuration),
stops both and hands the deliveries and both /api/v1/targets to the tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.differential.cases import Suite, build_suite, write_sd_file
from tests.differential.harness import (
    Delivery,
    Run,
    Step,
    UpCounter,
    start_redis_exporter,
)
from tests.servers import (
    RedisServer,
    prometheus_config,
    start_node_exporter,
    start_redis,
)

# Scrapes each target must have delivered by both systems before the run stops: the
# longest staleness script has 7 steps, and the last scrape is not compared.
NEED_SCRAPES = 9
NEED_SCRAPES_SLOW = 4  # targets relabeled to a 2 s interval
SD_REMOVE_AFTER = 4  # scrapes of the file_sd target to be removed before it is removed
RUN_TIMEOUT = 60.0
REMOVAL_TIMEOUT = 15.0  # Prometheus: up to 5 s discovery delay + 2 intervals + 10%
JOB_REMOVAL_WAIT = 5.0  # longer than 2 intervals + 10% after a job left the config


@dataclass
class DiffRun:
    suite: Suite
    run: Run
    prometheus: Delivery
    clymene: Delivery
    removed_at: float  # time.time() when sd-gone left the file_sd file
    removal_stale: dict[str, bool]  # per system: StaleNaN of sd-gone's `up` seen
    job_removed_at: float  # time.time() when the config-removal job left the config
    duration: float


def remove_job(run: Run, suite: Suite) -> None:
    """Both systems get the configuration without the config-removal job: clymene's
    discovery sees its file change, Prometheus reloads on SIGHUP."""
    text = suite.config_yaml(without=(suite.config_removal_job,))
    assert run.server is not None
    prometheus_yml = run.server.log_path.parent / "prometheus.yml"
    prometheus_yml.write_text(yaml.safe_dump(
        prometheus_config(text, run.rx_prometheus.url), allow_unicode=True))
    os.kill(run.server.pid, signal.SIGHUP)
    tmp = run.farm.config_path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(run.farm.config_path)


def _slow_key(key: tuple) -> bool:
    return dict(key).get("job") == "rl-scrape-interval"


def _capture(url: str) -> tuple[bytes, str]:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return response.read(), response.headers.get("Content-Type", "")


@pytest.fixture(scope="session")
def diff(tmp_path_factory, redis_server: RedisServer) -> Iterator[DiffRun]:
    with contextlib.ExitStack() as stack:
        yield _run(tmp_path_factory.mktemp("differential"), redis_server, stack)


def _run(tmp: Path, redis_server: RedisServer, stack: contextlib.ExitStack) -> DiffRun:
    began = time.monotonic()
    node = start_node_exporter(tmp)
    stack.callback(node.stop)
    redis_for_exporter = start_redis(tmp)
    stack.callback(redis_for_exporter.stop)
    redis_exporter = start_redis_exporter(tmp, redis_for_exporter.port)
    stack.callback(redis_exporter.stop)
    # Explicit exposition timestamps: after Prometheus' start (its remote write sends
    # nothing older) and less than 10 minutes ahead (it refuses those).
    base_ms = (int(time.time()) + 120) * 1000
    suite = build_suite(tmp / "sd", base_ms, {"node": node.url[7:],
                                              "redis": redis_exporter.url[7:]})
    stack.callback(suite.targets.stop)
    for name, exporter in (("node", node), ("redis", redis_exporter)):
        body, ctype = _capture(exporter.url + "/metrics")
        suite.targets.add(f"captured-{name}", [Step(body, ctype)])
        suite.exporters[f"captured-{name}"] = f"captured-{name}"
        suite.add_job(f"captured-{name}", [f"captured-{name}"])
    run = Run(tmp, redis_server.redis_url(redis_server.fresh_db()), suite.config_yaml(),
              suite.targets)
    stack.callback(run.close)
    stack.callback(lambda: run.stop() if run.prometheus is None else None)
    counters = {"prometheus": UpCounter(run.rx_prometheus), "clymene": UpCounter(run.rx_clymene)}
    gone_key = job_key = None
    removed_at = job_removed_at = 0.0
    removal_stale = {"prometheus": False, "clymene": False}
    run.start()
    deadline = time.monotonic() + RUN_TIMEOUT
    stable_since, last_keys = time.monotonic(), None
    while time.monotonic() < deadline:
        time.sleep(0.5)
        counts = {name: dict(c.update()) for name, c in counters.items()}
        # Half way, a target leaves file_sd and a job leaves the configuration.
        if gone_key is None:
            gone_key = next((k for k in counts["prometheus"]
                             if dict(k).get("instance") == suite.targets["sd-gone"].address),
                            None)
        if not removed_at and gone_key is not None and all(
                counts[s].get(gone_key, 0) >= SD_REMOVE_AFTER for s in counts):
            write_sd_file(tmp / "sd" / "removal" / "targets.json", ["{{sd-kept}}"],
                          suite.targets)
            removed_at = time.time()
        if job_key is None:
            job_key = next((k for k in counts["prometheus"]
                            if dict(k).get("job") == suite.config_removal_job), None)
        if not job_removed_at and job_key is not None and all(
                counts[s].get(job_key, 0) >= SD_REMOVE_AFTER for s in counts):
            remove_job(run, suite)
            job_removed_at = time.time()
        if removed_at:
            for name, counter in counters.items():
                removal_stale[name] = gone_key in counter.stale
        keys = (frozenset(counts["prometheus"]), frozenset(counts["clymene"]))
        if keys != last_keys:
            stable_since, last_keys = time.monotonic(), keys
        done = all(n >= (NEED_SCRAPES_SLOW if _slow_key(k) else NEED_SCRAPES)
                   for c in counts.values() for k, n in c.items()
                   if k not in (gone_key, job_key))
        removal_done = removed_at and (
            all(removal_stale.values())
            or (removal_stale["prometheus"] and time.time() - removed_at > REMOVAL_TIMEOUT))
        # Prometheus writes no staleness marker for a job that left the configuration
        # (stopping its scrape pool cancels the loops' end-of-run wait): wait long enough
        # for one to show up.
        job_removal_done = job_removed_at and time.time() - job_removed_at > JOB_REMOVAL_WAIT
        if done and removal_done and job_removal_done and time.monotonic() - stable_since > 2:
            break
    else:
        short = {name: sorted((dict(k).get("job"), n) for k, n in c.items()
                              if n < NEED_SCRAPES and k not in (gone_key, job_key))[:10]
                 for name, c in counts.items()}
        raise AssertionError(f"the run did not finish within {RUN_TIMEOUT} s: targets "
                             f"{ {n: len(c) for n, c in counts.items()} }, short of "
                             f"scrapes: {short}, file_sd removal: {removal_stale} at "
                             f"{removed_at}, job removal at {job_removed_at}\n"
                             f"{run.logs()[-3000:]}")
    run.fetch_targets_api()
    run.stop()
    assert run.prometheus is not None and run.clymene is not None
    return DiffRun(suite, run, run.prometheus, run.clymene, removed_at, removal_stale,
                   job_removed_at, time.monotonic() - began)


def pytest_report_header(config) -> str:
    return "differential: Prometheus 2.42 agent vs clymene, one shared run"


__all__ = ["DiffRun", "diff"]
