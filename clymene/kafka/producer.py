"""Publishing messages and waiting for the broker's acknowledgement.

`Publisher.publish` returns only when the broker acknowledged every message (per the
acks setting), so a caller that got no exception knows the data is safe in Kafka. A
message the client gave up on (broker down, its delivery timeout passed) is produced
again with backoff until the caller's deadline; a message the broker refuses for good
(too large, not authorized) fails at once. One Publisher is shared by every thread of
a process: a background thread serves the delivery reports, matched to their publish
call by closures.
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import KafkaError, Producer

from clymene import stats
from clymene.kafka.client import ensure_topic

log = logging.getLogger(__name__)

MIN_BACKOFF = 0.1
MAX_BACKOFF = 2.0

# Errors after which producing the same message again may succeed.
_RETRYABLE = {
    KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN, KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT,
    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION,
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.REQUEST_TIMED_OUT, KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND, KafkaError.NETWORK_EXCEPTION,
    KafkaError._QUEUE_FULL, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
}
_UNKNOWN_TOPIC = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC}


class PublishError(Exception):
    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


Message = tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]  # key, value, headers


class _Pending:
    """Delivery state of one publish call."""

    def __init__(self, count: int) -> None:
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.left = count
        self.retry: list[int] = []
        self.fatal: str = ""
        self.last_error: str = ""
        self.unknown_topic = False
        if count == 0:
            self.done.set()

    def report(self, index: int, err: KafkaError | None) -> None:
        with self.lock:
            if err is not None:
                self.last_error = err.str()
                if err.code() in _UNKNOWN_TOPIC:
                    self.unknown_topic = True
                if err.code() in _RETRYABLE or err.retriable():
                    self.retry.append(index)
                elif not self.fatal:
                    self.fatal = err.str()
            self.left -= 1
            if self.left == 0:
                self.done.set()


class Publisher:
    def __init__(self, conf: dict[str, object], topic: str, partitions: int = 6,
                 name: str = "kafka") -> None:
        self.conf = dict(conf)
        self.topic = topic
        self.partitions = partitions
        self.name = name
        self._producer = Producer(self.conf)
        self._topic_checked: set[str] = set()
        self._last_check: dict[str, float] = {}
        # One thread serves every delivery report as it comes; callers wait on their
        # own event, so no caller waits for a report another caller's poll took.
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._serve, name=f"{name}-deliveries",
                                        daemon=True)
        self._poller.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.1)

    def publish(self, messages: list[Message], deadline: float, topic: str | None = None) -> None:
        """Produce every message and wait for the broker's acknowledgement of all of
        them; raise PublishError when that did not happen by `deadline` (retryable) or
        the broker refused a message for good (not retryable)."""
        topic = topic or self.topic
        now = time.monotonic()
        if topic not in self._topic_checked and now - self._last_check.get(topic, -60) >= 5:
            # Create the topic up front (at most one try per 5 s while the broker does not
            # answer); a broker that does not answer yet is no reason to fail: the
            # retries below wait for it.
            self._last_check[topic] = now
            if ensure_topic(self.conf, topic, self.partitions,
                            timeout=max(0.5, min(5.0, deadline - now))):
                self._topic_checked.add(topic)
        todo = list(range(len(messages)))
        backoff = MIN_BACKOFF
        attempt = 0
        while True:
            attempt += 1
            pending = _Pending(len(todo))
            for index in todo:
                self._produce(topic, messages[index], index, pending, deadline)
            while not pending.done.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PublishError(
                        f"{self.name}: broker did not acknowledge {pending.left} of "
                        f"{len(messages)} messages by the deadline"
                        + (f": {pending.last_error}" if pending.last_error else ""),
                        retryable=True)
                pending.done.wait(remaining)
            if pending.fatal:
                raise PublishError(f"{self.name}: broker refused a message: {pending.fatal}",
                                   retryable=False)
            if not pending.retry:
                return
            stats.inc("clymene_kafka_produce_retries_total", len(pending.retry), topic=topic)
            if pending.unknown_topic:
                self._topic_checked.discard(topic)
                if ensure_topic(self.conf, topic, self.partitions, timeout=2.0):
                    self._topic_checked.add(topic)
            # Partition order: a message is re-produced only after all of this round's
            # reports came back, so nothing of this call overtakes it in flight.
            todo = sorted(pending.retry)
            if time.monotonic() + backoff >= deadline:
                raise PublishError(
                    f"{self.name}: gave up at the deadline after {attempt} attempts: "
                    f"{pending.last_error}", retryable=True)
            log.debug("%s: retrying %d messages: %s", self.name, len(todo), pending.last_error)
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _produce(self, topic: str, message: Message, index: int, pending: _Pending,
                 deadline: float) -> None:
        key, value, headers = message

        def on_delivery(err: KafkaError | None, _msg: object) -> None:
            pending.report(index, err)

        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers,
                                       on_delivery=on_delivery)
                return
            except BufferError:
                # The client's queue is full: serve delivery reports to make room.
                if time.monotonic() >= deadline:
                    pending.report(index, KafkaError(KafkaError._QUEUE_FULL))
                    return
                time.sleep(0.01)

    def close(self, timeout: float = 5.0) -> None:
        self._producer.flush(timeout)
        self._closed.set()
        self._poller.join(1.0)
