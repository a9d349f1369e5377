"""Logs through Kafka (the Tansu broker): agent -> `clymene-logs` (one message per stream,
keyed by stream) -> log ingester -> Loki test receiver; commits only after Loki accepted,
poison messages to the dead-letter topic."""

from __future__ import annotations

import threading
import time

import pytest

from clymene.kafka.producer import Publisher
from clymene.logs import config as log_config
from clymene.logs import loki_pb
from clymene.logs.agent import Agent
from clymene.logs.kafka import KafkaLogOutput, LogIngester, stream_messages
from clymene.logs.loki import LokiClient
from tests.loki_receiver import LokiReceiver
from tests.servers import start_tansu, wait_until


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    server = start_tansu(tmp_path_factory.mktemp("tansu"))
    yield server
    server.stop()


def consumer_conf(broker, group: str) -> dict:
    return {"bootstrap.servers": broker.url, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000}


def test_messages_are_keyed_by_stream():
    msgs = stream_messages([('{a="1"}', [(1, "x")]), ('{a="2"}', [(2, "y")])], "t1")
    assert [m[0] for m in msgs] == [b't1\x00{a="1"}', b't1\x00{a="2"}']
    assert msgs[0][2] == [("X-Scope-OrgID", b"t1")]
    assert loki_pb.decode_push_request(loki_pb.decompress(msgs[1][1])) == [('{a="2"}', [(2, "y")])]


def test_agent_to_kafka_to_loki(tmp_path, broker):
    topic = "clymene-logs-e2e"
    log = tmp_path / "a.log"
    log.write_text("".join(f"2024-01-01T00:00:{i:02d}Z stdout F line {i}\n" for i in range(50)))
    cfg = log_config.load_string(f"""
positions: {{filename: {tmp_path}/pos.yaml, sync_period: 100ms}}
scrape_configs:
  - job_name: j
    static_configs: [{{labels: {{job: j, __path__: '{tmp_path}/*.log'}}}}]
    pipeline_stages: [{{cri: {{}}}}, {{tenant: {{value: team-a}}}}]
""", "k.yml")
    publisher = Publisher({"bootstrap.servers": broker.url, "acks": "all"}, topic, partitions=3)
    out = KafkaLogOutput(publisher, topic)
    agent = Agent(cfg, out, batch_wait=0.05)
    stop = threading.Event()
    th = threading.Thread(target=agent.run, args=(stop,))
    th.start()
    try:
        wait_until(lambda: out.sent_entries == 50, 30)
    finally:
        stop.set()
        th.join(10)
    # a poison message beside the real ones
    publisher.publish([(b"bad", b"not snappy", None)], time.monotonic() + 10, topic)

    rx = LokiReceiver()
    rx.down = True  # Loki down first: nothing may be committed meanwhile
    loki = LokiClient(rx.url, min_backoff=0.05, max_backoff=0.1)
    dlq = Publisher({"bootstrap.servers": broker.url}, f"{topic}-dlq", partitions=1)
    ing = LogIngester(consumer_conf(broker, "logs-loki"), topic, loki, dlq)
    istop = threading.Event()
    ith = threading.Thread(target=ing.run, args=(istop,))
    ith.start()
    try:
        wait_until(lambda: loki.retries >= 3, 30)
        rx.down = False
        wait_until(lambda: rx.count() == 50, 30)
    finally:
        istop.set()
        ith.join(20)
        rx.stop()
    labels = f'{{filename="{log}", job="j", stream="stdout"}}'
    assert rx.lines("team-a") == {labels: [(1704067200_000000000 + i * 1_000_000_000,
                                            f"line {i}") for i in range(50)]}
    assert ing.dead_lettered == 1 and ing.delivered == 50
    from confluent_kafka import Consumer

    c = Consumer(consumer_conf(broker, "dlq-check"))
    c.subscribe([f"{topic}-dlq"])
    try:
        got = []
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            got = [m for m in c.consume(10, 0.5) if m.error() is None]
    finally:
        c.close()
    assert [(m.key(), m.value()) for m in got] == [(b"bad", b"not snappy")]
    assert dict(got[0].headers())["clymene-dlq-reason"].startswith(b"undecodable")
    # everything was committed: a new ingester of the same group gets only what is new
    publisher.publish(stream_messages([('{job="j"}', [(7, "new")])], None),
                      time.monotonic() + 10, topic)
    rx2 = LokiReceiver()
    ing2 = LogIngester(consumer_conf(broker, "logs-loki"), topic,
                       LokiClient(rx2.url, min_backoff=0.05), None)
    s2 = threading.Event()
    t2 = threading.Thread(target=ing2.run, args=(s2,))
    t2.start()
    try:
        wait_until(lambda: rx2.count() >= 1, 30)
        time.sleep(0.5)
    finally:
        s2.set()
        t2.join(20)
        rx2.stop()
    assert rx2.lines() == {'{job="j"}': [(7, "new")]} and ing2.dead_lettered == 0
    publisher.close()
    dlq.close()


def test_run_log_ingester_from_settings(broker):
    from clymene import settings as settings_module
    from clymene.logs.kafka import run_log_ingester

    topic = "clymene-logs-settings"
    rx = LokiReceiver()
    settings = settings_module.load({
        "KAFKA_CONSUMER_BROKERS": broker.url, "KAFKA_PRODUCER_BROKERS": broker.url,
        "KAFKA_CONSUMER_PROMTAIL_TOPIC": topic, "LOKI_CLIENT_URL": rx.url,
        "LOKI_CLIENT_TENANT_ID": "fallback"})
    publisher = Publisher({"bootstrap.servers": broker.url}, topic, partitions=2)
    publisher.publish(stream_messages([('{job="x"}', [(1, "a"), (2, "b")])], None),
                      time.monotonic() + 10)
    stop = threading.Event()
    result: list[int] = []
    th = threading.Thread(target=lambda: result.append(run_log_ingester(settings, stop)))
    th.start()
    try:
        wait_until(lambda: rx.count() == 2, 30)
    finally:
        stop.set()
        th.join(20)
        rx.stop()
        publisher.close()
    assert result == [0]
    assert rx.lines("fallback") == {'{job="x"}': [(1, "a"), (2, "b")]}
