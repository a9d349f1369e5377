"""`clymene gateway`: an HTTP receiver of Prometheus remote write 1.0 and of Loki pushes.

    POST /api/v1/write   remote write 1.0 (snappy protobuf WriteRequest), from clymene
                         workers, Prometheus, Grafana Agent, vmagent
    POST /api/metrics    the original Clymene gateway's endpoint: the same body; a JSON
                         WriteRequest (Content-Type: application/json) is taken too
    POST /loki/api/v1/push, /api/logs
                         Loki push API (snappy protobuf or JSON PushRequest, optionally
                         gzip/deflate Content-Encoding; tenant in X-Scope-OrgID), from
                         clymene promtail, promtail, Grafana Alloy, Fluent Bit; to the log
                         outputs of STORAGE_TYPE (see clymene.gateway.logs); /api/logs
                         also takes the original Clymene promtail's JSON ProducerBatch
                         ({"batch": {"streams": ...}, "tenantID": ...})
    GET  /-/healthy, /-/ready, /metrics

The samples go to every storage of STORAGE_TYPE (normally `kafka`, which publishes them
keyed by target). The answer is 204 only after every storage has the data (Kafka
acknowledged it, or the database wrote it); 503 when it did not happen within
`--gateway.write-timeout`, so the sender retries; 400 for a body that cannot be decoded
(or that a database rejects for good), 413 for a body over `--gateway.max-body-size`,
411 without Content-Length, 401 for missing or wrong credentials. The gateway keeps no
state: run as many replicas behind one Service as the traffic needs.

Logs follow the same rules (204 once safe, 503, 400, 413; 415 for an unknown
Content-Type); a path whose side has no output configured answers 404.

Counters: clymene_gateway_requests_total{code,handler},
clymene_gateway_samples_received_total, clymene_gateway_samples_failed_total,
clymene_gateway_log_entries_received_total, clymene_gateway_log_entries_failed_total.
"""

from __future__ import annotations

import base64
import hmac
import logging
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from clymene import stats
from clymene.gateway.logs import LogSink, decode_api_logs, decode_logs
from clymene.kafka import encoding as enc
from clymene.kafka.metrics import Exporter
from clymene.logs.push import PUSH_PATHS, PushDecodeError
from clymene.storage import Sample, Storage, WriteError
from clymene.storage.remote_write_pb import decode_write_request, decompress, snappy_length

log = logging.getLogger(__name__)

WRITE_PATHS = ("/api/v1/write", "/api/metrics")
ALL_PATHS = WRITE_PATHS + PUSH_PATHS


class BadRequest(ValueError):
    pass


class TooLarge(ValueError):
    pass


def decode_body(body: bytes, content_type: str, max_size: int) -> list[Sample]:
    """The samples of a request body; BadRequest / TooLarge naming what is wrong."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == "application/json":
        try:
            return enc.decode_json(body)
        except ValueError as exc:
            raise BadRequest(f"json: {exc}") from None
    try:
        size = snappy_length(body)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if size > max_size:
        raise TooLarge(f"uncompressed body of {size} bytes is over the limit of {max_size}")
    try:
        raw = decompress(body)
    except Exception as exc:  # cramjam's own error type
        raise BadRequest(f"snappy: {exc}") from None
    try:
        series = decode_write_request(raw)
    except ValueError as exc:
        raise BadRequest(f"protobuf: {exc}") from None
    return [(labels, v, ts) for labels, samples in series for v, ts in samples]


class Gateway:
    """The request handling, apart from HTTP: decode, write everywhere, answer."""

    def __init__(self, storages: list[Storage], write_timeout: float = 10.0,
                 max_body_size: int = 16 << 20, auth: tuple[str, str] | None = None,
                 logs: LogSink | None = None) -> None:
        self.storages = storages
        self.logs = logs
        self.write_timeout = write_timeout
        self.max_body_size = max_body_size
        # ("bearer", token) or ("basic", "user:password")
        self.auth = auth
        # The kafka storage is thread-safe; other backends are written one at a time.
        self._locks = {id(s): threading.Lock() for s in storages if s.name != "kafka"}
        self.exporter = Exporter()

    def authorized(self, header: str | None) -> bool:
        if self.auth is None:
            return True
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        kind, secret = self.auth
        if kind == "bearer":
            return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), secret)
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except ValueError:
            return False
        return hmac.compare_digest(given, secret)

    def write(self, batch: list[Sample]) -> tuple[int, str]:
        """(HTTP code, error text) after writing the batch to every storage."""
        if not batch:
            return 204, ""
        deadline = time.monotonic() + self.write_timeout
        for storage in self.storages:
            lock = self._locks.get(id(storage))
            try:
                if lock is None:
                    storage.write(batch, deadline)
                else:
                    with lock:
                        storage.write(batch, deadline)
            except WriteError as exc:
                stats.inc("clymene_gateway_samples_failed_total", len(batch),
                          storage=storage.name)
                if exc.retryable:
                    return 503, f"{storage.name}: {exc}"
                return 400, f"{storage.name}: {exc}"
        stats.inc("clymene_gateway_samples_received_total", len(batch))
        return 204, ""

    def close(self) -> None:
        for storage in self.storages:
            storage.close()
        if self.logs is not None:
            self.logs.close()


def _handler(gw: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: senders reuse connections

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path not in ALL_PATHS:
                self._drain()
                return self._answer(404, "not found", path)
            logs = path in PUSH_PATHS
            missing = gw.logs is None if logs else not gw.storages
            if missing:
                self._drain()
                return self._answer(404, f"no {'log output' if logs else 'metrics storage'}"
                                         " configured (STORAGE_TYPE)", path)
            if not gw.authorized(self.headers.get("Authorization")):
                self._drain()
                return self._answer(401, "unauthorized", path,
                                    {"WWW-Authenticate": 'Basic realm="clymene"'}
                                    if gw.auth and gw.auth[0] == "basic" else
                                    {"WWW-Authenticate": "Bearer"})
            length = self.headers.get("Content-Length")
            if length is None or not length.strip().isdigit():
                self.close_connection = True
                return self._answer(411, "Content-Length required", path)
            size = int(length)
            if size > gw.max_body_size:
                self.close_connection = True  # the body is not read
                return self._answer(413, f"body of {size} bytes is over the limit of "
                                         f"{gw.max_body_size}", path)
            body = self.rfile.read(size)
            if len(body) != size:
                self.close_connection = True
                return self._answer(400, "body shorter than Content-Length", path)
            if logs:
                return self._push_logs(body, path)
            try:
                batch = decode_body(body, self.headers.get("Content-Type", ""),
                                    gw.max_body_size)
            except TooLarge as exc:
                return self._answer(413, str(exc), path)
            except BadRequest as exc:
                return self._answer(400, str(exc), path)
            code, error = gw.write(batch)
            self._answer(code, error, path)

        def _push_logs(self, body: bytes, path: str) -> None:
            assert gw.logs is not None
            ctype = self.headers.get("Content-Type", "")
            cenc = self.headers.get("Content-Encoding", "")
            body_tenant = ""
            try:
                if path == "/api/logs":
                    streams, body_tenant = decode_api_logs(body, ctype, cenc,
                                                           gw.max_body_size)
                else:
                    streams = decode_logs(body, ctype, cenc, gw.max_body_size)
            except PushDecodeError as exc:
                return self._answer(exc.status, str(exc), path)
            tenant = (self.headers.get("X-Scope-OrgID") or "").strip() or body_tenant or None
            code, error = gw.logs.write(streams, tenant)
            self._answer(code, error, path)

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                return self._send(200, gw.exporter.render(), "text/plain; version=0.0.4")
            if path in ("/-/healthy", "/-/ready"):
                return self._send(200, b"OK\n", "text/plain")
            self._send(404, b"not found\n", "text/plain")

        def _drain(self) -> None:
            length = self.headers.get("Content-Length", "")
            if length.isdigit() and int(length) <= gw.max_body_size:
                self.rfile.read(int(length))
            else:
                self.close_connection = True

        def _answer(self, code: int, error: str, path: str,
                    headers: dict[str, str] | None = None) -> None:
            handler = path if path in ALL_PATHS else "other"
            stats.inc("clymene_gateway_requests_total", code=str(code), handler=handler)
            if code >= 500:
                log.warning("%s: answering %d: %s", path, code, error)
            body = (error + "\n").encode() if error else b""
            self._send(code, body, "text/plain; charset=utf-8", headers)

        def _send(self, code: int, body: bytes, ctype: str,
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            if code != 204:
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if code != 204:
                self.wfile.write(body)

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("gateway: " + fmt, *args)

    return Handler


def tls_context(cert: str, key: str, client_ca: str = "") -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    return ctx


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the request's thread, not in the accepting one.
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.debug("TLS handshake with %s failed: %s", client_address, exc)
                return
        super().finish_request(request, client_address)


def make_server(address: str, gw: Gateway, tls: ssl.SSLContext | None = None) -> _Server:
    host, _, port = address.rpartition(":")
    server = _Server((host or "0.0.0.0", int(port)), _handler(gw))
    server.tls = tls
    return server


def settings_auth(settings: Any) -> tuple[str, str] | None:
    if settings.gateway_bearer_token_file:
        with open(settings.gateway_bearer_token_file, encoding="utf-8") as f:
            return ("bearer", f.read().strip())
    if settings.gateway_basic_username:
        if not settings.gateway_basic_password_file:
            raise ValueError("--gateway.auth.basic.username needs "
                             "--gateway.auth.basic.password-file")
        with open(settings.gateway_basic_password_file, encoding="utf-8") as f:
            return ("basic", f"{settings.gateway_basic_username}:{f.read().strip()}")
    return None


def run(settings: Any, stop: threading.Event, redis_client: object | None = None) -> int:
    """The gateway process until `stop` is set."""
    from clymene.kafka.metrics import run_flusher
    from clymene.storage.factory import open_storages

    tls = None
    if settings.gateway_tls_enabled:
        if not settings.gateway_tls_cert or not settings.gateway_tls_key:
            raise ValueError("--gateway.http-server.tls.enabled needs "
                             "--gateway.http-server.tls.cert and .key")
        tls = tls_context(settings.gateway_tls_cert, settings.gateway_tls_key,
                          settings.gateway_tls_client_ca)
    from clymene.gateway.logs import metrics_settings, open_outputs

    auth = settings_auth(settings)
    msettings = metrics_settings(settings)
    # STORAGE_TYPE naming only log outputs (loki): no metrics storage, not the default file
    storages = (open_storages(msettings)
                if msettings.storage_type or not settings.storage_type else [])
    try:
        outputs = open_outputs(settings)
    except BaseException:
        for storage in storages:
            storage.close()
        raise
    logs = LogSink(outputs, settings.gateway_write_timeout) if outputs else None
    gw = Gateway(storages, settings.gateway_write_timeout, settings.gateway_max_body_size,
                 auth, logs)
    gw.exporter.redis = redis_client
    server = make_server(settings.gateway_http_host_port, gw, tls)
    threading.Thread(target=server.serve_forever, name="gateway-http", daemon=True).start()
    flusher = threading.Thread(target=run_flusher, args=(gw.exporter, stop), daemon=True)
    flusher.start()
    log.info("gateway listening on %s (%s): metrics -> %s; logs -> %s",
             settings.gateway_http_host_port, "https" if tls else "http",
             ", ".join(s.name for s in gw.storages) or "none",
             ", ".join(o.name for o in outputs) or "none")
    stop.wait()
    server.shutdown()
    server.server_close()
    flusher.join(5)
    gw.close()
    return 0
