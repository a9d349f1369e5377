"""`clymene run --promtail.config.file ...` starts the log agent beside the farm: a CRI
file's lines reach the Loki test receiver, and SIGTERM stops everything cleanly (the
agent saving its positions on the way out)."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from tests.farm import Farm
from tests.loki_receiver import LokiReceiver
from tests.servers import wait_until

NS = 1704067200 * 1_000_000_000  # 2024-01-01T00:00:00Z


def _cri(i: int, text: str, flag: str = "F") -> str:
    return f"2024-01-01T00:00:{i:02d}.000000000Z stdout {flag} {text}\n"


def test_run_starts_the_log_agent(tmp_path, redis_url):
    rx = LokiReceiver()
    pod_dir = tmp_path / "pods" / "shop_web-1_uid1" / "app"
    pod_dir.mkdir(parents=True)
    log_file = pod_dir / "0.log"
    log_file.write_text(_cri(0, "first") + _cri(1, "par", "P") + _cri(1, "tial"))
    promtail = tmp_path / "promtail.yml"
    promtail.write_text(f"""
server: {{disable: true}}
positions: {{filename: {tmp_path}/positions.yaml, sync_period: 200ms}}
scrape_configs:
  - job_name: pods
    static_configs:
      - labels: {{job: pods, __path__: '{tmp_path}/pods/*/*/*.log'}}
    pipeline_stages: [{{cri: {{}}}}]
""")
    farm = Farm(tmp_path, redis_url, "scrape_configs: []\n",
                {"LOKI_CLIENT_URL": rx.url, "LOKI_CLIENT_BATCH_WAIT": "100ms"})
    proc = farm.start("run", "--promtail.config.file", str(promtail))
    try:
        wait_until(lambda: rx.count() == 2, 60, 0.1)
        with open(log_file, "a") as f:
            f.write(_cri(2, "after start"))
        wait_until(lambda: rx.count() == 3, 30, 0.1)
        farm.signal(proc, signal.SIGTERM)
        started = time.monotonic()
        assert proc.wait(20) == 0
        took = time.monotonic() - started
    except (AssertionError, subprocess.TimeoutExpired):
        print(farm.logs())
        raise
    finally:
        farm.stop()
        rx.stop()
    assert took < 12
    labels = f'{{filename="{log_file}", job="pods", stream="stdout"}}'
    assert rx.lines() == {labels: [(NS, "first"), (NS + 1_000_000_000, "partial"),
                                   (NS + 2_000_000_000, "after start")]}
    assert rx.rejected == 0 and rx.duplicates == 0
    positions = json.loads((tmp_path / "positions.yaml").read_text())["positions"]
    assert positions[str(log_file)]["offset"] == log_file.stat().st_size
    logs = farm.logs()
    assert "clymene running: discovery, beat, worker, web, promtail" in logs


def test_run_refuses_a_bad_promtail_config(tmp_path, redis_url):
    promtail = tmp_path / "promtail.yml"
    promtail.write_text("positions: {filename: /tmp/p.yaml}\nscrape_configs:\n"
                        "  - job_name: a\n    pipeline_stages: [{nosuchstage: {}}]\n")
    farm = Farm(tmp_path, redis_url, "scrape_configs: []\n")
    proc = farm.start("run", "--promtail.config.file", str(promtail))
    try:
        assert proc.wait(60) == 1
    finally:
        farm.stop()
    logs = farm.logs()
    assert "refusing to start" in logs and f"{promtail}:4" in logs, logs
    assert "clymene running" not in logs
