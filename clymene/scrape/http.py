"""HTTP fetch of a target, the way Prometheus 2.42 asks for it.

One `Fetcher` per job configuration holds its connections, so connections to a target
are reused by the worker process. Plain `http://` targets without a proxy are fetched
with clymene.http1 (requests and urllib3 cost more CPU than the rest of the scrape); a
redirect they answer is followed by the requests.Session, which also serves HTTPS
targets and proxies with the job's TLS settings. Auth files (password_file, credentials_file,
bearer_token_file) are read at each scrape, so a rotated secret is picked up.

Error texts are those of Prometheus' targets page (Go's net/http client), checked
against the Prometheus 2.42 binary: `Get "URL": ...` for request errors,
`server returned HTTP status 500 Internal Server Error`, `body size limit exceeded`,
`context deadline exceeded`. The body is read raw and gunzipped here (only for
`Content-Encoding: gzip`, as Prometheus), so body_size_limit bounds the decompressed size
without ever inflating more than that.
"""

from __future__ import annotations

import base64
import heapq
import http.client
import http.cookiejar
import ipaddress
import os
import socket
import ssl
import sys
import threading
import time
import warnings
import zlib
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.ssl_ import create_urllib3_context

from clymene import __version__, http1

# Prometheus 2.42's scrape Accept header: OpenMetrics preferred, text 0.0.4 next.
ACCEPT_HEADER = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
USER_AGENT = f"clymene/{__version__}"
DEADLINE = "context deadline exceeded"
BODY_SIZE_LIMIT = "body size limit exceeded"
_READ_SIZE = 65536
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip header and trailer
_TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                 "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}

# insecure_skip_verify is the operator's explicit choice; Prometheus does not warn either.
warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)


class ScrapeError(Exception):
    """The target could not be scraped; the message is what the targets API shows."""


def _format_seconds(seconds: float) -> str:
    # strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64): Seconds() of the nanosecond
    # duration, shortest round-trip digits, never an exponent ("10", "0.5", "2.25").
    whole, nanos = divmod(round(seconds * 1e9), 1_000_000_000)
    text = format(Decimal(repr(whole + nanos / 1e9)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


KEEP_ALIVE_HOSTS = 100_000  # per job; an idle pool costs a few hundred bytes and a socket


class _Session(requests.Session):
    def rebuild_auth(self, prepared_request: Any, response: Any) -> None:
        # Prometheus' auth round trippers set the header on every request, redirects to
        # other hosts included; requests would drop it there.
        return


class TLSAdapter(HTTPAdapter):
    """HTTPS with tls_config.server_name (SNI and the name verified) and min/max_version."""

    def __init__(self, server_name: str, min_version: str, max_version: str,
                 **kwargs: Any) -> None:
        self._server_name = server_name
        self._versions = (min_version, max_version)
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        ctx = create_urllib3_context()
        if self._versions[0]:
            ctx.minimum_version = _TLS_VERSIONS[self._versions[0]]
        if self._versions[1]:
            ctx.maximum_version = _TLS_VERSIONS[self._versions[1]]
        kwargs["ssl_context"] = ctx
        if self._server_name:
            kwargs["server_hostname"] = self._server_name
            kwargs["assert_hostname"] = self._server_name
        super().init_poolmanager(*args, **kwargs)


def configure_session(session: requests.Session, client: Any, hosts: int = 10) -> None:
    """Apply a config's HTTP client settings (tls_config, proxy_url) to a session; used
    by scrapes and by Kubernetes discovery alike. `hosts` is how many hosts keep their
    connections open at once (requests keeps 10 by default)."""
    pools = {"pool_connections": hosts, "pool_maxsize": 2}
    session.mount("http://", HTTPAdapter(**pools))
    session.mount("https://", HTTPAdapter(**pools))
    tls = client.tls_config
    if tls.insecure_skip_verify:
        session.verify = False
    elif tls.ca_file:
        session.verify = tls.ca_file
    if tls.cert_file:
        session.cert = (tls.cert_file, tls.key_file)
    if tls.server_name or tls.min_version or tls.max_version:
        session.mount("https://", TLSAdapter(tls.server_name, tls.min_version, tls.max_version,
                                             **pools))
    if client.proxy_url:
        session.proxies = {"http": client.proxy_url, "https": client.proxy_url}


class _Watchdog:
    """Shuts the response's socket down at the scrape deadline.

    requests' timeout bounds each socket read only: a target trickling its body byte by
    byte would hold the scrape forever. A blocked read returns when the socket is shut
    down; `fired` then tells the reader why. One reaper thread per process serves every
    watchdog (a thread per scrape would cost more than the scrape's parsing).
    """

    def __init__(self, response: urllib3.HTTPResponse, seconds: float) -> None:
        self.fired = False
        self.cancelled = False
        connection = getattr(response, "_connection", None)
        self._sock = getattr(connection, "sock", None)
        _REAPER.watch(time.monotonic() + max(0.0, seconds), self)

    def fire(self) -> None:
        self.fired = True
        if self._sock is not None:
            try:
                # The plain socket's shutdown, also for TLS: wakes the reader, no TLS close.
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self.cancelled = True


class _Reaper:
    """A daemon thread that fires watchdogs whose deadline passed and were not cancelled."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Watchdog]] = []
        self._cond = threading.Condition()
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._pid = 0

    def watch(self, deadline: float, dog: _Watchdog) -> None:
        with self._cond:
            if self._thread is None or self._pid != os.getpid():  # none yet, or forked
                self._heap = []
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="scrape-deadlines",
                                                daemon=True)
                self._thread.start()
            self._seq += 1
            heapq.heappush(self._heap, (deadline, self._seq, dog))
            if self._heap[0][2] is dog:
                self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                # Drop the cancelled ones at the front, then sleep until the earliest.
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                _, _, dog = heapq.heappop(self._heap)
                if not dog.cancelled:
                    dog.fire()
                # Cancelled entries deeper in the heap are dropped when they surface.


_REAPER = _Reaper()


class Fetcher:
    """Fetches targets of one job with its auth and TLS settings.

    The scrape timeout is one deadline for the body (see _Watchdog); until the response
    headers arrive it bounds the connect and each read instead, so only a target that
    trickles its headers (or slow redirect chains) can overrun it.
    """

    def __init__(self, scrape_config: Any):
        sc = scrape_config
        self.session = _Session()
        self.session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self._prepared_cache: dict[tuple, requests.PreparedRequest] = {}
        self.session.headers.update({
            "Accept": ACCEPT_HEADER,
            "Accept-Encoding": "gzip",
            "User-Agent": USER_AGENT,
        })
        # Go's client makes at most 10 requests: the 10th redirect is an error.
        self.session.max_redirects = 9
        self.session.trust_env = False  # like Prometheus: no proxy, netrc or CA from the env
        client = sc.http_client
        self.follow_redirects = client.follow_redirects
        self.body_size_limit = max(0, int(sc.body_size_limit or 0))
        self._basic = client.basic_auth
        self._authorization = client.authorization  # bearer_token(_file) end up here too
        self._server_name = client.tls_config.server_name
        # A connection kept open per target, as Prometheus keeps one: with requests'
        # default of 10 hosts, a job of more targets opened a connection per scrape.
        configure_session(self.session, client, hosts=KEEP_ALIVE_HOSTS)
        # Plain http:// without a proxy: clymene.http1, one kept connection per target.
        self._lean = not client.proxy_url
        self._lean_headers = dict(self.session.headers)
        self._lean_pools = http1.Pools(maxsize=2, max_hosts=KEEP_ALIVE_HOSTS)
        self._lean_heads: dict[tuple, bytes] = {}  # (url, headers) -> request bytes

    def _auth(self) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The Authorization header and the secrets in it (kept out of error texts);
        raises OSError with Prometheus' text for an unreadable secret file."""
        b = self._basic
        if b is not None:
            password = b.password
            if b.password_file:
                password = _read_secret(b.password_file, "basic auth password file")
            # UTF-8, as Go's SetBasicAuth (requests would use latin-1).
            token = base64.b64encode(f"{b.username}:{password}".encode()).decode()
            return {"Authorization": f"Basic {token}"}, (token, password)
        a = self._authorization
        if a is not None and (a.credentials or a.credentials_file):
            cred = a.credentials or _read_secret(
                a.credentials_file, "authorization credentials file")
            # Bytes go out as they are (UTF-8, like Go); a str would have to be latin-1.
            return {"Authorization": f"{a.type or 'Bearer'} {cred}".encode()}, (cred,)
        return {}, ()

    def _prepared(self, url: str, headers: dict[str, Any]) -> requests.PreparedRequest:
        """The GET for these URL and headers, prepared once: preparing a request costs
        as much CPU as sending it. No cookies are kept (Prometheus keeps none either)."""
        key = (url, tuple(headers.items()))
        prepared = self._prepared_cache.get(key)
        if prepared is None:
            if len(self._prepared_cache) > 10_000:
                self._prepared_cache.clear()
            prepared = self.session.prepare_request(requests.Request("GET", url, headers=headers))
            self._prepared_cache[key] = prepared
        return prepared.copy()

    def fetch(self, url: str, timeout: float) -> tuple[bytes, str]:
        """GET the target: (body, content type). Raises ScrapeError with Prometheus' wording."""
        deadline = time.monotonic() + timeout
        try:
            headers, secrets = self._auth()
        except OSError as exc:
            raise ScrapeError(f'Get "{url}": {exc}') from None
        headers["X-Prometheus-Scrape-Timeout-Seconds"] = _format_seconds(timeout)
        try:
            if self._lean and url.startswith("http://"):
                lean = self._get_lean(url, timeout, deadline, headers)
                if isinstance(lean, http1.Response):
                    return self._read_lean(lean, url, deadline, secrets)
                resp = lean  # redirected: the session followed it
            else:
                resp = self.session.send(self._prepared(url, headers), timeout=timeout,
                                         stream=True, allow_redirects=self.follow_redirects).raw
        except urllib3.exceptions.NewConnectionError as exc:  # a ConnectTimeoutError in 1.26
            reason = _scrub(_reason(exc, url, self._server_name), secrets)
            raise ScrapeError(f'Get "{url}": {reason}') from None
        except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError):
            raise ScrapeError(f'Get "{url}": {DEADLINE}') from None
        except requests.TooManyRedirects as exc:
            location = exc.response.headers.get("Location", "") if exc.response is not None else ""
            raise ScrapeError(f'Get "{location}": stopped after 10 redirects') from None
        except requests.exceptions.InvalidHeader:
            # Go's text, without the value: it may be a secret.
            raise ScrapeError(
                f'Get "{url}": net/http: invalid header field value for "Authorization"') from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError,
                ValueError, http.client.HTTPException) as exc:
            reason = _scrub(_reason(exc, url, self._server_name), secrets)
            raise ScrapeError(f'Get "{url}": {reason}') from None
        with resp:
            _check_status(resp.status, resp.reason)
            watchdog = _Watchdog(resp, deadline - time.monotonic())
            try:
                raw = _RawBody(resp)
                body = self._body(raw.chunks(), resp.headers.get("Content-Encoding"))
                raw.check_complete()
            except (requests.RequestException, urllib3.exceptions.HTTPError,
                    http.client.HTTPException, OSError) as exc:
                if watchdog.fired or _is_timeout(exc):
                    raise ScrapeError(DEADLINE) from None
                raise ScrapeError(_scrub(_reason(exc, url), secrets)) from None
            except ScrapeError:
                if watchdog.fired:
                    raise ScrapeError(DEADLINE) from None
                raise
            finally:
                watchdog.cancel()
            if watchdog.fired:
                raise ScrapeError(DEADLINE)
            return body, resp.headers.get("Content-Type", "")

    def _get_lean(self, url: str, timeout: float, deadline: float, headers: dict[str, Any]
                  ) -> http1.Response | urllib3.HTTPResponse:
        """The GET through clymene.http1, the body unread. A redirect is handed to the
        session, which follows it as it would have from the start."""
        pool, target = self._lean_pools.for_url(url)
        key = (url, *headers.items())
        head = self._lean_heads.get(key)
        if head is None:
            for item in headers.items():
                requests.utils.check_header_validity(item)  # what the session path refuses
            if len(self._lean_heads) > KEEP_ALIVE_HOSTS:
                self._lean_heads.clear()
            head = self._lean_heads[key] = http1.request_head(
                "GET", target, pool.host, pool.port, {**self._lean_headers, **headers})
        resp = pool.request("GET", head, b"", timeout, deadline)
        if not (self.follow_redirects and resp.status in _REDIRECTS
                and "location" in resp.headers):
            return resp
        resp.close()  # not reused: the session makes its own connections
        prepared = self._prepared(url, headers)
        first = requests.Response()
        first.status_code, first.reason, first.url = resp.status, resp.reason, url
        first.headers = requests.structures.CaseInsensitiveDict(resp.headers)
        first.request = prepared
        first._content, first._content_consumed = b"", True  # not read: the session asks anew
        hops = list(self.session.resolve_redirects(first, prepared, stream=True, timeout=timeout))
        return hops[-1].raw

    def _read_lean(self, resp: http1.Response, url: str, deadline: float,
                   secrets: tuple[str, ...]) -> tuple[bytes, str]:
        """Status check and body of a clymene.http1 answer, with fetch's errors."""
        with resp:
            _check_status(resp.status, resp.reason)
            try:
                body = self._body(resp.chunks(deadline), resp.headers.get("content-encoding"))
            except (http.client.HTTPException, OSError) as exc:
                if _is_timeout(exc):
                    raise ScrapeError(DEADLINE) from None
                raise ScrapeError(_scrub(_reason(exc, url), secrets)) from None
            return body, resp.headers.get("content-type", "")


    def _body(self, chunks: Any, content_encoding: str | None) -> bytes:
        """The body from its pieces as sent, gunzipped for `Content-Encoding: gzip` (as
        Prometheus; any other encoding is passed on as sent), within body_size_limit."""
        limit = self.body_size_limit or sys.maxsize
        if content_encoding == "gzip":
            return _gunzip(chunks, limit)
        return _read_all(chunks, limit)


def _check_status(status: int, reason: str | None) -> None:
    if status != 200:
        text = f"{status} {reason}" if reason else str(status)
        raise ScrapeError(f"server returned HTTP status {text}")


_REDIRECTS = frozenset((301, 302, 303, 307, 308))


class _RawBody:
    """The response body as sent (no transparent decoding), with its length checked
    against Content-Length: Go reports a short body as "unexpected EOF"."""

    def __init__(self, resp: urllib3.HTTPResponse) -> None:
        self._raw = resp
        self.size = 0
        length = resp.headers.get("Content-Length", "")
        chunked = "chunked" in resp.headers.get("Transfer-Encoding", "").lower()
        self._expected = int(length) if length.isdigit() and not chunked else -1

    def chunks(self) -> Any:
        for chunk in self._raw.stream(_READ_SIZE, decode_content=False):
            self.size += len(chunk)
            yield chunk

    def check_complete(self) -> None:
        if 0 <= self.size < self._expected:
            raise ScrapeError("unexpected EOF")


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<secret>")
    return text


def _read_all(chunks: Any, limit: int) -> bytes:
    parts = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        # Prometheus reads at most `limit` bytes and fails when it got all of them.
        if size >= limit:
            raise ScrapeError(BODY_SIZE_LIMIT)
        parts.append(chunk)
    return b"".join(parts)


def _gunzip(chunks: Any, limit: int) -> bytes:
    """Decompress a gzip body (members one after another, like Go's gzip.Reader), never
    inflating more than the limit allows."""
    parts = []
    size = 0
    seen = False
    d = zlib.decompressobj(_GZIP_WBITS)
    for chunk in chunks:
        pending = chunk
        while pending:
            seen = True
            if d.eof:
                d = zlib.decompressobj(_GZIP_WBITS)
            try:
                piece = d.decompress(pending, limit - size)
            except zlib.error as exc:
                raise ScrapeError(_gzip_error(exc)) from None
            size += len(piece)
            if size >= limit:
                raise ScrapeError(BODY_SIZE_LIMIT)
            parts.append(piece)
            pending = d.unused_data if d.eof else d.unconsumed_tail
    if not seen:
        raise ScrapeError("EOF")
    if not d.eof:
        raise ScrapeError("unexpected EOF")
    return b"".join(parts)


def _gzip_error(exc: zlib.error) -> str:
    text = str(exc)
    if "header check" in text or "compression method" in text:
        return "gzip: invalid header"
    if "data check" in text or "length check" in text:
        return "gzip: invalid checksum"
    return "flate: corrupt input"


def _read_secret(path: str, what: str) -> str:
    """A secret file's content, trimmed (Go's strings.TrimSpace); OSError in
    Prometheus' words when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except IsADirectoryError:
        raise OSError(f"unable to read {what} {path}: read {path}: is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OSError(f"unable to read {what} {path}: open {path}: {_errno_text(exc)}") from None


def _errno_text(exc: BaseException) -> str:
    # Go's errno texts are the C ones starting lower case: "no such file or directory".
    text = getattr(exc, "strerror", None) or str(exc)
    return text[:1].lower() + text[1:]


def _is_timeout(exc: BaseException) -> bool:
    return any(isinstance(e, (TimeoutError, socket.timeout, requests.Timeout,
                              urllib3.exceptions.TimeoutError)) for e in _causes(exc))


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps: requests and urllib3 nest the socket or
    TLS error in args, `.reason`, or the exception context."""
    found: list[BaseException] = []
    stack = [exc]
    while stack:
        e = stack.pop()
        if any(e is f for f in found):
            continue
        found.append(e)
        for inner in (*e.args, getattr(e, "reason", None), e.__cause__, e.__context__):
            if isinstance(inner, BaseException):
                stack.append(inner)
    return found


def _reason(exc: BaseException, url: str, server_name: str = "") -> str:
    """What Go's client would say for this failure, as far as Python exposes it."""
    causes = _causes(exc)
    for e in causes:
        if isinstance(e, ssl.SSLCertVerificationError):
            return _x509_text(e)
    for e in causes:
        if type(e).__name__ == "CertificateError":  # urllib3's own hostname check
            return _hostname_text(e, server_name or _host_port(url)[0])
    for e in causes:
        if isinstance(e, ssl.SSLError):
            return _tls_text(e)
    host, port = _host_port(url)
    for e in causes:
        if isinstance(e, socket.gaierror):
            return f"dial tcp: lookup {host}: no such host"
    connecting = any(isinstance(e, (urllib3.exceptions.NewConnectionError, http1.ConnectError))
                     for e in causes)
    for e in causes:
        if isinstance(e, OSError) and e.errno and connecting:
            return f"dial tcp {_join_host_port(host, port)}: connect: {_errno_text(e)}"
    for e in causes:
        if isinstance(e, http.client.RemoteDisconnected):
            return "EOF"  # closed without an answer
        if isinstance(e, http.client.IncompleteRead):
            return "unexpected EOF"
    for e in causes:
        if isinstance(e, OSError) and e.errno:
            return f"read: {_errno_text(e)}"
    return str(causes[-1])


# OpenSSL alert reasons whose Go (crypto/tls) text is not just the name in lower case.
_GO_ALERTS = {
    "BAD_RECORD_MAC": "bad record MAC",
    "CERTIFICATE_REVOKED": "revoked certificate",
    "CERTIFICATE_EXPIRED": "expired certificate",
    "CERTIFICATE_UNKNOWN": "unknown certificate",
    "UNKNOWN_CA": "unknown certificate authority",
    "DECODE_ERROR": "error decoding message",
    "DECRYPT_ERROR": "error decrypting message",
    "PROTOCOL_VERSION": "protocol version not supported",
    "INSUFFICIENT_SECURITY": "insufficient security level",
    "USER_CANCELLED": "user canceled",
    "UNKNOWN_PSK_IDENTITY": "unknown PSK identity",
}


def _x509_text(e: ssl.SSLCertVerificationError) -> str:
    code = e.verify_code
    if code in (2, 18, 19, 20, 21):  # no trusted issuer found: Go's UnknownAuthorityError
        return "x509: certificate signed by unknown authority"
    if code in (9, 10):
        return "x509: certificate has expired or is not yet valid"
    return f"x509: {e.verify_message}"


def _hostname_text(e: BaseException, host: str) -> str:
    # Go's x509.HostnameError texts, from the certificate urllib3 attaches.
    cert = getattr(e, "_peer_cert", None) or {}
    sans = cert.get("subjectAltName", ())
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        valid = ", ".join(v for k, v in sans if k == "DNS")
    else:
        host = host.strip("[]")
        ips = [str(ipaddress.ip_address(v.strip())) for k, v in sans if k == "IP Address"]
        if not ips:
            return f"x509: cannot validate certificate for {host} because it doesn't contain any IP SANs"
        valid = ", ".join(ips)
    if not valid:
        return f"x509: certificate is not valid for any names, but wanted to match {host}"
    return f"x509: certificate is valid for {valid}, not {host}"


def _tls_text(e: ssl.SSLError) -> str:
    reason = e.reason or ""
    if "_ALERT_" in reason:
        alert = reason.split("_ALERT_", 1)[1]
        return f"remote error: tls: {_GO_ALERTS.get(alert, alert.lower().replace('_', ' '))}"
    if reason == "WRONG_VERSION_NUMBER":
        return "tls: first record does not look like a TLS handshake"
    if isinstance(e, ssl.SSLEOFError):
        return "EOF"
    return f"tls: {reason.lower().replace('_', ' ') or e}"


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.hostname or "", port or (443 if parts.scheme == "https" else 80)


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
