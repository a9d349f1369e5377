"""A real Prometheus 2.42 remote-writing to `clymene gateway` -> Kafka (Tansu) ->
`clymene ingester` -> VictoriaMetrics: every sample Prometheus scraped arrives."""

from __future__ import annotations

import json
import math
import time

from tests.farm import Farm
from tests.servers import (
    free_port,
    http_get,
    query,
    start_prometheus,
    start_tansu,
    start_victoria_metrics,
    vm_export,
    wait_until,
)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-11)


def test_prometheus_remote_write_through_gateway_and_kafka(tmp_path, redis_url,
                                                            node_exporter):
    broker = start_tansu(tmp_path)
    vm = start_victoria_metrics(tmp_path)
    gw_port, admin_port = free_port(), free_port()
    env = {"KAFKA_PRODUCER_BROKERS": broker.url, "KAFKA_CONSUMER_BROKERS": broker.url,
           "KAFKA_PRODUCER_REQUIRED_ACKS": "all", "KAFKA_CONSUMER_SESSION_TIMEOUT": "6s",
           "KAFKA_CONSUMER_PARTITIONS": "3",
           "GATEWAY_HTTP_SERVER_HOST_PORT": f"127.0.0.1:{gw_port}",
           "INGESTER_LISTEN_ADDRESS": f"127.0.0.1:{admin_port}"}
    farm = Farm(tmp_path, redis_url, "scrape_configs: []\n", env)
    prom = None
    try:
        farm.start("gateway", env={"STORAGE_TYPE": "kafka"})
        farm.start("ingester", env={"STORAGE_TYPE": "prometheus",
                                    "PROMETHEUS_REMOTE_URL": vm.write_url})
        def ready() -> bool:
            try:
                return http_get(f"http://127.0.0.1:{gw_port}/-/ready", 1)[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout=20, interval=0.1)
        prom = start_prometheus(
            tmp_path, f'- job_name: node\n  static_configs: [{{targets: ["{node_exporter.url[7:]}"]}}]',
            remote_write_url=f"http://127.0.0.1:{gw_port}/api/v1/write")
        # Prometheus starts its scrape loops about 5 s after start (discovery's update
        # interval); then let it scrape a few times.
        wait_until(lambda: query(prom, 'up{job="node"}'), timeout=30, interval=0.2)
        time.sleep(5)
        # Every raw sample Prometheus holds for the window (t0, t1] must be in VM.
        t1 = time.time() - 1
        status, body = http_get(
            f"{prom.url}/api/v1/query?query=%7Bjob%3D%22node%22%7D%5B4s%5D&time={t1}")
        assert status == 200
        result = json.loads(body)["data"]["result"]
        expected = {(tuple(sorted(r["metric"].items())), int(round(float(t) * 1000))): float(v)
                    for r in result for t, v in r["values"]}
        assert len(expected) > 1000  # several scrapes of node-exporter's ~500 series
        lo = min(ts for _, ts in expected)
        hi = max(ts for _, ts in expected)

        def stored() -> dict:
            rows = vm_export(vm, '{job="node"}')
            return {(tuple(sorted(r["metric"].items())), ts): float(v) for r in rows
                    for v, ts in zip(r["values"], r["timestamps"], strict=True)
                    if lo <= ts <= hi}

        try:
            wait_until(lambda: stored().keys() >= expected.keys(), timeout=40, interval=0.5)
        except TimeoutError:
            missing = expected.keys() - stored().keys()
            raise AssertionError(f"{len(missing)} of {len(expected)} samples missing, e.g. "
                                 f"{sorted(missing)[:3]}") from None
        got = stored()
        assert got.keys() == expected.keys()
        # VictoriaMetrics keeps about 12 significant digits of a value.
        wrong = [k for k, v in expected.items() if not _same(v, got[k])]
        assert not wrong, [(k, expected[k], got[k]) for k in wrong[:3]]
        status, text = http_get(f"http://127.0.0.1:{gw_port}/metrics")
        assert status == 200 and b"clymene_gateway_samples_received_total" in text
        assert b'code="204",handler="/api/v1/write"' in text
    finally:
        if prom is not None:
            prom.stop()
        took = farm.stop()
        print(farm.logs())
        broker.stop()
        vm.stop()
    assert max(took.values()) < 10, took
