"""Logs through Kafka: the agent's `kafka` output and the log ingester (Kafka -> Loki).

Topic `clymene-logs` (`--kafka.producer.promtail.topic`). One message per stream of a
batch, keyed by tenant and stream labels, so one partition keeps each stream in order;
the value is the snappy-compressed `logproto.PushRequest` holding that one stream (the
Loki push body, so it can be forwarded as it is) and the tenant travels in the
`X-Scope-OrgID` header.

The ingester (consumer group `<group-id>-loki`) pushes what it polled to Loki and
commits the offsets only after Loki accepted it; a message that cannot be decoded, or
that Loki refuses for good (4xx), goes to `<topic>-dlq` before its offset is committed.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from clymene.logs import loki_pb
from clymene.logs.loki import PushAborted

log = logging.getLogger(__name__)

TENANT_HEADER = "X-Scope-OrgID"


def stream_messages(streams: list[loki_pb.Stream], tenant: str | None) -> list[tuple]:
    headers = [(TENANT_HEADER, tenant.encode())] if tenant else None
    prefix = (tenant or "") + "\x00"
    return [((prefix + labels).encode(),
             loki_pb.compress(loki_pb.encode_push_request([(labels, entries)])), headers)
            for labels, entries in streams]


class KafkaLogOutput:
    """The agent's output to Kafka: same contract as LokiClient.push."""

    name = "kafka"

    def __init__(self, publisher: Any, topic: str, timeout: float = 30.0,
                 min_backoff: float = 0.5, max_backoff: float = 30.0) -> None:
        self.publisher = publisher
        self.topic = topic
        self.timeout = timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.sent_entries = 0
        self.dropped_entries = 0
        self.retries = 0

    def push(self, streams: list[loki_pb.Stream], tenant: str | None,
             stop: threading.Event | None = None) -> bool:
        from clymene.kafka.producer import PublishError

        messages = stream_messages(streams, tenant)
        entries = sum(len(e) for _, e in streams)
        backoff = self.min_backoff
        while True:
            try:
                self.publisher.publish(messages, time.monotonic() + self.timeout, self.topic)
                self.sent_entries += entries
                return True
            except PublishError as exc:
                if not exc.retryable:
                    log.error("kafka refused %d log entries: %s", entries, exc)
                    self.dropped_entries += entries
                    return False
                self.retries += 1
                log.warning("publishing logs failed (%s); retrying in %.1fs", exc, backoff)
            if stop is not None and stop.wait(backoff):
                raise PushAborted("stopped while retrying")
            if stop is None:
                time.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    def close(self) -> None:
        self.publisher.close()


class MultiOutput:
    """Several outputs; a batch counts as delivered once every output took it."""

    name = "multi"

    def __init__(self, outputs: list[Any]) -> None:
        self.outputs = outputs

    def push(self, streams: list[loki_pb.Stream], tenant: str | None,
             stop: threading.Event | None = None) -> bool:
        ok = True
        for out in self.outputs:
            ok = out.push(streams, tenant, stop) and ok
        return ok

    def close(self) -> None:
        for out in self.outputs:
            out.close()

    def __getattr__(self, name: str) -> int:
        if name in ("sent_entries", "dropped_entries", "retries"):
            return sum(getattr(o, name, 0) for o in self.outputs)
        raise AttributeError(name)


class LogIngester:
    """Kafka `clymene-logs` -> Loki, committing only after Loki accepted."""

    def __init__(self, consumer_conf: dict[str, object], topic: str, loki: Any,
                 dlq: Any | None = None, max_messages: int = 500) -> None:
        self.conf = dict(consumer_conf)
        self.topic = topic
        self.loki = loki
        self.dlq = dlq
        self.max_messages = max_messages
        self.delivered = 0
        self.dead_lettered = 0

    def run(self, stop: threading.Event) -> None:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(self.conf)
        consumer.subscribe([self.topic])
        try:
            while not stop.is_set():
                messages = consumer.consume(self.max_messages, 0.2)
                good = [m for m in messages if m.error() is None]
                if not good:
                    continue
                try:
                    self._deliver(good, stop)
                except PushAborted:
                    return  # nothing committed: another ingester (or we) redo it
                last: dict[tuple[str, int], int] = {}
                for m in good:
                    last[(m.topic(), m.partition())] = m.offset()
                consumer.commit(offsets=[TopicPartition(t, p, o + 1)
                                         for (t, p), o in last.items()], asynchronous=False)
        finally:
            consumer.close()

    def _deliver(self, messages: list[Any], stop: threading.Event) -> None:
        by_tenant: dict[str, list[tuple[Any, loki_pb.Stream]]] = {}
        for m in messages:
            tenant = ""
            for name, value in m.headers() or []:
                if name == TENANT_HEADER and value:
                    tenant = value.decode("utf-8", "replace")
            try:
                streams = loki_pb.decode_push_request(loki_pb.decompress(m.value()))
            except Exception as exc:  # noqa: BLE001 (any undecodable message is poison)
                self._dead_letter(m, f"undecodable: {exc}")
                continue
            by_tenant.setdefault(tenant, []).extend((m, s) for s in streams)
        for tenant, items in by_tenant.items():
            merged: dict[str, list[tuple[int, str]]] = {}
            for _, (labels, entries) in items:
                merged.setdefault(labels, []).extend(entries)
            if self.loki.push(list(merged.items()), tenant or None, stop):
                self.delivered += sum(len(e) for e in merged.values())
            else:
                for m in {id(m): m for m, _ in items}.values():
                    self._dead_letter(m, "refused by loki")

    def _dead_letter(self, m: Any, reason: str) -> None:
        self.dead_lettered += 1
        log.error("log message %s/%d@%d to the dead-letter topic: %s", m.topic(),
                  m.partition(), m.offset(), reason)
        if self.dlq is not None:
            headers = list(m.headers() or []) + [("clymene-dlq-reason", reason.encode())]
            self.dlq.publish([(m.key(), m.value(), headers)], time.monotonic() + 30,
                             f"{self.topic}-dlq")


def run_log_ingester(settings: Any, stop: threading.Event) -> int:
    """The log ingester process: `--kafka.consumer.promtail.topic` -> Loki
    (`--loki.client.*`), consumer group `<--kafka.consumer.group-id>-loki`."""
    from clymene.kafka.client import consumer_config, producer_config
    from clymene.kafka.producer import Publisher
    from clymene.logs.loki import LokiClient

    if not settings.loki_client_url:
        log.error("refusing to start: --loki.client.url is required")
        return 1
    loki = LokiClient(settings.loki_client_url, timeout=settings.loki_client_timeout,
                      tenant=settings.loki_client_tenant_id,
                      encoding=settings.loki_client_encoding,
                      min_backoff=settings.loki_client_min_backoff,
                      max_backoff=settings.loki_client_max_backoff)
    topic = settings.kafka_consumer_promtail_topic
    conf = consumer_config(settings, f"{settings.kafka_consumer_group_id}-loki")
    dlq_settings_conf = producer_config(settings)
    dlq_settings_conf["bootstrap.servers"] = conf["bootstrap.servers"]
    dlq = Publisher(dlq_settings_conf, f"{topic}-dlq", partitions=1, name="kafka-logs-dlq")
    try:
        LogIngester(conf, topic, loki, dlq).run(stop)
    finally:
        dlq.close()
        loki.close()
    return 0
