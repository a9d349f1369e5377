"""node-exporter -> the farm with STORAGE_TYPE=kafka -> Kafka (Tansu) -> `clymene ingester`
-> Prometheus holds exactly what a direct write delivers to another Prometheus."""

from __future__ import annotations

import json
import time
import urllib.parse

from tests.farm import Farm
from tests.servers import free_port, http_get, query, start_prometheus, start_tansu, wait_until


def _raw(prom, selector: str, at: float) -> dict:
    """Every raw sample of `selector` in the 2 minutes before `at`."""
    q = urllib.parse.urlencode({"query": f"{selector}[2m]", "time": repr(at)})
    status, body = http_get(f"{prom.url}/api/v1/query?{q}", timeout=30)
    assert status == 200, body
    return {(tuple(sorted(r["metric"].items())), t): v
            for r in json.loads(body)["data"]["result"] for t, v in r["values"]}


def test_farm_through_kafka_equals_direct_write(tmp_path, redis_url, node_exporter):
    broker = start_tansu(tmp_path)
    via_kafka = start_prometheus(tmp_path / "a")
    direct = start_prometheus(tmp_path / "b")
    instance = node_exporter.url[7:]
    config = ("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
              f"  - job_name: node\n    static_configs:\n      - targets: ['{instance}']\n")
    admin_port = free_port()
    farm = Farm(tmp_path, redis_url, config, {
        "STORAGE_TYPE": "kafka,prometheus", "PROMETHEUS_REMOTE_URL": direct.write_url,
        "KAFKA_PRODUCER_BROKERS": broker.url, "KAFKA_CONSUMER_BROKERS": broker.url,
        "KAFKA_PRODUCER_REQUIRED_ACKS": "all", "KAFKA_CONSUMER_SESSION_TIMEOUT": "6s",
        "KAFKA_CONSUMER_PARTITIONS": "3", "METRIC_SPLIT_LENGTH": "100",
        "INGESTER_LISTEN_ADDRESS": f"127.0.0.1:{admin_port}"})
    try:
        farm.start("ingester", env={"STORAGE_TYPE": "prometheus",
                                    "PROMETHEUS_REMOTE_URL": via_kafka.write_url})
        farm.start("run")
        wait_until(lambda: query(direct, f'up{{instance="{instance}"}} == 1'), timeout=30,
                   interval=0.2)
        time.sleep(4)
        run = farm.procs[1][1]
        farm.signal(run, 15)
        run.wait(15)
        at = time.time()
        expected = _raw(direct, '{job="node"}', at)
        assert len({k[0] for k in expected}) > 200  # node-exporter's series, up, scrape_*
        assert len(expected) > 3 * 200  # several scrapes

        def arrived() -> bool:
            return _raw(via_kafka, '{job="node"}', at).keys() >= expected.keys()

        try:
            wait_until(arrived, timeout=30, interval=0.5)
        except TimeoutError:
            missing = expected.keys() - _raw(via_kafka, '{job="node"}', at).keys()
            raise AssertionError(f"{len(missing)} samples missing, e.g. "
                                 f"{sorted(missing)[:3]}") from None
        assert _raw(via_kafka, '{job="node"}', at) == expected
        # The ingester's counters reach the farm's Redis hash (served by the web process).
        import redis

        client = redis.Redis.from_url(redis_url)
        written = wait_until(lambda: client.hget(
            "clymene:stats", 'clymene_ingester_samples_written_total{backend="prometheus"}'),
            timeout=5)
        assert float(written) >= len(expected)
        status, body = http_get(f"http://127.0.0.1:{admin_port}/metrics")
        assert status == 200 and b"clymene_ingester_consumer_lag{" in body
    finally:
        took = farm.stop()
        print(farm.logs())
        broker.stop()
        via_kafka.stop()
        direct.stop()
    assert max(took.values()) < 10, took
