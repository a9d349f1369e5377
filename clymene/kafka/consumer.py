"""The ingester's consumer loop: drain a topic into one backend, at least once.

One `BackendConsumer` per backend, each in its own consumer group
(`<group-id>-<backend>`) and its own thread, so each backend keeps its own offsets and a
failing backend never holds back another.

For each batch of messages (in partition order):
1. decode every message; one that cannot be decoded is poison;
2. write all decoded samples to the backend; a transient failure (5xx, 429, timeout,
   connection refused, the write's deadline) is retried with backoff for as long as it
   takes: the loop stops consuming meanwhile, so the data waits in Kafka (the group
   membership is kept by the client's background heartbeats);
3. a permanent rejection (a 4xx other than 429) is narrowed down message by message;
   the messages the backend refuses are poison too;
4. poison messages go to the dead-letter topic `<topic>.dlq`, with headers saying why
   (`clymene.dlq.reason`: undecodable | rejected, `clymene.dlq.error`, and where they
   came from), acknowledged by the broker;
5. only then are the offsets after the batch committed, synchronously.
A rebalance happens only between batches (inside `consume`), after the commit, so what
is done is committed and the rest is read again by the partition's next owner. On stop
(SIGTERM) a batch that is not written is left uncommitted and read again later.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from clymene import stats
from clymene.kafka import encoding as enc
from clymene.kafka.client import wait_topic
from clymene.kafka.producer import Publisher, PublishError
from clymene.storage import Storage, WriteError

log = logging.getLogger(__name__)

MIN_BACKOFF = 0.1
LAG_INTERVAL = 1.0


class BackendConsumer:
    def __init__(self, storage: Storage, conf: dict[str, object], topic: str, encoding: str,
                 dlq: Publisher, stop: threading.Event, batch_messages: int = 500,
                 write_timeout: float = 30.0, max_backoff: float = 5.0,
                 partitions: int = 6) -> None:
        self.storage = storage
        self.backend = storage.name
        self.conf = dict(conf)
        self.group = str(conf["group.id"])
        self.topic = topic
        self.dlq_topic = f"{topic}.dlq"
        self.encoding = enc.check_encoding(encoding, "--kafka.consumer.encoding")
        self.dlq = dlq
        self.stop = stop
        self.batch_messages = max(1, batch_messages)
        self.write_timeout = write_timeout
        self.max_backoff = max_backoff
        self.partitions = partitions
        self.ready = threading.Event()
        self.retrying = False
        self.last_error = ""
        # partition -> next offset to process (after the last commit); lag per partition
        self._next: dict[int, int] = {}
        self._lag: dict[int, int] = {}
        self._lag_lock = threading.Lock()
        self._last_lag = 0.0
        self._consumer: Any = None

    # -- public state -------------------------------------------------------------
    def lag(self) -> dict[int, int]:
        with self._lag_lock:
            return dict(self._lag)

    # -- the loop -------------------------------------------------------------------
    def run(self) -> None:
        if not wait_topic(self.conf, self.topic, self.partitions, self.stop):
            return
        consumer = Consumer(self.conf)
        self._consumer = consumer
        consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_revoke)
        self.ready.set()
        log.info("backend %s: consuming %s in group %s", self.backend, self.topic, self.group)
        try:
            while not self.stop.is_set():
                messages = consumer.consume(self.batch_messages, timeout=0.2)
                if messages:
                    self._process(consumer, messages)
                self._update_lag(consumer)
        finally:
            try:
                consumer.close()  # leaves the group: the partitions move at once
            except (KafkaException, RuntimeError) as exc:
                log.warning("backend %s: closing the consumer: %s", self.backend, exc)
            log.info("backend %s: consumer closed", self.backend)

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        log.info("backend %s: assigned partitions %s", self.backend,
                 [p.partition for p in partitions])
        with self._lag_lock:
            for p in partitions:
                self._next.pop(p.partition, None)
        self._last_lag = 0.0

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        # Offsets are committed after every batch, before consume() can rebalance, so
        # nothing is pending here: the new owner starts after the last written message.
        log.info("backend %s: partitions %s revoked", self.backend,
                 [p.partition for p in partitions])
        with self._lag_lock:
            for p in partitions:
                self._next.pop(p.partition, None)
                self._lag.pop(p.partition, None)

    # -- hooks for other message kinds (clymene.logs.ingester) -----------------------
    def decode(self, message: Any) -> list[Any]:
        """The items one message carries, as the storage writes them; ValueError when it
        cannot be decoded."""
        return enc.decode(message.value() or b"", self.encoding)

    def count_written(self, written: list[list[Any]]) -> None:
        """Count what a batch wrote: the decoded items of each written message."""
        n = sum(len(items) for items in written)
        stats.inc("clymene_ingester_samples_written_total", n, backend=self.backend)

    def _process(self, consumer: Any, messages: list[Any]) -> None:
        records: list[list[Any]] = []  # [message, items or None, reason, error]
        for m in messages:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("backend %s: consumer error: %s", self.backend, err.str())
                continue
            try:
                items = self.decode(m)
            except ValueError as exc:
                records.append([m, None, "undecodable", str(exc)])
            else:
                records.append([m, items, "", ""])
        if not records:
            return
        batch = [i for r in records if r[1] for i in r[1]]
        outcome, error = self._write(batch) if batch else ("ok", "")
        if outcome == "stopped":
            return
        if outcome == "rejected":
            # Find the messages the backend refuses; write the others.
            for r in records:
                if r[1]:
                    one, error = self._write(r[1])
                    if one == "stopped":
                        return
                    if one == "rejected":
                        r[1], r[2], r[3] = None, "rejected", error
        written: list[list[Any]] = []
        for m, items, reason, error in records:
            if items is None:
                if not self._dead_letter(m, reason, error):
                    return
            else:
                written.append(items)
        stats.inc("clymene_ingester_messages_written_total", len(written), backend=self.backend)
        self.count_written(written)
        self._commit(consumer, records)

    def _write(self, items: list[Any]) -> tuple[str, str]:
        """("ok" | "rejected" | "stopped", error): retries transient failures until they
        pass or the ingester stops."""
        backoff = MIN_BACKOFF
        while True:
            try:
                self.storage.write(items, time.monotonic() + self.write_timeout)
                if self.retrying:
                    log.info("backend %s: writing again", self.backend)
                self.retrying = False
                return "ok", ""
            except WriteError as exc:
                if not exc.retryable:
                    return "rejected", str(exc)
                error = str(exc)
            except Exception as exc:  # an unexpected backend failure: retried as transient
                error = f"{type(exc).__name__}: {exc}"
            if not self.retrying:
                log.warning("backend %s: write failed, retrying until it passes: %s",
                            self.backend, error)
            self.retrying = True
            self.last_error = error
            stats.inc("clymene_ingester_write_retries_total", backend=self.backend)
            if self.stop.wait(backoff):
                return "stopped", error
            if self._consumer is not None:
                self._update_lag(self._consumer)
            backoff = min(backoff * 2, self.max_backoff)

    def _dead_letter(self, m: Any, reason: str, error: str) -> bool:
        headers = list(m.headers() or [])
        headers += [
            ("clymene.dlq.reason", reason.encode()),
            ("clymene.dlq.error", error.encode("utf-8", "replace")[:4096]),
            ("clymene.dlq.backend", self.backend.encode()),
            ("clymene.dlq.group", self.group.encode()),
            ("clymene.dlq.topic", m.topic().encode()),
            ("clymene.dlq.partition", str(m.partition()).encode()),
            ("clymene.dlq.offset", str(m.offset()).encode()),
        ]
        backoff = MIN_BACKOFF
        while True:
            try:
                self.dlq.publish([(m.key(), m.value() or b"", headers)],
                                 time.monotonic() + 30.0, topic=self.dlq_topic)
                break
            except PublishError as exc:
                log.warning("backend %s: dead-letter publish failed: %s", self.backend, exc)
                stats.inc("clymene_ingester_dlq_retries_total", backend=self.backend)
                if self.stop.wait(backoff):
                    return False
                backoff = min(backoff * 2, self.max_backoff)
        log.warning("backend %s: %s message %s[%d]@%d sent to %s: %s", self.backend, reason,
                    m.topic(), m.partition(), m.offset(), self.dlq_topic, error)
        stats.inc("clymene_ingester_dlq_messages_total", backend=self.backend, reason=reason)
        return True

    def _commit(self, consumer: Any, records: list[list[Any]]) -> None:
        offsets: dict[tuple[str, int], int] = {}
        for r in records:
            m = r[0]
            key = (m.topic(), m.partition())
            offsets[key] = max(offsets.get(key, -1), m.offset() + 1)
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        for attempt in range(5):
            try:
                consumer.commit(offsets=tps, asynchronous=False)
                stats.inc("clymene_ingester_commits_total", backend=self.backend)
                break
            except KafkaException as exc:
                # Not committed: these messages are read again later (at least once).
                stats.inc("clymene_ingester_commit_failures_total", backend=self.backend)
                log.warning("backend %s: commit failed (attempt %d): %s", self.backend,
                            attempt + 1, exc)
                if self.stop.wait(0.2 * (attempt + 1)):
                    break
        with self._lag_lock:
            for (_, p), o in offsets.items():
                self._next[p] = o

    def _update_lag(self, consumer: Any, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_lag < LAG_INTERVAL:
            return
        self._last_lag = now
        try:
            assignment = consumer.assignment()
            missing = [p for p in assignment if p.partition not in self._next]
            if missing:
                # Once per assignment: where the group stands (-1: nothing committed).
                for tp in consumer.committed(missing, timeout=2.0):
                    self._next[tp.partition] = max(tp.offset, -1)
            lag: dict[int, int] = {}
            for tp in assignment:
                # The high watermark the last fetch response carried (asking the broker
                # for it costs a round trip per partition; Tansu's answer is not exact).
                low, high = consumer.get_watermark_offsets(tp, cached=True) or (-1, -1)
                nxt = self._next.get(tp.partition, -1)
                if nxt < 0:
                    nxt = max(low, 0)
                lag[tp.partition] = max(0, high - nxt)
        except (KafkaException, RuntimeError, TypeError) as exc:
            log.info("backend %s: lag not known: %s", self.backend, exc)
            return
        with self._lag_lock:
            self._lag = lag
