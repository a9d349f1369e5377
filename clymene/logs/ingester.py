"""`clymene promtail-ingester`: drain `clymene-logs` into Loki and Elasticsearch.

The metrics ingester's machinery (clymene.kafka.consumer.BackendConsumer) with log
messages: one consumer group per backend (`<--kafka.consumer.group-id>-<backend>`,
e.g. `clymene-loki`), each in its own thread, so a failing backend never holds back the
other; offsets committed only after the backend accepted every message up to them;
transient failures (429, 5xx, network) retried for as long as it takes while the data
waits in Kafka; a message that cannot be decoded, or that the backend refuses for good
(a 4xx other than 429), goes to `<topic>.dlq` with headers saying why.

Backends: `loki` and `elasticsearch` from STORAGE_TYPE (neither named: `loki`). A
message is what the agent and the gateway publish (clymene.logs.kafka): a
snappy-compressed `logproto.PushRequest`, the tenant in the `X-Scope-OrgID` header.
`/metrics`, `/-/healthy`, `/-/ready` on `--ingester.listen-address`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from clymene import stats
from clymene.kafka.client import consumer_config
from clymene.kafka.consumer import BackendConsumer
from clymene.kafka.ingester import Ingester, dlq_publisher, serve_admin
from clymene.kafka.metrics import Exporter
from clymene.logs import loki_pb
from clymene.logs.kafka import TENANT_HEADER
from clymene.logs.loki import PushAborted
from clymene.storage import WriteError, storage_names

log = logging.getLogger(__name__)

LOG_BACKENDS = ("loki", "elasticsearch")

# One decoded message: [(tenant, labels, entries), ...]
Item = tuple[str, str, list[tuple[int, str]]]


def decode_message(value: bytes, headers: list[tuple[str, bytes]] | None) -> list[Item]:
    """The streams of a `clymene-logs` message; ValueError when it cannot be decoded."""
    tenant = ""
    for name, raw in headers or []:
        if name == TENANT_HEADER and raw:
            tenant = raw.decode("utf-8", "replace")
    try:
        streams = loki_pb.decode_push_request(loki_pb.decompress(value))
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 (cramjam's own error type)
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    return [(tenant, labels, entries) for labels, entries in streams]


class LogStorage:
    """A log output (LokiClient, ElasticsearchLogOutput) as a Storage of `Item`s: the
    items of a batch are merged per tenant and stream, in order, one push per tenant."""

    def __init__(self, output: Any, stop: threading.Event) -> None:
        self.output = output
        self.name = output.name
        self.stop = stop
        self.entries_written = 0

    def write(self, items: list[Item], deadline: float) -> None:
        by_tenant: dict[str, dict[str, list[tuple[int, str]]]] = {}
        for tenant, labels, entries in items:
            by_tenant.setdefault(tenant, {}).setdefault(labels, []).extend(entries)
        for tenant, streams in by_tenant.items():
            try:
                # The output retries 429/5xx itself until accepted or stopped.
                ok = self.output.push(list(streams.items()), tenant or None, self.stop)
            except PushAborted as exc:
                raise WriteError(str(exc), retryable=True) from None
            if not ok:
                raise WriteError(f"{self.name} refused the entries", retryable=False)
            self.entries_written += sum(len(e) for e in streams.values())

    def close(self) -> None:
        self.output.close()


class LogBackendConsumer(BackendConsumer):
    """BackendConsumer decoding log messages instead of metric batches."""

    def decode(self, message: Any) -> list[Item]:
        return decode_message(message.value() or b"", message.headers())

    def count_written(self, written: list[list[Item]]) -> None:
        n = sum(len(entries) for items in written for _, _, entries in items)
        stats.inc("clymene_ingester_log_entries_written_total", n, backend=self.backend)


def backend_kinds(settings: Any) -> list[str]:
    return [kind for kind in storage_names(settings) if kind in LOG_BACKENDS] or ["loki"]


def open_backends(settings: Any) -> list[Any]:
    """The log outputs of STORAGE_TYPE (loki needs --loki.client.url)."""
    outputs: list[Any] = []
    try:
        for kind in backend_kinds(settings):
            if kind == "loki":
                from clymene.logs import loki

                if not settings.loki_client_url:
                    raise ValueError("the loki backend needs --loki.client.url")
                # max_retries=0: a batch is retried until accepted (it waits in Kafka)
                outputs.append(loki.from_settings(settings, max_retries=0,
                                                  max_backoff=settings.ingester_max_backoff))
            else:
                from clymene.logs import elasticsearch

                out = elasticsearch.from_settings(settings)
                out.max_backoff = settings.ingester_max_backoff
                outputs.append(out)
    except BaseException:
        for out in outputs:
            out.close()
        raise
    return outputs


class LogIngesterProcess(Ingester):
    """The metrics ingester (its start, ready and close) with a LogBackendConsumer per
    log output, on `--kafka.consumer.promtail.topic`."""

    def __init__(self, settings: Any, outputs: list[Any],
                 redis_client: object | None = None) -> None:
        # Not Ingester.__init__: that one checks and consumes the metrics topic.
        self.settings = settings
        self.topic = settings.kafka_consumer_promtail_topic
        self.stop = threading.Event()
        self.storages = [LogStorage(o, self.stop) for o in outputs]
        self.dlq = dlq_publisher(settings)
        self.consumers = [
            LogBackendConsumer(
                storage, consumer_config(settings,
                                         f"{settings.kafka_consumer_group_id}-{storage.name}"),
                self.topic, "protobuf", self.dlq, self.stop,
                batch_messages=settings.ingester_batch_messages,
                write_timeout=settings.ingester_write_timeout,
                max_backoff=settings.ingester_max_backoff,
                partitions=settings.kafka_consumer_partitions)
            for storage in self.storages
        ]
        self.exporter = Exporter(redis_client)
        self.exporter.add_gauges(self._gauges)
        self._threads: list[threading.Thread] = []

    def _gauges(self) -> list[tuple[str, str, float]]:
        out = super()._gauges()
        for s in self.storages:
            # the outputs retry 429/5xx/network failures themselves
            out.append(("clymene_ingester_log_push_retries",
                        f'clymene_ingester_log_push_retries{{backend="{s.name}"}}',
                        float(getattr(s.output, "retries", 0))))
        return out


def run(settings: Any, stop: threading.Event, redis_client: object | None = None) -> int:
    """`clymene promtail-ingester` until `stop` is set."""
    outputs = open_backends(settings)
    ingester = LogIngesterProcess(settings, outputs, redis_client)
    server = None
    if settings.ingester_listen_address:
        server = serve_admin(settings.ingester_listen_address, ingester.exporter,
                             ingester.ready)
    ingester.start()
    log.info("promtail-ingester: %s -> %s", ingester.topic,
             ", ".join(s.name for s in ingester.storages))
    stop.wait()
    log.info("promtail-ingester stopping")
    ingester.close()
    if server is not None:
        server.shutdown()
        server.server_close()
    return 0
