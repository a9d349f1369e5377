"""Kafka pipeline end to end against a real broker (Tansu) and VictoriaMetrics:
publishing acknowledged and keyed, the ingester at least once through a database outage
and a SIGKILL, one failing backend not holding back another, poison messages to the DLQ."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from clymene import settings as settings_module
from clymene import stats
from clymene.kafka import encoding as enc
from clymene.kafka.ingester import Ingester
from clymene.storage import WriteError
from clymene.storage.kafka import open_kafka
from clymene.storage.prometheus import RemoteWriteStorage
from tests.farm import Farm
from tests.servers import (
    free_port,
    http_get,
    start_tansu,
    start_victoria_metrics,
    vm_export,
    wait_until,
)

NOW_MS = int(time.time() * 1000) - 600_000  # ten minutes ago: inside every retention


@pytest.fixture
def broker(tmp_path):
    server = start_tansu(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def vm(tmp_path):
    server = start_victoria_metrics(tmp_path)
    yield server
    server.stop()


def _settings(broker_url: str, topic: str, **env: str):
    base = {"KAFKA_PRODUCER_BROKERS": broker_url, "KAFKA_CONSUMER_BROKERS": broker_url,
            "KAFKA_PRODUCER_TOPIC": topic, "KAFKA_CONSUMER_TOPIC": topic,
            "KAFKA_PRODUCER_REQUIRED_ACKS": "all", "KAFKA_CONSUMER_SESSION_TIMEOUT": "6s",
            "KAFKA_CONSUMER_PARTITIONS": "4", "INGESTER_WRITE_TIMEOUT": "2s",
            "INGESTER_MAX_BACKOFF": "500ms", "METRIC_SPLIT_LENGTH": "16"}
    base.update(env)
    return settings_module.load(base)


def _batch(n: int, series: int = 40, targets: int = 4) -> list:
    """Scrape-like batch number n: `series` series spread over `targets` targets."""
    ts = NOW_MS + n * 100
    return [((("__name__", "pipe_m"), ("i", str(i)), ("instance", f"t{i % targets}:9100"),
              ("job", "pipe"), ("n", "x")), float(n * 1000 + i), ts) for i in range(series)]


def _expected(batches: list[list]) -> set:
    return {(labels, ts, value) for batch in batches for labels, value, ts in batch}


def _stored(server, match: str = '{__name__="pipe_m"}') -> tuple[set, int, set]:
    """(distinct samples, rows exported, (labels, ts) pairs seen with two values)."""
    rows = vm_export(server, match)
    seen: dict[tuple, float] = {}
    conflicts = set()
    count = 0
    for row in rows:
        labels = tuple(sorted(row["metric"].items()))
        for value, ts in zip(row["values"], row["timestamps"], strict=True):
            count += 1
            if seen.setdefault((labels, ts), value) != value:
                conflicts.add((labels, ts))
    return {(lb, ts, v) for (lb, ts), v in seen.items()}, count, conflicts


def _wait_all(server, expected: set, timeout: float) -> None:
    def arrived() -> bool:
        return _stored(server)[0] >= expected
    try:
        wait_until(arrived, timeout=timeout, interval=0.5)
    except TimeoutError:
        got = _stored(server)[0]
        raise AssertionError(f"{len(expected - got)} of {len(expected)} samples missing, "
                             f"e.g. {sorted(expected - got)[:3]}") from None


def _assert_exact(server, expected: set) -> None:
    got, _, conflicts = _stored(server)
    assert got == expected, (len(got - expected), len(expected - got))
    assert not conflicts  # a duplicate is an exact replay, never a different value


def _reader(broker_url: str, topic: str, partitions: int) -> Consumer:
    """A consumer of every partition from the start, with no group to join."""
    consumer = Consumer({"bootstrap.servers": broker_url, "group.id": "test-reader",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    return consumer


def _publisher(storage, batches: list, stop: threading.Event, every: float = 0.05):
    def run() -> None:
        n = 0
        while not stop.is_set():
            batch = _batch(n)
            storage.write(batch, time.monotonic() + 10)  # raises if not acknowledged
            batches.append(batch)
            n += 1
            time.sleep(every)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_write_returns_after_ack_keyed_by_target_in_order(tmp_path, broker):
    s = _settings(broker.url, "keys", METRIC_SPLIT_LENGTH="3")
    storage = open_kafka(s)
    try:
        batches = [_batch(n, series=10, targets=2) for n in range(5)]
        for b in batches:
            storage.write(b, time.monotonic() + 10)
    finally:
        storage.close()
    consumer = _reader(broker.url, "keys", 4)
    got = []
    deadline = time.monotonic() + 20
    while len(got) < 20 and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            got.append((m.key(), m.partition(), m.offset(), enc.decode(m.value(), "protobuf")))
    consumer.close()
    # 5 batches x 2 targets x ceil(5 series / 3) = 20 messages, every one acknowledged.
    assert len(got) == 20
    by_key: dict[bytes, list] = {}
    for key, partition, offset, samples in got:
        by_key.setdefault(key, []).append((partition, offset, samples))
    assert set(by_key) == {b"/pipe/t0:9100", b"/pipe/t1:9100"}
    for key, msgs in by_key.items():
        assert len({p for p, _, _ in msgs}) == 1  # one partition per target
        msgs.sort(key=lambda m: m[1])
        flat = [s for _, _, samples in msgs for s in samples]
        instance = key.decode().rsplit("/", 1)[1]
        assert flat == [s for b in batches for s in b if ("instance", instance) in s[0]]
        assert [len(samples) for _, _, samples in msgs] == [3, 2] * 5


def test_broker_outage_retried_until_the_deadline_then_dropped(tmp_path):
    port = free_port()
    s = _settings(f"127.0.0.1:{port}", "outage", KAFKA_PRODUCER_DELIVERY_TIMEOUT="1s")
    storage = open_kafka(s)
    stats.drain()
    try:
        t0 = time.monotonic()
        with pytest.raises(WriteError) as info:
            storage.write(_batch(0), time.monotonic() + 2.5)
        assert info.value.retryable
        assert 2.4 <= time.monotonic() - t0 < 4.5
        counts = stats.drain()
        assert counts['clymene_storage_samples_dropped_total{reason="deadline",storage="kafka"}'] == 40
        # The broker comes back while a write is retrying: that write succeeds.
        holder: dict = {}

        def late_broker() -> None:
            time.sleep(1.5)
            holder["broker"] = start_tansu(tmp_path, port=port)

        t = threading.Thread(target=late_broker)
        t.start()
        storage.write(_batch(1), time.monotonic() + 20)
        t.join()
        assert stats.drain()['clymene_storage_samples_written_total{storage="kafka"}'] == 40
    finally:
        storage.close()
        if "holder" in locals() and "broker" in holder:
            holder["broker"].stop()


def test_database_down_60s_then_every_sample_arrives(tmp_path, broker, vm):
    """The database is away for 60 s while data keeps flowing into Kafka: failed writes,
    retries with backoff, data waiting in Kafka; afterwards every sample arrives."""
    s = _settings(broker.url, "down")
    producer = open_kafka(s)
    data_dir = next(Path(tmp_path).glob("vm-data-*"))
    ingester = Ingester(s, [RemoteWriteStorage(vm.write_url, timeout=1.0, name="vm")])
    ingester.start()
    batches: list = []
    stop = threading.Event()
    publisher = _publisher(producer, batches, stop)
    vm2 = None
    try:
        time.sleep(3)
        vm.stop()
        down_from = len(batches)
        time.sleep(60)
        assert len(batches) > down_from + 100  # publishing went on during the outage
        [consumer] = ingester.consumers
        assert consumer.retrying and sum(consumer.lag().values()) > 0
        vm2 = start_victoria_metrics(tmp_path, port=vm.port, data_dir=data_dir)
        time.sleep(2)
        stop.set()
        publisher.join()
        expected = _expected(batches)
        _wait_all(vm2, expected, timeout=60)
        _assert_exact(vm2, expected)
        wait_until(lambda: not consumer.retrying and sum(consumer.lag().values()) == 0,
                   timeout=10)
        totals = ingester.exporter.totals()
        assert totals['clymene_ingester_write_retries_total{backend="vm"}'] > 5
        assert totals['clymene_ingester_samples_written_total{backend="vm"}'] >= len(expected)
    finally:
        stop.set()
        ingester.close()
        producer.close()
        if vm2 is not None:
            vm2.stop()


def test_ingester_sigkill_mid_stream_and_restart_loses_nothing(tmp_path, broker, vm,
                                                               redis_url):
    s = _settings(broker.url, "kill")
    producer = open_kafka(s)
    admin_port = free_port()
    env = {"STORAGE_TYPE": "prometheus", "PROMETHEUS_REMOTE_URL": vm.write_url,
           "KAFKA_CONSUMER_BROKERS": broker.url, "KAFKA_CONSUMER_TOPIC": "kill",
           "KAFKA_CONSUMER_SESSION_TIMEOUT": "6s", "KAFKA_CONSUMER_PARTITIONS": "4",
           "INGESTER_LISTEN_ADDRESS": f"127.0.0.1:{admin_port}"}
    farm = Farm(tmp_path, redis_url, "scrape_configs: []\n", env)
    batches: list = []
    stop = threading.Event()
    publisher = _publisher(producer, batches, stop, every=0.02)
    try:
        first = farm.start("ingester")
        wait_until(lambda: _stored(vm)[0], timeout=30, interval=0.3)  # it is writing
        time.sleep(1)
        farm.signal(first, signal.SIGKILL)
        first.wait(5)
        time.sleep(1)
        farm.start("ingester")
        time.sleep(2)
        stop.set()
        publisher.join()
        expected = _expected(batches)
        _wait_all(vm, expected, timeout=60)
        _assert_exact(vm, expected)
        # The restarted ingester's own /metrics, and its counters in the farm's Redis.
        status, body = http_get(f"http://127.0.0.1:{admin_port}/metrics")
        assert status == 200
        assert b'clymene_ingester_consumer_lag{backend="prometheus",partition="0",topic="kill"}' \
            in body
        import redis

        client = redis.Redis.from_url(redis_url)
        wait_until(lambda: client.hget("clymene:stats",
                                       'clymene_ingester_samples_written_total'
                                       '{backend="prometheus"}'), timeout=5)
    finally:
        stop.set()
        took = farm.stop()
        producer.close()
        print(farm.logs())
    assert took["ingester"] < 10


class _Failing:
    """A backend that fails (transiently) until told otherwise."""

    def __init__(self) -> None:
        self.name = "failing"
        self.fail = True
        self.samples: list = []

    def write(self, batch, deadline):
        if self.fail:
            time.sleep(0.05)
            raise WriteError("failing: connection refused", retryable=True)
        self.samples.extend(batch)

    def close(self):
        pass


def test_one_failing_backend_does_not_hold_back_the_other(tmp_path, broker, vm):
    s = _settings(broker.url, "two")
    producer = open_kafka(s)
    failing = _Failing()
    ingester = Ingester(s, [RemoteWriteStorage(vm.write_url, name="vm"), failing])
    ingester.start()
    batches: list = []
    stop = threading.Event()
    publisher = _publisher(producer, batches, stop, every=0.05)
    healthy, bad = ingester.consumers
    try:
        wait_until(lambda: healthy.lag() and bad.lag(), timeout=30)
        worst = 0
        for _ in range(16):  # 8 s of traffic
            time.sleep(0.5)
            worst = max(worst, sum(healthy.lag().values()))
        # Each batch is 10 messages (4 targets x 16 series); lag stays within a few batches.
        assert worst <= 60, worst
        assert sum(bad.lag().values()) > 300
        stop.set()
        publisher.join()
        expected = _expected(batches)
        _wait_all(vm, expected, timeout=20)  # current while the other backend fails
        assert bad.retrying and not failing.samples
        failing.fail = False
        wait_until(lambda: _expected([failing.samples]) >= expected, timeout=30)
        assert _expected([failing.samples]) == expected
        totals = ingester.exporter.render().decode()
        assert 'clymene_ingester_write_retries_total{backend="failing"}' in totals
        assert 'clymene_ingester_write_retries_total{backend="vm"}' not in totals
    finally:
        stop.set()
        ingester.close()
        producer.close()


class _Picky:
    """Rejects (for good, like a 400) any batch holding a series labelled poison="yes"."""

    name = "picky"

    def __init__(self) -> None:
        self.samples: list = []

    def write(self, batch, deadline):
        if any(("poison", "yes") in labels for labels, _, _ in batch):
            raise WriteError("picky: server returned HTTP 400: bad series", retryable=False)
        self.samples.extend(batch)

    def close(self):
        pass


def test_poison_messages_go_to_the_dlq_with_their_reason(tmp_path, broker):
    s = _settings(broker.url, "poison")
    producer = open_kafka(s)
    picky = _Picky()
    ingester = Ingester(s, [picky])
    try:
        first = _batch(0, series=4, targets=1)
        producer.write(first, time.monotonic() + 10)
        key = b"/pipe/t0:9100"
        producer.publisher.publish([(key, b"\x00not snappy at all", [("origin", b"test")])],
                                   time.monotonic() + 10)
        rejected = [((("__name__", "pipe_m"), ("instance", "t0:9100"), ("job", "pipe"),
                      ("poison", "yes")), 1.0, NOW_MS)]
        producer.write(rejected, time.monotonic() + 10)
        after = _batch(1, series=4, targets=1)
        producer.write(after, time.monotonic() + 10)
        ingester.start()
        wait_until(lambda: len(picky.samples) == 8, timeout=30)
        assert picky.samples == first + after  # in order, around the poison
        consumer = _reader(broker.url, "poison.dlq", 1)
        dead = []
        deadline = time.monotonic() + 20
        while len(dead) < 2 and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and not m.error():
                dead.append(m)
        consumer.close()
        assert len(dead) == 2
        undecodable, refused = sorted(dead, key=lambda m: dict(m.headers())["clymene.dlq.offset"])
        h = dict(undecodable.headers())
        assert undecodable.value() == b"\x00not snappy at all" and undecodable.key() == key
        assert h["clymene.dlq.reason"] == b"undecodable"
        assert h["clymene.dlq.error"].startswith(b"not snappy-compressed")
        assert h["origin"] == b"test" and h["clymene.dlq.backend"] == b"picky"
        assert h["clymene.dlq.topic"] == b"poison" and h["clymene.dlq.offset"] == b"1"
        assert h["clymene.dlq.group"] == b"clymene-picky"
        h = dict(refused.headers())
        assert h["clymene.dlq.reason"] == b"rejected"
        assert h["clymene.dlq.error"] == b"picky: server returned HTTP 400: bad series"
        assert enc.decode(refused.value(), "protobuf") == rejected
        totals = ingester.exporter.totals()
        assert totals['clymene_ingester_dlq_messages_total{backend="picky",reason="undecodable"}'] == 1
        assert totals['clymene_ingester_dlq_messages_total{backend="picky",reason="rejected"}'] == 1
    finally:
        ingester.close()
        producer.close()


def test_two_ingesters_share_partitions_and_a_stopped_one_hands_over(tmp_path, broker, vm):
    """Two ingesters in one group split the partitions; one stops (what SIGTERM does)
    mid-stream, the other takes its partitions over from the last commit: nothing lost."""
    s = _settings(broker.url, "share")
    producer = open_kafka(s)
    first = Ingester(s, [RemoteWriteStorage(vm.write_url, name="vm")])
    second = Ingester(s, [RemoteWriteStorage(vm.write_url, name="vm")])
    first.start()
    second.start()
    batches: list = []
    stop = threading.Event()
    publisher = _publisher(producer, batches, stop, every=0.02)
    try:
        def split() -> bool:
            a, b = first.consumers[0].lag(), second.consumers[0].lag()
            return bool(a) and bool(b) and sorted([*a, *b]) == [0, 1, 2, 3]
        wait_until(split, timeout=40, interval=0.2)
        time.sleep(1)
        first.close()
        wait_until(lambda: sorted(second.consumers[0].lag()) == [0, 1, 2, 3], timeout=30,
                   interval=0.2)
        time.sleep(1)
        stop.set()
        publisher.join()
        expected = _expected(batches)
        _wait_all(vm, expected, timeout=30)
        _assert_exact(vm, expected)
    finally:
        stop.set()
        first.close()
        second.close()
        producer.close()
