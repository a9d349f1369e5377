"""Logs through Kafka: the agent's (and the gateway's) `kafka` output.

Topic `clymene-logs` (`--kafka.producer.promtail.topic`). One message per stream of a
batch, keyed by tenant and stream labels, so one partition keeps each stream in order;
the value is the snappy-compressed `logproto.PushRequest` holding that one stream (the
Loki push body, so it can be forwarded as it is) and the tenant travels in the
`X-Scope-OrgID` header. `clymene promtail-ingester` (clymene.logs.ingester) drains the
topic into Loki and Elasticsearch.
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
