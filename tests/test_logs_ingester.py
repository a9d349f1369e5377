"""`clymene promtail-ingester`: Kafka (Tansu) `clymene-logs` -> Loki test receiver and a
real Elasticsearch, one consumer group per backend, commit after write, DLQ."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer

from clymene import settings as settings_module
from clymene.kafka.producer import Publisher
from clymene.logs import ingester as log_ingester
from clymene.logs.kafka import stream_messages
from tests.loki_receiver import LokiReceiver
from tests.servers import free_port, http_get, start_tansu, wait_until

DAY = 1704067200 * 1_000_000_000  # 2024-01-01T00:00:00Z


def _es_count(url: str, index: str) -> int:
    urllib.request.urlopen(f"{url}/{index}/_refresh", data=b"", timeout=10)
    with urllib.request.urlopen(f"{url}/{index}/_count", timeout=10) as r:
        return json.loads(r.read())["count"]


def _es_lines(url: str, index: str) -> list[tuple[str, dict, str]]:
    urllib.request.urlopen(f"{url}/{index}/_refresh", data=b"", timeout=10)
    with urllib.request.urlopen(f"{url}/{index}/_search?size=1000&sort=@timestamp:asc",
                                timeout=10) as r:
        hits = json.loads(r.read())["hits"]["hits"]
    return [(h["_source"]["@timestamp"], h["_source"]["labels"], h["_source"]["line"])
            for h in hits]


def _dlq(broker_url: str, topic: str, count: int) -> list[dict[str, bytes]]:
    consumer = Consumer({"bootstrap.servers": broker_url, "group.id": f"dlq-reader-{topic}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": 6000})
    consumer.subscribe([topic])
    out: list[dict[str, bytes]] = []
    deadline = time.monotonic() + 30
    try:
        while len(out) < count and time.monotonic() < deadline:
            for m in consumer.consume(10, 0.5):
                if m.error() is None:
                    out.append({**dict(m.headers() or []), "value": m.value()})
    finally:
        consumer.close()
    return out


class _Ingester:
    def __init__(self, env: dict[str, str]) -> None:
        self.stop = threading.Event()
        self.result: list[int] = []
        settings = settings_module.load(env)
        self.thread = threading.Thread(
            target=lambda: self.result.append(log_ingester.run(settings, self.stop)),
            daemon=True)
        self.thread.start()

    def close(self) -> int:
        self.stop.set()
        self.thread.join(40)
        assert not self.thread.is_alive()
        return self.result[0]


def _batch(stream: int, start: int, n: int) -> list[tuple[str, list[tuple[int, str]]]]:
    return [(f'{{app="a{stream}", job="logs"}}',
             [(DAY + 1000 * i, f"a{stream} line {i}") for i in range(start, start + n)])]


def test_loki_and_elasticsearch_each_in_their_group(tmp_path, elasticsearch_server):
    broker = start_tansu(tmp_path / "tansu")
    es = elasticsearch_server.url
    rx = LokiReceiver()
    rx.down = True  # Loki is down at first: Elasticsearch must not wait for it
    topic = "clymene-logs-ing"
    admin = free_port()
    publisher = Publisher({"bootstrap.servers": broker.url, "acks": "all"}, topic,
                          partitions=3)
    env = {"KAFKA_CONSUMER_BROKERS": broker.url, "KAFKA_PRODUCER_BROKERS": broker.url,
           "KAFKA_CONSUMER_PARTITIONS": "3", "KAFKA_CONSUMER_SESSION_TIMEOUT": "6s",
           "KAFKA_CONSUMER_PROMTAIL_TOPIC": topic, "KAFKA_CONSUMER_GROUP_ID": "logs",
           "STORAGE_TYPE": "loki,elasticsearch", "LOKI_CLIENT_URL": rx.url,
           "LOKI_CLIENT_MIN_BACKOFF": "50ms", "INGESTER_MAX_BACKOFF": "200ms",
           "ES_SERVER_URLS": es, "ES_INDEX_PREFIX": "ingtest", "ES_NUM_REPLICAS": "0",
           "INGESTER_LISTEN_ADDRESS": f"127.0.0.1:{admin}"}
    index = "ingtest-clymene-logs-2024.01.01"
    pattern = "ingtest-clymene-logs-*"  # counts 0 before the index exists
    ing = None
    try:
        for start in range(0, 100, 10):
            messages = stream_messages(_batch(0, start, 10) + _batch(1, start, 10),
                                       "team-a")
            if start == 50:
                messages.append((b"poison", b"not a push request", None))
            publisher.publish(messages, time.monotonic() + 10)
        ing = _Ingester(env)
        wait_until(lambda: _es_count(es, pattern) == 200, 60, 0.3)
        assert rx.count() == 0
        metrics = http_get(f"http://127.0.0.1:{admin}/metrics")[1].decode()
        retries = [line for line in metrics.splitlines()
                   if line.startswith('clymene_ingester_log_push_retries{backend="loki"}')]
        assert retries and float(retries[0].split()[-1]) > 0, metrics
        assert 'clymene_ingester_log_push_retries{backend="elasticsearch"} 0' in metrics
        # Entries are counted once written and committed, per backend.
        wait_until(lambda: 'clymene_ingester_log_entries_written_total{backend="elasticsearch"} 200'
                   in http_get(f"http://127.0.0.1:{admin}/metrics")[1].decode(), 10, 0.2)
        rx.down = False
        wait_until(lambda: rx.count() == 200, 60, 0.1)
        assert ing.close() == 0
        ing = None
        # After a clean stop, only what comes later is delivered, once.
        publisher.publish(stream_messages(_batch(0, 100, 5), "team-a"),
                          time.monotonic() + 10)
        ing = _Ingester(env)
        wait_until(lambda: rx.count() == 205 and _es_count(es, pattern) == 205, 60, 0.2)
        time.sleep(1)
        assert ing.close() == 0
        ing = None
        dead = _dlq(broker.url, f"{topic}.dlq", 2)
    finally:
        if ing is not None:
            ing.close()
        publisher.close()
        broker.stop()
        rx.stop()
    assert rx.lines("team-a") == {
        '{app="a0", job="logs"}': [(DAY + 1000 * i, f"a0 line {i}") for i in range(105)],
        '{app="a1", job="logs"}': [(DAY + 1000 * i, f"a1 line {i}") for i in range(100)]}
    assert rx.rejected == 0 and rx.duplicates == 0
    docs = _es_lines(es, index)
    assert len(docs) == 205
    def doc(stream: int, i: int) -> tuple[str, dict, str]:
        return (f"2024-01-01T00:00:00.{i:06d}000Z", {"app": f"a{stream}", "job": "logs"},
                f"a{stream} line {i}")
    expected = [doc(0, i) for i in range(105)] + [doc(1, i) for i in range(100)]
    key = json.dumps
    assert sorted(docs, key=key) == sorted(expected, key=key)
    # the poison message once per backend, with the reason
    assert sorted((d["clymene.dlq.backend"], d["clymene.dlq.reason"], d["value"])
                  for d in dead) == [
        (b"elasticsearch", b"undecodable", b"not a push request"),
        (b"loki", b"undecodable", b"not a push request")]


def test_command_refuses_to_start_without_loki_url():
    out = subprocess.run([sys.executable, "-m", "clymene", "promtail-ingester",
                          "--kafka.consumer.brokers", "127.0.0.1:9"],
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "STORAGE_TYPE": "loki",
                              "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert out.returncode == 1, out.stderr
    assert "refusing to start: the loki backend needs --loki.client.url" in out.stderr
