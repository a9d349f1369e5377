"""What an operator sees: file storage by default, /metrics, Flower, redis-cli keys, auth."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.request

import redis

from clymene import cli, settings
from tests.exporter import Exporter
from tests.farm import Farm
from tests.servers import free_port, http_get, wait_until

CONFIG = """global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_configs:
  - job_name: ops
    static_configs: [{{targets: ['{target}'], labels: {{team: blue}}}}]
"""


def _lines(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_file_storage_metrics_flower_and_redis_keys(tmp_path, redis_url):
    exp = Exporter(body=b'# TYPE jobs_total counter\njobs_total{kind="a"} 7\n')
    farm = Farm(tmp_path, redis_url, CONFIG.format(target=exp.address))
    farm.start("run")
    flower_port = free_port()
    farm.start("flower", f"--port={flower_port}", "--address=127.0.0.1",
               env={"FLOWER_UNAUTHENTICATED_API": "1"})
    data = tmp_path / "data" / "samples.jsonl"
    try:
        # No STORAGE_TYPE: one JSON line per sample in the data directory.
        wait_until(lambda: [r for r in _lines(data) if r["name"] == "jobs_total"], timeout=30)
        row = [r for r in _lines(data) if r["name"] == "jobs_total"][0]
        assert row["labels"] == {"instance": exp.address, "job": "ops", "kind": "a",
                                 "team": "blue"}
        assert row["value"] == 7.0 and abs(row["timestamp"] / 1000 - time.time()) < 30
        ups = [r for r in _lines(data) if r["name"] == "up"]
        assert ups and {r["value"] for r in ups} == {1.0}

        # /metrics carries the farm's counters, flushed by the workers into Redis.
        def metrics() -> str:
            return http_get(farm.web_url + "/metrics")[1].decode()
        wait_until(lambda: 'clymene_scrapes_total{job="ops"}' in metrics(), timeout=10)
        text = metrics()
        for needle in ('clymene_scrape_samples_total{job="ops"}',
                       'clymene_storage_samples_written_total{storage="file"}',
                       'clymene_targets{state="active"} 1', "clymene_beat_active 1",
                       'clymene_queue_length{queue="scrape"}',
                       "# TYPE clymene_scheduling_lag_seconds summary"):
            assert needle in text, needle

        # Flower lists the scrape tasks; searching for the instance finds this target's.
        def flower_tasks() -> dict:
            try:
                status, body = http_get(
                    f"http://127.0.0.1:{flower_port}/api/tasks?taskname=clymene.scrape"
                    f"&search={exp.address}&limit=5")
            except OSError:
                return {}
            return json.loads(body) if status == 200 else {}
        tasks = wait_until(flower_tasks, timeout=30, interval=0.5)
        for task in tasks.values():
            assert task["name"] == "clymene.scrape"
            assert "'ops'" in task["args"] and f"'{exp.address}'" in task["args"]

        # The documented redis-cli view.
        client = redis.Redis.from_url(redis_url)
        [tid] = client.hkeys("clymene:targets")
        target = json.loads(client.hget("clymene:targets", tid))
        assert target["scrape_url"] == f"http://{exp.address}/metrics"
        state = client.hgetall(f"clymene:target:{tid.decode()}")
        assert state[b"health"] == b"up" and state[b"last_error"] == b""
        assert client.hget("clymene:config", "text").decode() == CONFIG.format(target=exp.address)
        assert client.get("clymene:beat:lock") is not None
    finally:
        farm.stop()
        exp.stop()


def test_web_requires_basic_auth_when_configured(tmp_path, redis_url):
    password = tmp_path / "pw"
    password.write_text("s3cret\n")
    farm = Farm(tmp_path, redis_url, CONFIG.format(target="127.0.0.1:9"),
                {"WEB_AUTH_USERNAME": "admin", "WEB_AUTH_PASSWORD_FILE": str(password)})
    farm.start("web")
    try:
        wait_until(lambda: _status(farm.web_url + "/-/healthy") in (200, 401), timeout=20)
        assert _status(farm.web_url + "/api/v1/targets") == 401
        assert _status(farm.web_url + "/api/v1/targets", ("admin", "wrong")) == 401
        assert _status(farm.web_url + "/api/v1/targets", ("admin", "s3cret")) == 200
    finally:
        farm.stop()
    assert "s3cret" not in farm.logs()


def _status(url: str, auth: tuple[str, str] | None = None) -> int:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization",
                       "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_embedded_redis_when_nothing_answers(tmp_path):
    s = settings.load({})
    url, proc = cli.choose_broker(s, str(tmp_path), probe=lambda host, port: False)
    try:
        assert proc is not None and url.startswith("redis://127.0.0.1:")
        assert redis.Redis.from_url(url).ping()
    finally:
        cli._stop_group(proc, 15)
        proc.wait(5)
    url, proc = cli.choose_broker(s, str(tmp_path), probe=lambda host, port: True)
    assert (url, proc) == ("redis://127.0.0.1:6379/0", None)
    configured = settings.load({"CLYMENE_BROKER_URL": "redis://h:1/2"})
    assert cli.choose_broker(configured, str(tmp_path)) == ("redis://h:1/2", None)


def test_run_stops_on_sigterm_within_10s(tmp_path, redis_url):
    farm = Farm(tmp_path, redis_url, CONFIG.format(target="127.0.0.1:9"))
    proc = farm.start("run")
    farm.wait_ready()
    time.sleep(2)
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)],
                              capture_output=True, text=True).stdout.split()
    assert len(children) >= 4  # discovery, beat, worker, web
    start = time.monotonic()
    farm.signal(proc, 15)
    proc.wait(15)
    assert time.monotonic() - start < 10
    assert proc.returncode == 0
    time.sleep(0.5)
    alive = [pid for pid in children if os.path.exists(f"/proc/{pid}")]
    assert alive == [], "children left behind"
