"""Logs through Kafka (the Tansu broker): agent -> `clymene-logs` (one message per stream,
keyed by stream) -> `clymene promtail-ingester` (clymene.logs.ingester) -> Loki test
receiver; commits only after Loki accepted, poison messages to `clymene-logs.dlq`."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import OFFSET_INVALID, Consumer, TopicPartition

from clymene import settings as settings_module
from clymene.kafka.producer import Publisher
from clymene.logs import config as log_config
from clymene.logs import ingester as log_ingester
from clymene.logs import loki_pb
from clymene.logs.agent import Agent
from clymene.logs.kafka import KafkaLogOutput, stream_messages
from clymene.logs.loki import LokiClient
from tests.loki_receiver import LokiReceiver
from tests.servers import start_tansu, wait_until


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    server = start_tansu(tmp_path_factory.mktemp("tansu"))
    yield server
    server.stop()


def _settings(broker, **env: str):
    return settings_module.load({
        "KAFKA_CONSUMER_BROKERS": broker.url, "KAFKA_PRODUCER_BROKERS": broker.url,
        "KAFKA_CONSUMER_SESSION_TIMEOUT": "6s", "INGESTER_MAX_BACKOFF": "200ms", **env})


def _committed(broker, group: str, topic: str, partitions: int) -> list[int]:
    """The group's committed offsets (OFFSET_INVALID: none), read without joining it."""
    c = Consumer({"bootstrap.servers": broker.url, "group.id": group,
                  "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in tps]
    finally:
        c.close()


def _read_all(broker, topic: str, least: int) -> list:
    """Every message of `topic` (at least `least` are waited for), read by a new group."""
    c = Consumer({"bootstrap.servers": broker.url, "group.id": f"reader-{topic}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 6000})
    c.subscribe([topic])
    got: list = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < least and time.monotonic() < deadline:
            got += [m for m in c.consume(10, 0.5) if m.error() is None]
        got += [m for m in c.consume(10, 1.0) if m.error() is None]  # and nothing more
    finally:
        c.close()
    return got


class _Running:
    """A LogIngesterProcess in its threads, stopped by close()."""

    def __init__(self, settings, output) -> None:
        self.process = log_ingester.LogIngesterProcess(settings, [output])
        self.storage = self.process.storages[0]
        self.process.start()

    def close(self) -> None:
        self.process.close()
        assert not any(t.is_alive() for t in self.process._threads)


def test_messages_are_keyed_by_stream():
    msgs = stream_messages([('{a="1"}', [(1, "x")]), ('{a="2"}', [(2, "y")])], "t1")
    assert [m[0] for m in msgs] == [b't1\x00{a="1"}', b't1\x00{a="2"}']
    assert msgs[0][2] == [("X-Scope-OrgID", b"t1")]
    assert loki_pb.decode_push_request(loki_pb.decompress(msgs[1][1])) == [('{a="2"}', [(2, "y")])]


def test_agent_to_kafka_to_loki(tmp_path, broker):
    topic = "clymene-logs"
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

    settings = _settings(broker, KAFKA_CONSUMER_GROUP_ID="logs", KAFKA_CONSUMER_PARTITIONS="3")
    assert settings.kafka_consumer_promtail_topic == topic  # the default
    rx = LokiReceiver()
    rx.down = True  # Loki down first: nothing may be committed meanwhile
    loki = LokiClient(rx.url, min_backoff=0.05, max_backoff=0.1)
    ing = _Running(settings, loki)
    try:
        wait_until(lambda: loki.retries >= 3, 30)
        assert _committed(broker, "logs-loki", topic, 3) == [OFFSET_INVALID] * 3
        assert rx.count() == 0
        rx.down = False
        wait_until(lambda: rx.count() == 50, 30)
    finally:
        ing.close()
        rx.stop()
    labels = f'{{filename="{log}", job="j", stream="stdout"}}'
    assert rx.lines("team-a") == {labels: [(1704067200_000000000 + i * 1_000_000_000,
                                            f"line {i}") for i in range(50)]}
    assert rx.rejected == 0 and rx.duplicates == 0
    assert ing.storage.entries_written == 50

    # everything was committed: a new ingester of the same group gets only what is new
    publisher.publish(stream_messages([('{job="j"}', [(7, "new")])], None),
                      time.monotonic() + 10, topic)
    rx2 = LokiReceiver()
    ing2 = _Running(settings, LokiClient(rx2.url, min_backoff=0.05))
    try:
        wait_until(lambda: rx2.count() >= 1, 30)
        time.sleep(0.5)
    finally:
        ing2.close()
        rx2.stop()
        publisher.close()
    assert rx2.lines() == {'{job="j"}': [(7, "new")]}
    assert ing2.storage.entries_written == 1

    # the poison message, once, in `<topic>.dlq`, with why and where it came from
    dead = _read_all(broker, f"{topic}.dlq", 1)
    assert [(m.key(), m.value()) for m in dead] == [(b"bad", b"not snappy")]
    headers = dict(dead[0].headers())
    with pytest.raises(ValueError) as undecodable:
        log_ingester.decode_message(b"not snappy", None)
    assert headers["clymene.dlq.reason"] == b"undecodable"
    assert headers["clymene.dlq.error"] == str(undecodable.value).encode()
    assert headers["clymene.dlq.backend"] == b"loki"
    assert headers["clymene.dlq.group"] == b"logs-loki"
    assert headers["clymene.dlq.topic"] == topic.encode()
    source = [m for m in _read_all(broker, topic, 1) if m.key() == b"bad"]
    assert [(headers["clymene.dlq.partition"], headers["clymene.dlq.offset"])] == [
        (str(m.partition()).encode(), str(m.offset()).encode()) for m in source]


def test_promtail_ingester_from_settings(broker):
    topic = "clymene-logs-settings"
    rx = LokiReceiver()
    settings = _settings(broker, KAFKA_CONSUMER_PROMTAIL_TOPIC=topic,
                         KAFKA_CONSUMER_PARTITIONS="2", LOKI_CLIENT_URL=rx.url,
                         LOKI_CLIENT_TENANT_ID="fallback")
    publisher = Publisher({"bootstrap.servers": broker.url}, topic, partitions=2)
    publisher.publish(stream_messages([('{job="x"}', [(1, "a"), (2, "b")])], None),
                      time.monotonic() + 10)
    stop = threading.Event()
    result: list[int] = []
    th = threading.Thread(target=lambda: result.append(log_ingester.run(settings, stop)))
    th.start()
    try:
        wait_until(lambda: rx.count() == 2, 30)
    finally:
        stop.set()
        th.join(40)
        rx.stop()
        publisher.close()
    assert not th.is_alive() and result == [0]
    assert rx.lines("fallback") == {'{job="x"}': [(1, "a"), (2, "b")]}
    # group `<--kafka.consumer.group-id>-loki`, committed past the one message
    assert sorted(_committed(broker, "clymene-loki", topic, 2)) == [OFFSET_INVALID, 1]
