"""Elasticsearch storage: one document per sample, daily indices, bulk writes.

Supported servers: Elasticsearch 7.x (tested against 7.9.2 OSS) through the official
`elasticsearch` client 7.13 (the last line without the 8.x product check, which refuses
older servers and OpenSearch). 6.x may work (legacy templates, `_doc` type) but is not
tested; 8.x servers need compatibility headers that this client line does not send.

Documents go to `<prefix>-<index name>-<date>`: `--es.index-prefix` (a `-` is added
when it has none), `--es.clymene-agent.index.name` (default `clymene-metrics`) and the
UTC day of the sample's timestamp in `--es.index-date-pattern` (YYYY, MM and DD stand
for the year, month and day; default `YYYY.MM.DD`; empty: no date suffix). A document:

    {"@timestamp": 1700000000000, "name": "up", "labels": {"job": "node", ...}, "value": 1.0}

`@timestamp` is epoch milliseconds. Its `_id` is a hash of the labels plus the
timestamp, so a batch written twice (a retry after a timeout, a Kafka replay) is stored
once. NaN and ±Inf have no JSON number: such a document has no `value` and a keyword
`special` of "NaN", "+Inf" or "-Inf" (counted as
`clymene_storage_special_values_total{storage,kind}`); staleness markers are not
documents (dropped, counted with reason `stale`).

An index template (legacy `_template`, for 6.x/7.x alike) is installed before the first
write (`--es.create-index-templates`): every label is a `keyword`, `value` a `double`,
`@timestamp` a `date`, `name` and `special` keywords, and
`index.mapping.total_fields.limit` (`--es.total-fields-limit`): past it, documents
bringing new label names are rejected (counted with the reason Elasticsearch gives)
while the index keeps taking the others, so a label explosion cannot break it.

Bulk requests hold at most `--es.bulk.actions` documents and `--es.bulk.size` bytes;
`--es.bulk.workers` of them are sent at once. Items answered 429 or 5xx are retried
with backoff until the deadline; other failed items are rejected, counted in
`clymene_storage_samples_dropped_total{reason="rejected"}` and reported (count and
first reason) in the WriteError. 401/403 name the storage and the URLs, never the
credential.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from clymene import stats
from clymene.storage import Labels, Sample, WriteError
from clymene.storage.prometheus import MAX_BACKOFF, MIN_BACKOFF, TLSOptions, redact_url

_STALE_BITS = 0x7FF0000000000002
_unpack_bits = struct.Struct("<Q").unpack
_pack_double = struct.Struct("<d").pack
_CACHE_MAX = 100_000
_DAY_MS = 86_400_000
_FILTER = "errors,items.*.status,items.*.error.type,items.*.error.reason"


def import_client() -> Any:
    """The `elasticsearch` module. Its 7.13 serializer touches `numpy.float_`, which
    numpy 2 removed: when such a numpy is installed it is hidden during the import
    (the client then simply does not know numpy types, which clymene never sends)."""
    if "elasticsearch" in sys.modules:
        return sys.modules["elasticsearch"]
    hidden: dict[str, Any] = {}
    try:
        import numpy

        if not hasattr(numpy, "float_"):
            for name in ("numpy", "pandas"):
                hidden[name] = sys.modules.get(name)
                sys.modules[name] = None  # type: ignore[assignment]
    except ImportError:
        pass
    try:
        import elasticsearch
    finally:
        for name, module in hidden.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return elasticsearch


def _special(value: float) -> str:
    if value != value:
        return "stale" if _unpack_bits(_pack_double(value))[0] == _STALE_BITS else "NaN"
    return "+Inf" if value > 0 else "-Inf"


class ElasticsearchStorage:
    """Writes batches to Elasticsearch as one document per sample."""

    def __init__(
        self,
        urls: list[str],
        username: str = "",
        password: str = "",
        token: str = "",
        timeout: float = 30.0,
        bulk_actions: int = 1000,
        bulk_size: int = 5_000_000,
        bulk_workers: int = 1,
        index_prefix: str = "",
        index_name: str = "clymene-metrics",
        date_pattern: str = "YYYY.MM.DD",
        num_shards: int = 1,
        num_replicas: int = 1,
        total_fields_limit: int = 1000,
        create_template: bool = True,
        tls: TLSOptions | None = None,
        name: str = "elasticsearch",
    ) -> None:
        if not urls:
            raise ValueError("storage type 'elasticsearch' needs --es.server-urls")
        if bulk_actions < 1 or bulk_size < 1 or bulk_workers < 1:
            raise ValueError("--es.bulk.actions, --es.bulk.size and --es.bulk.workers must "
                             "be at least 1")
        if timeout <= 0:
            raise ValueError(f"--es.timeout must be positive, got {timeout}")
        es = import_client()
        self._es = es
        self.name = name
        self.timeout = float(timeout)
        self.bulk_actions = int(bulk_actions)
        self.bulk_size = int(bulk_size)
        self.bulk_workers = int(bulk_workers)
        prefix = index_prefix
        if prefix and not prefix.endswith("-"):
            prefix += "-"
        self.base = f"{prefix}{index_name}"
        if (self.base != self.base.lower() or not self.base
                or any(c in self.base for c in ' "*\\<|,>/?#:')):
            raise ValueError(f"invalid Elasticsearch index name {self.base!r} (from "
                             "--es.index-prefix and --es.clymene-agent.index.name): lower "
                             "case, no spaces or any of \" * \\ < | , > / ? # :")
        self.date_pattern = date_pattern
        self._strftime = (date_pattern.replace("%", "%%").replace("YYYY", "%Y")
                          .replace("MM", "%m").replace("DD", "%d"))
        self.template_name = self.base
        self.num_shards = num_shards
        self.num_replicas = num_replicas
        self.total_fields_limit = total_fields_limit
        self._template_pending = create_template
        self.safe_url = ",".join(redact_url(u) for u in urls)
        self._secrets = [s for s in (password, token) if s]
        kwargs: dict[str, Any] = {"timeout": self.timeout, "max_retries": 0,
                                  "retry_on_timeout": False}
        if username:
            kwargs["http_auth"] = (username, password)
        if token:
            kwargs["headers"] = {"Authorization": f"Bearer {token}"}
        if tls is not None and any(u.startswith("https:") for u in urls):
            kwargs["verify_certs"] = not tls.insecure_skip_verify
            if tls.insecure_skip_verify:
                kwargs["ssl_show_warn"] = False
            if tls.ca_file:
                kwargs["ca_certs"] = tls.ca_file
            if tls.cert_file:
                kwargs["client_cert"] = tls.cert_file
                kwargs["client_key"] = tls.key_file or None
            if tls.server_name:
                kwargs["ssl_assert_hostname"] = tls.server_name
        self.client = es.Elasticsearch(urls, **kwargs)
        self._lock = threading.Lock()
        self._heads: dict[Labels, tuple[str, str]] = {}  # labels -> (id prefix, doc head)
        self._days: dict[int, str] = {}
        self._pool = (ThreadPoolExecutor(self.bulk_workers, thread_name_prefix="es-bulk")
                      if self.bulk_workers > 1 else None)

    # -- naming and encoding

    def index_for(self, ts: int) -> str:
        day = ts // _DAY_MS
        index = self._days.get(day)
        if index is None:
            if self.date_pattern:
                stamp = time.strftime(self._strftime, time.gmtime(day * 86_400))
                index = f"{self.base}-{stamp}"
            else:
                index = self.base
            if len(self._days) > 1000:
                self._days.clear()
            self._days[day] = index
        return index

    def template(self) -> dict:
        patterns = [f"{self.base}-*"] if self.date_pattern else [self.base]
        return {
            "index_patterns": patterns,
            "order": 0,
            "settings": {
                "number_of_shards": self.num_shards,
                "number_of_replicas": self.num_replicas,
                "index.mapping.total_fields.limit": self.total_fields_limit,
            },
            "mappings": {
                "dynamic_templates": [
                    {"labels": {"path_match": "labels.*", "mapping": {"type": "keyword"}}},
                ],
                "properties": {
                    "@timestamp": {"type": "date", "format": "epoch_millis"},
                    "name": {"type": "keyword"},
                    "value": {"type": "double"},
                    "special": {"type": "keyword"},
                    "labels": {"type": "object"},
                },
            },
        }

    def _head(self, labels: Labels) -> tuple[str, str]:
        name = ""
        rest = {}
        for key, value in labels:
            if key == "__name__":
                name = value
            else:
                rest[key] = value
        text = json.dumps(labels, ensure_ascii=False, separators=(",", ":"))
        ident = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
        head = (f'"name":{json.dumps(name, ensure_ascii=False)},"labels":'
                f'{json.dumps(rest, ensure_ascii=False, separators=(",", ":"))}')
        out = (ident, head)
        if len(self._heads) >= _CACHE_MAX:
            self._heads.clear()
        self._heads[labels] = out
        return out

    def encode(self, batch: list[Sample]) -> tuple[list[bytes], dict[str, int]]:
        """One action+document pair (bytes, two lines) per storable sample, and counts
        of special values by kind ("stale" ones are left out)."""
        heads = self._heads
        index_for = self.index_for
        items: list[bytes] = []
        kinds: dict[str, int] = {}
        for labels, value, ts in batch:
            ident, head = heads.get(labels) or self._head(labels)
            if value - value != 0:
                kind = _special(value)
                kinds[kind] = kinds.get(kind, 0) + 1
                if kind == "stale":
                    continue
                field = f'"special":"{kind}"'
            else:
                field = f'"value":{value!r}'
            items.append(
                f'{{"index":{{"_index":"{index_for(ts)}","_id":"{ident}-{ts}"}}}}\n'
                f'{{"@timestamp":{ts},{head},{field}}}\n'.encode())
        return items, kinds

    # -- writing

    def _error(self, exc: Exception) -> WriteError:
        status = getattr(exc, "status_code", None)
        text = str(exc)
        for secret in self._secrets:
            text = text.replace(secret, "<secret>")
        if status in (401, 403):
            what = "authentication refused" if status == 401 else "access forbidden"
            return WriteError(f"{self.name}: {self.safe_url} refused the write ({what}, HTTP "
                              f"{status}): {text[:300]}", retryable=False)
        if isinstance(status, int) and status < 500 and status != 429:
            return WriteError(f"{self.name}: {self.safe_url} rejected the request (HTTP "
                              f"{status}): {text[:300]}", retryable=False)
        return WriteError(f"{self.name}: {self.safe_url}: {type(exc).__name__}: {text[:300]}",
                          retryable=True)

    def _call(self, fn: Any, deadline: float, **kwargs: Any) -> Any:
        """Call the client with retries of transient errors until the deadline."""
        es = self._es
        backoff = MIN_BACKOFF
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WriteError(f"{self.name}: deadline passed before {self.safe_url} "
                                 f"could be written after {attempt} attempts", retryable=True)
            if attempt:
                stats.inc("clymene_storage_retries_total", storage=self.name)
            attempt += 1
            try:
                result = fn(request_timeout=min(self.timeout, remaining), **kwargs)
                stats.inc("clymene_storage_requests_total", storage=self.name, code="200")
                return result
            except es.TransportError as exc:
                code = exc.status_code if isinstance(exc.status_code, int) else "error"
                stats.inc("clymene_storage_requests_total", storage=self.name, code=str(code))
                error = self._error(exc)
                if not error.retryable:
                    raise error from None
            if time.monotonic() + backoff >= deadline:
                raise WriteError(f"{self.name}: gave up at the deadline after {attempt} "
                                 f"attempts: {error}", retryable=True)
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def install_template(self, deadline: float) -> None:
        self._call(self.client.indices.put_template, deadline, name=self.template_name,
                   body=self.template())
        self._template_pending = False

    def write(self, batch: list[Sample], deadline: float) -> None:
        items, kinds = self.encode(batch)
        for kind, count in kinds.items():
            if kind == "stale":
                stats.inc("clymene_storage_samples_dropped_total", count, storage=self.name,
                          reason="stale")
            else:
                stats.inc("clymene_storage_special_values_total", count, storage=self.name,
                          kind=kind)
        if not items:
            return
        if self._template_pending:
            with self._lock:
                if self._template_pending:
                    try:
                        self.install_template(deadline)
                    except WriteError:
                        stats.inc("clymene_storage_samples_dropped_total", len(items),
                                  storage=self.name, reason="deadline")
                        raise
        chunks = self._chunks(items)
        if self._pool is None or len(chunks) == 1:
            results = [self._send(chunk, deadline) for chunk in chunks]
        else:
            results = list(self._pool.map(lambda c: self._send(c, deadline), chunks))
        rejected = sum(r[0] for r in results)
        errors = [r[1] for r in results if r[1] is not None]
        written = len(items) - rejected - sum(r[2] for r in results)
        stats.inc("clymene_storage_samples_written_total", written, storage=self.name)
        if errors:
            first = errors[0]
            raise WriteError(f"{first} ({rejected} of {len(items)} documents not stored)",
                             retryable=first.retryable)

    def _chunks(self, items: list[bytes]) -> list[list[bytes]]:
        chunks: list[list[bytes]] = []
        current: list[bytes] = []
        size = 0
        for item in items:
            if current and (len(current) >= self.bulk_actions or size + len(item) > self.bulk_size):
                chunks.append(current)
                current, size = [], 0
            current.append(item)
            size += len(item)
        if current:
            chunks.append(current)
        return chunks

    def _send(self, chunk: list[bytes], deadline: float) -> tuple[int, WriteError | None, int]:
        """Send one bulk request, retrying 429/5xx items; returns (rejected items, the
        error to report or None, items given up at the deadline)."""
        pending = chunk
        rejected = 0
        first_reason = ""
        backoff = MIN_BACKOFF
        while True:
            body = b"".join(pending)
            try:
                result = self._call(self.client.bulk, deadline, body=body, filter_path=_FILTER)
            except WriteError as exc:
                reason = "deadline" if exc.retryable else "rejected"
                stats.inc("clymene_storage_samples_dropped_total", len(pending),
                          storage=self.name, reason=reason)
                return (rejected + len(pending), exc, 0)
            stats.inc("clymene_storage_bytes_sent_total", len(body), storage=self.name)
            if not result.get("errors"):
                break
            retry: list[bytes] = []
            for item, answer in zip(pending, result.get("items", []), strict=False):
                outcome = next(iter(answer.values()))
                status = outcome.get("status", 0)
                if 200 <= status < 300:
                    continue
                if status == 429 or status >= 500:
                    retry.append(item)
                    continue
                rejected += 1
                error = outcome.get("error") or {}
                reason = error.get("type", f"http_{status}")
                stats.inc("clymene_storage_samples_dropped_total", storage=self.name,
                          reason="rejected")
                stats.inc("clymene_storage_rejected_documents_total", storage=self.name,
                          error=reason)
                if not first_reason:
                    first_reason = f"{reason}: {error.get('reason', '')}"[:300]
            if not retry:
                break
            if time.monotonic() + backoff >= deadline:
                stats.inc("clymene_storage_samples_dropped_total", len(retry),
                          storage=self.name, reason="deadline")
                return (rejected + len(retry), WriteError(
                    f"{self.name}: {len(retry)} documents still refused (429/5xx) by "
                    f"{self.safe_url} at the deadline", retryable=True), 0)
            stats.inc("clymene_storage_retries_total", storage=self.name)
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
            pending = retry
        if rejected:
            return (rejected, WriteError(f"{self.name}: {self.safe_url} rejected {rejected} "
                                         f"documents, first: {first_reason}", retryable=False), 0)
        return (0, None, 0)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        try:
            self.client.transport.close()
        except Exception:  # closing a pool that never connected may fail; nothing to do
            pass
