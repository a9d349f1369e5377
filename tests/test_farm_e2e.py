"""The farm end to end: real clymene processes, real Redis, real Prometheus and node-exporter."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from collections import defaultdict

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.exporter import Exporter
from tests.farm import Farm
from tests.servers import http_get, query, series, wait_until


def _config(jobs: str, interval: str = "1s", timeout: str = "1s") -> str:
    return (f"global:\n  scrape_interval: {interval}\n  scrape_timeout: {timeout}\n"
            f"scrape_configs:\n{jobs}")


def _static_job(name: str, *addresses: str, extra: str = "") -> str:
    targets = ", ".join(f'"{a}"' for a in addresses)
    return f"  - job_name: {name}\n    static_configs:\n      - targets: [{targets}]\n{extra}"


def test_node_exporter_to_prometheus(tmp_path, redis_url, node_exporter, prometheus):
    """Every series node-exporter exposes arrives in Prometheus with job and instance."""
    farm = Farm(tmp_path, redis_url, _config(_static_job("node", node_exporter.url[7:])),
                {"STORAGE_TYPE": "prometheus", "PROMETHEUS_REMOTE_URL": prometheus.write_url})
    farm.start("run")
    try:
        instance = node_exporter.url[7:]
        wait_until(lambda: query(prometheus, f'up{{job="node",instance="{instance}"}} == 1'),
                   timeout=30, interval=0.2)
        # A second scrape, so that the exposition we compare with is no newer than the data.
        time.sleep(2.5)
        _, body = http_get(node_exporter.url + "/metrics")
        expected = set()
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                # An empty label value is the same as no label (Prometheus drops it).
                labels = {k: v for k, v in sample.labels.items() if v != ""}
                labels.update(__name__=sample.name, job="node", instance=instance)
                expected.add(tuple(sorted(labels.items())))
        stored = {tuple(sorted(s.items())) for s in series(prometheus, '{job="node"}')}
        missing = expected - stored
        assert len(expected) > 200
        assert not missing, f"{len(missing)} series missing, e.g. {sorted(missing)[:5]}"
        build = query(prometheus, f'node_exporter_build_info{{instance="{instance}"}}')
        assert [r["value"][1] for r in build] == ["1"]
        for name in ("scrape_duration_seconds", "scrape_samples_scraped",
                     "scrape_samples_post_metric_relabeling", "scrape_series_added"):
            assert query(prometheus, f'{name}{{job="node",instance="{instance}"}}'), name
        scraped = query(prometheus, f'scrape_samples_scraped{{instance="{instance}"}}')
        assert float(scraped[0]["value"][1]) >= len(expected) - 50
        api = farm.targets()
        [target] = api["activeTargets"]
        assert target["health"] == "up" and target["lastError"] == ""
        assert target["labels"] == {"job": "node", "instance": instance}
        assert target["scrapePool"] == "node"
        assert target["scrapeUrl"] == f"http://{instance}/metrics"
        assert target["discoveredLabels"]["__address__"] == instance
    finally:
        took = farm.stop()
        print(farm.logs())
    assert max(took.values()) < 10, took


def test_failing_targets_are_down_and_the_worker_lives_on(tmp_path, redis_url, receiver):
    good = Exporter(body=b"# TYPE ok gauge\nok 1\n")
    slow = Exporter(body=b"ok 1\n", delay=3.0)
    error = Exporter(body=b"oops", status=500)
    garbage = Exporter(body=b'metric{label="unterminated 1\n')
    farm = Farm(tmp_path, redis_url,
                _config(_static_job("t", good.address, slow.address, error.address,
                                    garbage.address), interval="1s", timeout="500ms"),
                {"STORAGE_TYPE": "prometheus", "PROMETHEUS_REMOTE_URL": receiver.url})
    farm.start("run")
    try:
        def up_values(rx) -> dict[str, list[float]]:
            out: dict[str, list[float]] = defaultdict(list)
            for labels, value, _ in rx.samples():
                d = dict(labels)
                if d["__name__"] == "up":
                    out[d["instance"]].append(value)
            return out

        receiver.wait_for(lambda rx: all(len(up_values(rx)[e.address]) >= 3
                                         for e in (good, slow, error, garbage)), timeout=30)
        ups = up_values(receiver)
        assert set(ups[good.address]) == {1.0}
        for bad in (slow, error, garbage):
            assert set(ups[bad.address]) == {0.0}, bad.address
        errors = {t["labels"]["instance"]: t for t in farm.targets()["activeTargets"]}
        assert errors[good.address]["health"] == "up"
        assert "context deadline exceeded" in errors[slow.address]["lastError"]
        assert errors[error.address]["lastError"] == \
            "server returned HTTP status 500 Internal Server Error"
        assert errors[garbage.address]["health"] == "down"
        assert "line 1" in errors[garbage.address]["lastError"] or \
            "1:" in errors[garbage.address]["lastError"]
        # The worker lives on: the good target keeps being scraped after all the failures.
        before = len(ups[good.address])
        receiver.wait_for(lambda rx: len(up_values(rx)[good.address]) >= before + 2, timeout=10)
        # Nothing but clymene's own series from a failed target: just the report series.
        names = {dict(labels)["__name__"] for labels, _, _ in receiver.samples()
                 if dict(labels)["instance"] == error.address}
        assert names == {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                         "scrape_samples_post_metric_relabeling", "scrape_series_added"}
    finally:
        farm.stop()
        for e in (good, slow, error, garbage):
            e.stop()


def test_file_sd_changes_reach_schedule_and_api(tmp_path, redis_url, receiver):
    a = Exporter(body=b"a 1\n")
    b = Exporter(body=b"b 2\n")
    sd = tmp_path / "targets.json"
    sd.write_text(f'[{{"targets": ["{a.address}"], "labels": {{"team": "x"}}}}]')
    interval = 2.0
    farm = Farm(tmp_path, redis_url, _config(
        f"  - job_name: files\n    file_sd_configs:\n      - files: ['{tmp_path}/*.json']\n",
        interval="2s", timeout="1s"),
        {"STORAGE_TYPE": "prometheus", "PROMETHEUS_REMOTE_URL": receiver.url})
    farm.start("run")
    try:
        farm.wait_ready()
        wait_until(lambda: [t for t in farm.targets()["activeTargets"] if t["health"] == "up"],
                   timeout=20)
        [ta] = farm.targets()["activeTargets"]
        assert ta["labels"] == {"instance": a.address, "job": "files", "team": "x"}
        assert ta["discoveredLabels"]["__meta_filepath"] == str(sd)

        sd.write_text(f'[{{"targets": ["{a.address}", "{b.address}"], "labels": {{"team": "x"}}}}]')
        changed = time.monotonic()
        wait_until(lambda: len(farm.targets()["activeTargets"]) == 2, timeout=2 * interval)
        wait_until(lambda: b.scrapes, timeout=2 * interval + 1 - (time.monotonic() - changed))
        wait_until(lambda: any(dict(lb).get("instance") == b.address
                               for lb, _, _ in receiver.samples()), timeout=5)

        sd.write_text(f'[{{"targets": ["{b.address}"]}}]')
        removed = time.monotonic()
        wait_until(lambda: [t["labels"]["instance"] for t in farm.targets()["activeTargets"]]
                   == [b.address], timeout=2 * interval)
        time.sleep(interval)  # a scrape task sent just before the removal may still run
        count = len(a.scrapes)
        time.sleep(2 * interval)
        assert len(a.scrapes) == count, "a removed target is still scraped"
        assert time.monotonic() - removed > 0
    finally:
        farm.stop()
        a.stop()
        b.stop()


def test_two_workers_two_beats_order_and_no_overlap(tmp_path, redis_url, receiver):
    """60 s at 1 s with 2 workers and 2 beats: every timestamp once, increasing, no overlap.

    Half way the active beat is killed (SIGKILL): the standby takes over within 30 s.
    """
    import random

    rng = random.Random(7)
    exporters = [Exporter(body=f"# TYPE x counter\nx_total{{n=\"{i}\"}} {i}\ny 1\n".encode(),
                          delay_fn=lambda: rng.uniform(0, 0.6)) for i in range(4)]
    farm = Farm(tmp_path, redis_url,
                _config(_static_job("pair", *(e.address for e in exporters)),
                        interval="1s", timeout="1s"),
                {"STORAGE_TYPE": "prometheus", "PROMETHEUS_REMOTE_URL": receiver.url})
    farm.start("discovery")
    beats = [farm.start("beat"), farm.start("beat")]
    farm.start("worker", "--concurrency", "2")
    farm.start("worker", "--concurrency", "2")
    try:
        wait_until(lambda: all(e.scrapes for e in exporters), timeout=30, interval=0.2)
        time.sleep(25)
        import redis as redis_lib

        client = redis_lib.Redis.from_url(farm.env["CLYMENE_BROKER_URL"])
        holder = client.get("clymene:beat:lock")
        assert holder is not None
        # Find the active beat: its log says it acquired the lock.
        active = [p for (name, p, path) in farm.procs
                  if name == "beat" and "acquired the scheduler lock" in path.read_text()]
        assert len(active) == 1, farm.logs()
        farm.signal(active[0], signal.SIGKILL)
        killed = time.monotonic()
        counts = [len(e.scrapes) for e in exporters]
        wait_until(lambda: all(len(e.scrapes) > c + 1 for e, c in zip(exporters, counts,
                                                                      strict=True)),
                   timeout=35, interval=0.5)
        assert time.monotonic() - killed < 32
        time.sleep(8)
    finally:
        farm.stop()
        for e in exporters:
            e.stop()
    assert [p for p in beats if p.returncode is None] == []
    by_series: dict[tuple, list[int]] = defaultdict(list)
    for labels, value, ts in receiver.samples():
        if not math.isnan(value):
            by_series[labels].append(ts)
    assert len(by_series) >= 4 * 7
    for labels, stamps in by_series.items():
        assert stamps == sorted(set(stamps)), f"{labels}: out of order or duplicated"
    for labels, stamps in by_series.items():
        if dict(labels)["__name__"] == "up":
            assert len(stamps) >= 25, (labels, len(stamps))
    for e in exporters:
        spans = sorted((s, t) for s, t, _ in e.scrapes)
        for (_s1, e1), (s2, _) in zip(spans, spans[1:], strict=False):
            assert s2 >= e1, f"{e.address}: scrapes overlap"


def test_receiver_500_gets_the_batch_again_and_400_does_not(tmp_path, redis_url, receiver):
    exp = Exporter(body=b"m 1\n")
    receiver.respond(500)
    farm = Farm(tmp_path, redis_url, _config(_static_job("r", exp.address)),
                {"STORAGE_TYPE": "prometheus", "PROMETHEUS_REMOTE_URL": receiver.url})
    farm.start("run")
    try:
        receiver.wait_for(lambda rx: len(rx.accepted()) >= 2, timeout=30)
        first, second = receiver.requests[0], receiver.requests[1]
        assert first.status == 500 and 200 <= second.status < 300
        assert first.samples == second.samples, "the batch answered 500 was not resent as is"
        receiver.respond(400)
        n = len(receiver.requests)
        receiver.wait_for(lambda rx: len(rx.requests) >= n + 3, timeout=20)
    finally:
        farm.stop()
        exp.stop()
    rejected = [r for r in receiver.requests if r.status == 400]
    assert len(rejected) == 1
    rejected_ts = {ts for _, _, ts in rejected[0].samples}
    resent = [r for r in receiver.requests if r is not rejected[0]
              and {ts for _, _, ts in r.samples} & rejected_ts]
    assert resent == [], "a batch answered 400 was sent again"
    stamps = [ts for labels, _, ts in receiver.samples() if dict(labels)["__name__"] == "m"]
    assert stamps == sorted(set(stamps))


def test_bad_config_is_refused_with_file_line_and_key(tmp_path, redis_url):
    bad = tmp_path / "bad.yml"
    bad.write_text("global:\n  scrape_interval: 15s\nscrape_configs:\n"
                   "  - job_name: a\n    scrape_intervl: 5s\n")
    check = subprocess.run([sys.executable, "-m", "clymene", "check", "config", str(bad)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 1
    assert f"{bad}:5:" in check.stderr and "scrape_intervl" in check.stderr, check.stderr
    good = tmp_path / "good.yml"
    good.write_text("scrape_configs:\n  - job_name: a\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:9']\n")
    ok = subprocess.run([sys.executable, "-m", "clymene", "check", "config", str(good)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "a" in ok.stdout
    farm = Farm(tmp_path, redis_url, bad.read_text())
    proc = farm.start("run")
    try:
        assert proc.wait(60) == 1
    finally:
        farm.stop()
    assert "scrape_intervl" in farm.logs() and ":5:" in farm.logs()


@pytest.mark.parametrize("flag_wins", [True, False])
def test_flags_and_environment(flag_wins, monkeypatch):
    from clymene import settings

    env = {"PROMETHEUS_REMOTE_URL": "http://env/api/v1/write", "STORAGE_TYPE": "prometheus,file",
           "WEB_LISTEN_ADDRESS": "127.0.0.1:1"}
    args = ["web", "--web.listen-address", "127.0.0.1:2"] if flag_wins else ["web"]
    import argparse

    from clymene import cli

    ns, _ = cli._parser().parse_known_args(args)
    assert isinstance(ns, argparse.Namespace)
    settings.export_flags(ns, env)
    s = settings.load(env)
    assert s.prometheus_remote_url == "http://env/api/v1/write"
    assert s.storage_type == ["prometheus", "file"]
    assert s.web_listen_address == ("127.0.0.1:2" if flag_wins else "127.0.0.1:1")
