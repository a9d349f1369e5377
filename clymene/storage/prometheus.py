"""Prometheus remote write 1.0 storage (Prometheus, Cortex, Mimir, Thanos, VictoriaMetrics).

A batch is sent as one or more snappy-compressed `WriteRequest`s of at most
`max_samples_per_send` samples each, in batch order. Like Prometheus' queue manager,
5xx answers, 429, connection errors and timeouts are retried with exponential backoff
(30 ms doubling up to 5 s; a `Retry-After` header, in seconds or as an HTTP date, takes
the place of the backoff when present); any other answer is a permanent rejection.
Retrying stops at the caller's deadline. NaN values, staleness markers included, are
sent as they are: remote write carries them bit for bit.

Beyond the original Clymene: a tenant header (`X-Scope-OrgID`, for Cortex, Mimir and
Thanos Receive), basic auth, a bearer token, TLS (CA, client certificate, server name,
skip verification), extra headers, and `write_relabel_configs` (applied per series, the
result cached, exactly as Prometheus applies them before sending). Refused credentials
(401, 403) raise a WriteError naming the storage and the URL, never the credential.

`HTTPSender` is the retrying POST that the other HTTP backends (InfluxDB, OpenTSDB) use
too, so every HTTP backend has the same retry, backoff, TLS and redaction rules.

Counters (clymene.stats), all labelled `storage` with the storage's name:
  clymene_storage_requests_total{code}     one per HTTP attempt; code "error" when no
                                           answer came (connection error, timeout)
  clymene_storage_retries_total            attempts repeated after a transient failure
  clymene_storage_samples_written_total    samples the server accepted
  clymene_storage_samples_dropped_total{reason}
                                           samples given up: reason "rejected" (4xx) or
                                           "deadline" (still failing at the deadline)
  clymene_storage_bytes_sent_total         compressed body bytes of answered attempts
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import urllib3

from clymene import http1, stats
from clymene.relabel import Rule, relabel
from clymene.storage import Labels, Sample, WriteError
from clymene.storage.remote_write_pb import compress, encode_write_request

MIN_BACKOFF = 0.030
MAX_BACKOFF = 5.0
MAX_ERROR_BODY = 256


def _version() -> str:
    try:
        from clymene import __version__  # type: ignore[attr-defined]

        return str(__version__)
    except ImportError:
        pass
    try:
        from importlib.metadata import version

        return version("clymene")
    except Exception:
        return "0.1.0"


DEFAULT_USER_AGENT = f"clymene/{_version()}"


def parse_retry_after(value: str | None, now: float | None = None) -> float:
    """Seconds to wait from a `Retry-After` header (delay-seconds or HTTP date);
    0 when absent, invalid or in the past."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return 0.0
    if when is None:
        return 0.0
    wait = when.timestamp() - (time.time() if now is None else now)
    return max(wait, 0.0)


def redact_url(url: str) -> str:
    """The URL without user info and query, safe to show in errors and logs."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port:
            host = f"{host}:{parts.port}"
        return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:
        return "<invalid url>"


@dataclass(frozen=True)
class TLSOptions:
    """Client TLS settings of an HTTPS backend (all optional)."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""
    insecure_skip_verify: bool = False

    def pool_kwargs(self) -> dict:
        kwargs: dict = {}
        if self.insecure_skip_verify:
            kwargs["cert_reqs"] = ssl.CERT_NONE
            kwargs["assert_hostname"] = False
        else:
            kwargs["cert_reqs"] = ssl.CERT_REQUIRED
            if self.ca_file:
                kwargs["ca_certs"] = self.ca_file
        if self.cert_file:
            kwargs["cert_file"] = self.cert_file
            kwargs["key_file"] = self.key_file or None
        if self.server_name:
            kwargs["server_hostname"] = self.server_name
            if not self.insecure_skip_verify:
                kwargs["assert_hostname"] = self.server_name
        return kwargs


def auth_error_hint(code: int) -> str:
    if code == 401:
        return " (authentication refused: check the username/password or token)"
    if code == 403:
        return " (access forbidden: the credentials lack permission for this write)"
    return ""


class HTTPSender:
    """POSTs bodies to one URL with Prometheus' retry rules (see the module doc).

    `name` names the storage in errors and counters; credentials given here (or in the
    URL's user info or query) are never shown in errors.
    """

    def __init__(
        self,
        name: str,
        url: str,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
        basic_auth: tuple[str, str] | None = None,
        bearer_token: str | None = None,
        tls: TLSOptions | None = None,
        auth_scheme: str = "Bearer",
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{name}: url must be an http(s) URL, got {redact_url(url)!r}")
        if timeout <= 0:
            raise ValueError(f"{name}: timeout must be positive, got {timeout}")
        self.name = name
        self.url = url
        self.timeout = float(timeout)
        self.safe_url = redact_url(url)
        # Never shown in errors: they may hold credentials (a query may carry a token).
        password = parts.password or ""
        self._secrets = [
            s for s in (password, urllib.parse.unquote(password), parts.query, bearer_token) if s
        ]
        kwargs = (tls or TLSOptions()).pool_kwargs() if parts.scheme == "https" else {}
        # urllib3 directly: requests' per-request preparation cost as much as the send;
        # plain http:// through clymene.http1, which costs less again.
        self._pool = urllib3.PoolManager(num_pools=64, maxsize=8, retries=False, **kwargs)
        self._pools: dict[str, tuple[Any, str]] = {}  # url -> (connection pool, target)
        self._lean_pools = http1.Pools(maxsize=8, max_hosts=64)  # the same for http://
        self.headers = dict(headers or {})
        if basic_auth is None and parts.username is not None:
            # user:password@ in the URL means basic auth (as requests and Go's client do).
            basic_auth = (urllib.parse.unquote(parts.username),
                          urllib.parse.unquote(parts.password or ""))
            self.url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        if basic_auth is not None:
            token = base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
            self._secrets.append(basic_auth[1])
            self._secrets.append(token)
        elif bearer_token:
            self.headers["Authorization"] = f"{auth_scheme} {bearer_token}"
        for key, value in (headers or {}).items():
            if key.lower() == "authorization":
                self._secrets.append(value)
        self._secrets.sort(key=len, reverse=True)

    def close(self) -> None:
        self._pools.clear()
        self._pool.clear()
        self._lean_pools.close()

    def _post_lean(self, url: str, body: bytes, headers: dict[str, str], timeout: float
                   ) -> tuple[int, str, bytes, str | None]:
        """(status, reason, body, Retry-After) of a POST to a plain http:// URL."""
        pool, target = self._lean_pools.for_url(url)
        deadline = time.monotonic() + timeout
        head = http1.request_head("POST", target, pool.host, pool.port,
                                  {"Accept-Encoding": "identity", **headers}, len(body))
        with pool.request("POST", head, body, timeout, deadline) as response:
            return (response.status, response.reason, response.read(deadline),
                    response.headers.get("retry-after"))

    def _pool_for(self, url: str) -> tuple[Any, str]:
        """The connection pool and request target of a URL, looked up once: parsing the
        URL on every request cost more CPU than the rest of urllib3's request handling."""
        found = self._pools.get(url)
        if found is None:
            if len(self._pools) >= 64:
                self._pools.clear()
            found = self._pools[url] = (self._pool.connection_from_url(url),
                                        urllib3.util.parse_url(url).request_uri)
        return found

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<secret>")
        return text

    def post(self, body: bytes, deadline: float, headers: dict[str, str] | None = None,
             url: str | None = None) -> bytes:
        """POST until a 2xx answer (returned body) or a permanent rejection / the deadline
        (WriteError). 5xx, 429, connection errors and timeouts are retried with backoff."""
        headers = self.headers if headers is None else {**self.headers, **headers}
        target = url or self.url
        backoff = MIN_BACKOFF
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WriteError(
                    f"{self.name}: deadline passed before {self.safe_url} could be written"
                    + (f" after {attempt} attempts" if attempt else ""),
                    retryable=True,
                )
            if attempt:
                stats.inc("clymene_storage_retries_total", storage=self.name)
            attempt += 1
            retry_after = 0.0
            try:
                if target.startswith("http://"):
                    code, reason, data, retry_text = self._post_lean(
                        target, body, headers, min(self.timeout, remaining))
                else:
                    pool, path = self._pool_for(target)
                    response = pool.urlopen(
                        "POST",
                        path,
                        body=body,
                        headers=headers,
                        timeout=urllib3.Timeout(total=min(self.timeout, remaining)),
                        redirect=False,
                        retries=False,
                        assert_same_host=False,
                    )
                    code, reason, data = response.status, response.reason, response.data
                    retry_text = response.headers.get("Retry-After")
            except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
                self._pools.pop(target, None)  # e.g. a pool the manager closed: look it up anew
                stats.inc("clymene_storage_requests_total", storage=self.name, code="error")
                error = self.scrub(f"{type(exc).__name__}: {exc}")
            else:
                stats.inc("clymene_storage_requests_total", storage=self.name, code=str(code))
                stats.inc("clymene_storage_bytes_sent_total", len(body), storage=self.name)
                if 200 <= code < 300:
                    return data
                text = data[:MAX_ERROR_BODY].decode("utf-8", "replace")
                error = self.scrub(
                    f"server returned HTTP {code} {reason or ''}".rstrip() + f": {text}"
                )
                if code < 500 and code != 429:
                    raise WriteError(
                        f"{self.name}: {self.safe_url} rejected the write"
                        f"{auth_error_hint(code)}: {error}",
                        retryable=False,
                    )
                retry_after = parse_retry_after(retry_text)
            # Prometheus: a Retry-After replaces the backoff for this wait only.
            wait = retry_after if retry_after > 0 else backoff
            if time.monotonic() + wait >= deadline:
                raise WriteError(
                    f"{self.name}: gave up writing to {self.safe_url} at the deadline after "
                    f"{attempt} attempts: {error}",
                    retryable=True,
                )
            time.sleep(wait)
            backoff = min(wait * 2, MAX_BACKOFF)


_RELABEL_CACHE_MAX = 100_000
_DROPPED: Labels = ()


class RemoteWriteStorage:
    """Writes batches to a remote write endpoint such as `.../api/v1/write`."""

    def __init__(
        self,
        url: str,
        timeout: float = 30.0,
        user_agent: str | None = None,
        headers: dict[str, str] | None = None,
        basic_auth: tuple[str, str] | None = None,
        bearer_token: str | None = None,
        max_samples_per_send: int = 2000,
        name: str = "prometheus",
        tenant: str = "",
        tls: TLSOptions | None = None,
        write_relabel: list[Rule] | tuple[Rule, ...] = (),
        auth_scheme: str = "Bearer",
    ) -> None:
        if max_samples_per_send < 1:
            raise ValueError(f"max_samples_per_send must be at least 1, got {max_samples_per_send}")
        extra = dict(headers or {})
        if tenant:
            extra["X-Scope-OrgID"] = tenant
        # These are the protocol: user-supplied headers cannot replace them.
        extra.update(
            {
                "Content-Encoding": "snappy",
                "Content-Type": "application/x-protobuf",
                "X-Prometheus-Remote-Write-Version": "0.1.0",
                "User-Agent": user_agent or DEFAULT_USER_AGENT,
            }
        )
        try:
            self._sender = HTTPSender(name, url, timeout, extra, basic_auth, bearer_token, tls,
                                      auth_scheme)
        except ValueError as exc:
            raise ValueError(str(exc).replace(f"{name}: url", "remote write url")) from None
        self.name = name
        self.url = self._sender.url
        self.timeout = self._sender.timeout
        self.max_samples_per_send = int(max_samples_per_send)
        self._safe_url = self._sender.safe_url
        self._headers = self._sender.headers
        self._rules = list(write_relabel)
        self._relabeled: dict[Labels, Labels] = {}

    def _relabel(self, batch: list[Sample]) -> list[Sample]:
        """write_relabel_configs, per series (cached): the kept samples, relabeled."""
        cache = self._relabeled
        out: list[Sample] = []
        dropped = 0
        for labels, value, ts in batch:
            new = cache.get(labels)
            if new is None:
                result = relabel(dict(labels), self._rules)
                new = tuple(sorted(result.items())) if result else _DROPPED
                if len(cache) >= _RELABEL_CACHE_MAX:
                    cache.clear()
                cache[labels] = new
            if new:
                out.append((new, value, ts))
            else:
                dropped += 1
        if dropped:
            stats.inc("clymene_storage_samples_relabel_dropped_total", dropped, storage=self.name)
        return out

    def write(self, batch: list[Sample], deadline: float) -> None:
        if self._rules:
            batch = self._relabel(batch)
        step = self.max_samples_per_send
        for start in range(0, len(batch), step):
            chunk = batch[start : start + step]
            try:
                self._sender.post(compress(encode_write_request(chunk)), deadline)
            except WriteError as exc:
                reason = "deadline" if exc.retryable else "rejected"
                stats.inc(
                    "clymene_storage_samples_dropped_total",
                    len(batch) - start,
                    storage=self.name,
                    reason=reason,
                )
                raise
            stats.inc("clymene_storage_samples_written_total", len(chunk), storage=self.name)

    def close(self) -> None:
        self._sender.close()

    def _scrub(self, text: str) -> str:
        return self._sender.scrub(text)
