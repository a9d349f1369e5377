"""Loki push API client: one batch per request, retried with backoff on 429/5xx.

`push(streams, tenant, stop)` returns True when Loki accepted the batch, False when it
refused it for good (a 4xx other than 429: retrying cannot help, promtail drops it too).
Network errors, 429 and 5xx are retried with exponential backoff (min..max) until
accepted, `max_retries` is reached (0: no limit), or `stop` is set (then it raises
`PushAborted`, so the caller keeps its positions where they were).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import urllib3

from clymene.logs import loki_pb

log = logging.getLogger(__name__)


class PushAborted(Exception):
    """Stopping while a batch was still being retried: it was not delivered."""


@dataclass
class LokiClient:
    url: str
    timeout: float = 10.0
    tenant: str = ""
    encoding: str = "protobuf"
    min_backoff: float = 0.5
    max_backoff: float = 300.0
    max_retries: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    name: str = "loki"
    # connections kept to Loki (the gateway pushes from many request threads at once)
    pool_size: int = 2

    def __post_init__(self) -> None:
        if self.encoding not in ("protobuf", "json"):
            raise ValueError(f"--loki.client.encoding: {self.encoding!r} (protobuf or json)")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"--loki.client.url: {self.url!r} is not an http(s) URL")
        self._pool = urllib3.PoolManager(maxsize=self.pool_size, retries=False,
                                         timeout=urllib3.Timeout(total=self.timeout))
        self.sent_batches = 0
        self.sent_entries = 0
        self.dropped_entries = 0
        self.retries = 0

    def encode(self, streams: list[loki_pb.Stream]) -> tuple[bytes, dict[str, str]]:
        if self.encoding == "json":
            return loki_pb.encode_push_json(streams), {"Content-Type": "application/json"}
        body = loki_pb.compress(loki_pb.encode_push_request(streams))
        return body, {"Content-Type": "application/x-protobuf"}

    def push(self, streams: list[loki_pb.Stream], tenant: str | None,
             stop: threading.Event | None = None) -> bool:
        body, headers = self.encode(streams)
        headers = {**self.headers, **headers, "User-Agent": "clymene-promtail"}
        tenant = tenant or self.tenant
        if tenant:
            headers["X-Scope-OrgID"] = tenant
        entries = sum(len(e) for _, e in streams)
        backoff = self.min_backoff
        attempt = 0
        while True:
            try:
                resp = self._pool.request("POST", self.url, body=body, headers=headers)
                status = resp.status
                reason = resp.data[:256].decode("utf-8", "replace").strip()
            except urllib3.exceptions.HTTPError as exc:
                status, reason = 0, str(exc)
            if 200 <= status < 300:
                self.sent_batches += 1
                self.sent_entries += entries
                return True
            if status and status != 429 and status < 500:
                log.error("loki refused a batch of %d entries (HTTP %d): %s", entries,
                          status, reason)
                self.dropped_entries += entries
                return False
            attempt += 1
            if self.max_retries and attempt > self.max_retries:
                log.error("dropping a batch of %d entries after %d retries: %s", entries,
                          self.max_retries, reason or status)
                self.dropped_entries += entries
                return False
            self.retries += 1
            log.warning("push to %s failed (%s); retrying in %.1fs", self.url,
                        f"HTTP {status}: {reason}" if status else reason, backoff)
            if stop is not None:
                if stop.wait(backoff):
                    raise PushAborted(f"stopped while retrying ({reason or status})")
            else:
                threading.Event().wait(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    def close(self) -> None:
        self._pool.clear()


def from_settings(settings: Any, url: str = "", **overrides: Any) -> LokiClient:
    """The client from the --loki.client.* flags: `url` (else --loki.client.url) and
    `overrides` (LokiClient fields) take precedence over them."""
    fields: dict[str, Any] = {
        "timeout": settings.loki_client_timeout,
        "tenant": settings.loki_client_tenant_id,
        "encoding": settings.loki_client_encoding,
        "min_backoff": settings.loki_client_min_backoff,
        "max_backoff": settings.loki_client_max_backoff,
        "max_retries": settings.loki_client_max_retries,
    }
    fields.update(overrides)
    return LokiClient(url or settings.loki_client_url, **fields)
