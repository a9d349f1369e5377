"""The gateway's log side: Loki push requests (`/loki/api/v1/push`, `/api/logs`) to
the log outputs of STORAGE_TYPE.

    kafka          topic `--kafka.producer.promtail.topic` (default `clymene-logs`), one
                   message per stream keyed by tenant and stream (clymene.logs.kafka), so
                   a stream stays in one partition in order
    loki           `--loki.client.url`
    elasticsearch  `<--es.index-prefix>-clymene-logs-<date>`, one document per line

Without any of them, `--loki.client.url` alone is enough (then Loki). The answer is 204
only once every output has the request's entries (Kafka acknowledged them, Loki or
Elasticsearch accepted them); 503 when that did not happen within
`--gateway.write-timeout` (the outputs retry 429/5xx until then), so the sender retries;
400 when an output refused the entries for good.
"""

from __future__ import annotations

import calendar
import json
import re
import threading
import time
import zlib
from typing import Any

from clymene import stats
from clymene.logs import loki_pb
from clymene.logs.loki import PushAborted
from clymene.logs.push import PushDecodeError, decode_push
from clymene.storage import storage_names
from clymene.storage.remote_write_pb import snappy_length

LOG_KINDS = ("kafka", "loki", "elasticsearch")


def _inflate(body: bytes, wbits: int, max_size: int) -> bytes:
    """Decompress at most max_size bytes (a small gzip bomb stays a small problem)."""
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, max_size + 1)
    except zlib.error as exc:
        raise PushDecodeError(400, f"cannot decompress the body: {exc}") from None
    if len(out) > max_size or d.unconsumed_tail:
        raise PushDecodeError(413, f"uncompressed body is over the limit of {max_size} bytes")
    if not d.eof:
        raise PushDecodeError(400, "cannot decompress the body: truncated stream")
    return out


def _uncompressed(body: bytes, content_encoding: str, max_size: int) -> bytes:
    encoding = (content_encoding or "").strip().lower()
    if encoding == "gzip":
        body = _inflate(body, 16 + zlib.MAX_WBITS, max_size)
    elif encoding == "deflate":
        body = _inflate(body, zlib.MAX_WBITS, max_size)
    elif encoding not in ("", "identity", "snappy"):
        raise PushDecodeError(415, f"unsupported Content-Encoding {encoding!r}")
    return body


def decode_logs(body: bytes, content_type: str, content_encoding: str,
                max_size: int) -> list[loki_pb.Stream]:
    """The streams of a push body; PushDecodeError with the HTTP status (400 bad body,
    413 over max_size once uncompressed, 415 unknown Content-Type or -Encoding)."""
    body = _uncompressed(body, content_encoding, max_size)
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in ("application/x-protobuf", ""):
        try:
            size = snappy_length(body)
        except ValueError as exc:
            raise PushDecodeError(400, str(exc)) from None
        if size > max_size:
            raise PushDecodeError(413, f"uncompressed body of {size} bytes is over the "
                                       f"limit of {max_size}")
    return decode_push(body, content_type, "", max_size)


_GO_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
                      r"(Z|[+-]\d\d:\d\d)\Z")


def _go_time_ns(text: object) -> int:
    """Unix ns of a Go time.Time in JSON (RFC 3339 with up to 9 fractional digits)."""
    m = _GO_TIME.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"timestamp {text!r} is not RFC 3339")
    secs = calendar.timegm(tuple(int(g) for g in m.groups()[:6]))
    zone = m.group(8)
    if zone != "Z":
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        secs -= offset if zone[0] == "+" else -offset
    return secs * 1_000_000_000 + int((m.group(7) or "").ljust(9, "0"))


def decode_producer_batch(obj: dict) -> tuple[list[loki_pb.Stream], str]:
    """The original Clymene promtail's `gateway` client body (`client.ProducerBatch`):
    {"batch": {"streams": {key: {"labels": "{...}", "entries": [{"ts": RFC 3339,
    "line": ...}]}}, ...}, "tenantID": "..."} -> (streams, tenant)."""
    batch = obj.get("batch")
    if not isinstance(batch, dict) or not isinstance(batch.get("streams") or {}, dict):
        raise ValueError('"batch.streams" is not an object')
    streams: list[loki_pb.Stream] = []
    for key, stream in (batch.get("streams") or {}).items():
        where = f"batch.streams[{key!r}]"
        if not isinstance(stream, dict):
            raise ValueError(f"{where} is not an object")
        labels = stream.get("labels") or key
        loki_pb.parse_labels(labels)  # ValueError naming what is wrong
        entries = []
        for i, e in enumerate(stream.get("entries") or []):
            if not isinstance(e, dict) or not isinstance(e.get("line", ""), str):
                raise ValueError(f"{where}.entries[{i}] is not an entry")
            try:
                entries.append((_go_time_ns(e.get("ts")), e.get("line", "")))
            except ValueError as exc:
                raise ValueError(f"{where}.entries[{i}]: {exc}") from None
        streams.append((labels, entries))
    tenant = obj.get("tenantID") or ""
    return streams, tenant if isinstance(tenant, str) else ""


def decode_api_logs(body: bytes, content_type: str, content_encoding: str,
                    max_size: int) -> tuple[list[loki_pb.Stream], str]:
    """`POST /api/logs`: the original's ProducerBatch JSON, or any Loki push body;
    (streams, tenant from the body or "")."""
    raw = _uncompressed(body, content_encoding, max_size)
    if raw[:1] == b"{" and len(raw) <= max_size:
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and "batch" in obj:
            try:
                return decode_producer_batch(obj)
            except ValueError as exc:
                raise PushDecodeError(400, f"cannot decode the batch: {exc}") from None
    return decode_logs(raw, content_type, "", max_size), ""


class KafkaLogs:
    """Publishing a request's streams to the log topic within the request's deadline."""

    name = "kafka"

    def __init__(self, publisher: Any, topic: str) -> None:
        self.publisher = publisher
        self.topic = topic

    def push_until(self, streams: list[loki_pb.Stream], tenant: str | None,
                   deadline: float) -> bool | None:
        from clymene.kafka.producer import PublishError
        from clymene.logs.kafka import stream_messages

        try:
            self.publisher.publish(stream_messages(streams, tenant), deadline, self.topic)
        except PublishError as exc:
            return None if exc.retryable else False
        return True

    def close(self) -> None:
        self.publisher.close()


def push_until(output: Any, streams: list[loki_pb.Stream], tenant: str | None,
               deadline: float) -> bool | None:
    """output.push with its retries cut at `deadline`: True accepted, False refused for
    good, None not done by the deadline."""
    if hasattr(output, "push_until"):
        return output.push_until(streams, tenant, deadline)
    stop = threading.Event()
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), stop.set)
    timer.daemon = True
    timer.start()
    try:
        return output.push(streams, tenant, stop)
    except PushAborted:
        return None
    finally:
        timer.cancel()


class LogSink:
    """Every log output of the gateway; `write` answers like Gateway.write."""

    def __init__(self, outputs: list[Any], write_timeout: float = 10.0) -> None:
        self.outputs = outputs
        self.write_timeout = write_timeout

    def write(self, streams: list[loki_pb.Stream], tenant: str | None) -> tuple[int, str]:
        entries = sum(len(e) for _, e in streams)
        if not entries:
            return 204, ""
        deadline = time.monotonic() + self.write_timeout
        for out in self.outputs:
            result = push_until(out, streams, tenant, deadline)
            if result is not True:
                stats.inc("clymene_gateway_log_entries_failed_total", entries,
                          output=out.name)
                if result is None:
                    return 503, f"{out.name}: not accepted within {self.write_timeout:g}s"
                return 400, f"{out.name}: refused the entries"
        stats.inc("clymene_gateway_log_entries_received_total", entries)
        return 204, ""

    def close(self) -> None:
        for out in self.outputs:
            out.close()


def log_kinds(settings: Any) -> list[str]:
    kinds = [kind for kind in storage_names(settings) if kind in LOG_KINDS]
    if not kinds and settings.loki_client_url:
        kinds.append("loki")
    return kinds


def open_outputs(settings: Any) -> list[Any]:
    """The log outputs of STORAGE_TYPE (see the module doc); none is fine (then the log
    paths answer 404)."""
    outputs: list[Any] = []
    try:
        for kind in log_kinds(settings):
            if kind == "kafka":
                from clymene.kafka.client import producer_config
                from clymene.kafka.producer import Publisher

                topic = settings.kafka_producer_promtail_topic
                publisher = Publisher(producer_config(settings), topic,
                                      partitions=settings.kafka_consumer_partitions,
                                      name="kafka-logs")
                outputs.append(KafkaLogs(publisher, topic))
            elif kind == "loki":
                from clymene.logs import loki

                if not settings.loki_client_url:
                    raise ValueError("STORAGE_TYPE=loki needs --loki.client.url")
                outputs.append(loki.from_settings(settings, min_backoff=0.1, max_backoff=1.0,
                                                  max_retries=0, pool_size=32))
            else:
                from clymene.logs import elasticsearch

                out = elasticsearch.from_settings(settings)
                out.min_backoff, out.max_backoff = 0.1, 1.0
                outputs.append(out)
    except BaseException:
        for out in outputs:
            out.close()
        raise
    return outputs


def metrics_settings(settings: Any) -> Any:
    """The settings for the metrics storages: STORAGE_TYPE without `loki` (not a
    metrics backend)."""
    import dataclasses

    names = [n for n in settings.storage_type or [] if n.strip().lower() != "loki"]
    if names == list(settings.storage_type or []):
        return settings
    return dataclasses.replace(settings, storage_type=names)
