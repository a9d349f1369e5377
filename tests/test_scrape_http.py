"""The scrape HTTP client (clymene.scrape.http) against real HTTP(S) servers on loopback.

Expected headers, error texts and limits are Prometheus 2.42's (scrape/scrape.go
targetScraper.scrape and the Go net/http client it uses); the error texts were checked
against the Debian prometheus 2.42 binary scraping these same servers.
"""

from __future__ import annotations

import base64
import datetime
import gzip
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clymene import __version__
from clymene.config import load_string
from clymene.scrape.http import ACCEPT_HEADER, Fetcher, ScrapeError

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,"
    "application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,"
    "*/*;q=0.1"
)
TEXT = "text/plain; version=0.0.4"
SERVER_NAME = "target.clymene.test"
BODY = b"# TYPE up gauge\nup 1\n"

Handler = Callable[[BaseHTTPRequestHandler], None]


# ---------------------------------------------------------------- the target server


class Target:
    """A threaded HTTP (or HTTPS, given an ssl context) server on 127.0.0.1.

    `routes` maps a path to a function answering the request; every request's path and
    headers are recorded in `requests`. Handlers that wait use `self.stopping`, so
    `stop()` does not wait for them.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Handler] = {"/metrics": reply()}
        # (path, headers, client port) of every request, and the TLS server names asked for.
        self.requests: list[tuple[str, dict[str, str], int]] = []
        self.server_names: list[str | None] = []
        self.stopping = threading.Event()
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
        owner = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.requests.append(
                    (self.path, dict(self.headers.items()), self.client_address[1]))
                handler = owner.routes.get(self.path.split("?")[0])
                try:
                    if handler is None:
                        reply(404, b"not found\n")(self)
                    else:
                        handler(self)
                except OSError:
                    self.close_connection = True

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def finish_request(self, request: Any, client_address: Any) -> None:
                # The TLS handshake runs in the request's thread, not the accept loop.
                if tls is not None:
                    request = tls.wrap_socket(request, server_side=True,
                                              do_handshake_on_connect=False)
                    try:
                        request.do_handshake()
                    except OSError:
                        _hang_up(request)
                        return
                super().finish_request(request, client_address)

        self._server = Server(("127.0.0.1", 0), RequestHandler)
        self.port = self._server.server_address[1]
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/metrics"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True)
        self._thread.start()

    def headers(self, index: int = -1) -> dict[str, str]:
        return self.requests[index][1]

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()


def _hang_up(sock: socket.socket) -> None:
    """Close after a failed handshake without a reset: the client reads the TLS alert
    (a close with unread request bytes would send RST, which may discard it)."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_WR)
        sock.settimeout(1.0)
        while socket.socket.recv(sock, 4096):
            pass
    except OSError:
        pass
    sock.close()


def reply(status: int = 200, body: bytes = BODY, content_type: str = TEXT,
          headers: tuple[tuple[str, str], ...] = ()) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(body)
    return handle


def redirect(location: str, status: int = 302) -> Handler:
    return reply(status, b"", headers=(("Location", location),))


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    yield server
    server.stop()


def fetcher(tmp_path: Path, job_yaml: str = "") -> Fetcher:
    """A Fetcher for a job whose extra settings are `job_yaml` (lines at job level);
    relative file names are under tmp_path."""
    lines = "".join(f"    {line}\n" for line in job_yaml.strip().splitlines())
    text = f"scrape_configs:\n  - job_name: t\n{lines}"
    config = load_string(text, "test.yml", base_dir=str(tmp_path))
    return Fetcher(config.scrape_configs[0])


# ---------------------------------------------------------------- a CA and its certificates


class PKI:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        now = datetime.datetime.now(datetime.UTC)
        self._valid = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=1))
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clymene test CA")])
        self._ca = (ca_name, ca_key)
        ca_cert = self._build(ca_name, ca_key.public_key(), ca=True)
        self.ca_file = self._write("ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM))
        self.server_cert, self.server_key = self._issue(
            "server", ExtendedKeyUsageOID.SERVER_AUTH,
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]))
        self.named_cert, self.named_key = self._issue(
            "named", ExtendedKeyUsageOID.SERVER_AUTH,
            x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]))
        self.client_cert, self.client_key = self._issue(
            "client", ExtendedKeyUsageOID.CLIENT_AUTH, None)

    def _build(self, subject: x509.Name, public_key: Any, ca: bool,
               extensions: tuple[Any, ...] = ()) -> x509.Certificate:
        issuer, issuer_key = self._ca
        builder = (x509.CertificateBuilder()
                   .subject_name(subject).issuer_name(issuer).public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(self._valid[0]).not_valid_after(self._valid[1])
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        for ext in extensions:
            builder = builder.add_extension(ext, critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def _issue(self, name: str, usage: Any, san: Any) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"clymene test {name}")])
        extensions: tuple[Any, ...] = (x509.ExtendedKeyUsage([usage]),)
        if san is not None:
            extensions += (san,)
        cert = self._build(subject, key.public_key(), ca=False, extensions=extensions)
        cert_file = self._write(f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
        key_file = self._write(f"{name}.key", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        return cert_file, key_file

    def _write(self, name: str, data: bytes) -> str:
        path = self.dir / name
        path.write_bytes(data)
        return str(path)

    def server_context(self, require_client_cert: bool = False, named: bool = False,
                       max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        """For the 127.0.0.1 certificate, or the one for SERVER_NAME only (`named`)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if named:
            ctx.load_cert_chain(self.named_cert, self.named_key)
        else:
            ctx.load_cert_chain(self.server_cert, self.server_key)
        if max_version is not None:
            ctx.maximum_version = max_version
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.ca_file)
        return ctx


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


def test_connection_kept_open_per_target_in_a_large_job(tmp_path):
    # Prometheus keeps a connection per target; requests keeps 10 hosts by default, and
    # a job with more targets than that would connect anew for every scrape.
    servers = [Target() for _ in range(15)]
    try:
        f = fetcher(tmp_path)
        for _ in range(3):
            for server in servers:
                assert f.fetch(server.url, 5.0) == (BODY, TEXT)
        for server in servers:
            ports = {port for _, _, port in server.requests}
            assert len(server.requests) == 3 and len(ports) == 1
    finally:
        for server in servers:
            server.stop()


def scrape_error(f: Fetcher, url: str, timeout: float = 5.0) -> str:
    with pytest.raises(ScrapeError) as info:
        f.fetch(url, timeout)
    return str(info.value)


def trickle(owner: Target, pause: float, count: int = 100) -> Handler:
    """Headers at once, then `count` bytes one by one, `pause` seconds apart: every read
    is quick, the whole body is not."""
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", TEXT)
        h.send_header("Content-Length", str(count))
        h.end_headers()
        for _ in range(count):
            h.wfile.write(b"#")
            h.wfile.flush()
            if owner.stopping.wait(pause):
                return
    return handle


def stall(owner: Target, seconds: float, headers_first: bool = False) -> Handler:
    """Waits `seconds` (before the headers, or after them with `headers_first`)."""
    def handle(h: BaseHTTPRequestHandler) -> None:
        if headers_first:
            h.send_response(200)
            h.send_header("Content-Type", TEXT)
            h.send_header("Content-Length", str(len(BODY)))
            h.end_headers()
            h.wfile.flush()
        if owner.stopping.wait(seconds):
            return
        if not headers_first:
            reply()(h)
        else:
            h.wfile.write(BODY)
    return handle


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ---------------------------------------------------------------- request headers


@pytest.mark.parametrize("timeout, header", [(10.0, "10"), (0.5, "0.5"), (2.25, "2.25")])
def test_request_headers_are_prometheus_ones(tmp_path: Path, target: Target,
                                             timeout: float, header: str) -> None:
    assert fetcher(tmp_path).fetch(target.url, timeout) == (BODY, TEXT)
    assert len(target.requests) == 1
    path, headers, _ = target.requests[0]
    assert path == "/metrics"
    assert headers["Accept"] == PROMETHEUS_ACCEPT
    assert headers["Accept-Encoding"] == "gzip"
    assert headers["X-Prometheus-Scrape-Timeout-Seconds"] == header
    assert headers["User-Agent"] == f"clymene/{__version__}"
    assert headers["User-Agent"].startswith("clymene/")
    assert "Authorization" not in headers
    assert ACCEPT_HEADER == PROMETHEUS_ACCEPT


@pytest.mark.parametrize("seconds, text", [
    (10, "10"), (0.5, "0.5"), (2.25, "2.25"), (0.1, "0.1"), (90.0, "90"), (1.001, "1.001"),
    (0.001, "0.001"), (3600, "3600"), (1e-7, "0.0000001"), (1e21, "1000000000000000000000"),
])
def test_timeout_header_is_go_format_float(seconds: float, text: str) -> None:
    from clymene.scrape.http import _format_seconds
    assert _format_seconds(seconds) == text


def test_connection_is_reused_between_scrapes(tmp_path: Path, target: Target) -> None:
    f = fetcher(tmp_path)
    for _ in range(3):
        assert f.fetch(target.url, 5.0) == (BODY, TEXT)
    assert len({port for _, _, port in target.requests}) == 1


# ---------------------------------------------------------------- body: gzip and size limit


def test_gzip_body_is_decompressed(tmp_path: Path, target: Target) -> None:
    om = "application/openmetrics-text; version=1.0.0; charset=utf-8"
    text = b"# TYPE a counter\na_total 1\n# EOF\n"
    target.routes["/metrics"] = reply(body=gzip.compress(text), content_type=om,
                                      headers=(("Content-Encoding", "gzip"),))
    # Go's gzip.Reader reads members one after another.
    target.routes["/two"] = reply(body=gzip.compress(b"a 1\n") + gzip.compress(b"b 2\n"),
                                  headers=(("Content-Encoding", "gzip"),))
    f = fetcher(tmp_path)
    assert f.fetch(target.url, 5.0) == (text, om)
    assert f.fetch(target.url.replace("/metrics", "/two"), 5.0) == (b"a 1\nb 2\n", TEXT)


def test_other_content_encodings_are_passed_as_sent(tmp_path: Path, target: Target) -> None:
    # Prometheus only undoes gzip; anything else reaches the parser as it came.
    import zlib
    data = zlib.compress(BODY)
    target.routes["/metrics"] = reply(body=data, headers=(("Content-Encoding", "deflate"),))
    assert fetcher(tmp_path).fetch(target.url, 5.0) == (data, TEXT)


@pytest.mark.parametrize("body, error", [
    (b"", "EOF"),
    (BODY, "gzip: invalid header"),
    (gzip.compress(BODY * 50)[:-12], "unexpected EOF"),
    (gzip.compress(BODY)[:-8] + b"\0\0\0\0" + gzip.compress(BODY)[-4:], "gzip: invalid checksum"),
])
def test_broken_gzip_body(tmp_path: Path, target: Target, body: bytes, error: str) -> None:
    target.routes["/metrics"] = reply(body=body, headers=(("Content-Encoding", "gzip"),))
    assert scrape_error(fetcher(tmp_path), target.url) == error


def test_body_size_limit_plain(tmp_path: Path, target: Target) -> None:
    assert len(BODY) == 21
    assert fetcher(tmp_path, "body_size_limit: 22B").fetch(target.url, 5.0) == (BODY, TEXT)
    # Prometheus reads at most the limit and fails when it got that much: a body of
    # exactly the limit fails too.
    for limit in ("21B", "1B"):
        f = fetcher(tmp_path, f"body_size_limit: {limit}")
        assert scrape_error(f, target.url) == "body size limit exceeded"
    # 0 is no limit.
    assert fetcher(tmp_path, "body_size_limit: 0").fetch(target.url, 5.0) == (BODY, TEXT)


def test_body_size_limit_applies_to_the_decompressed_body(tmp_path: Path,
                                                          target: Target) -> None:
    text = b"a 1\n" * 100
    packed = gzip.compress(text)
    assert len(packed) < 100
    target.routes["/metrics"] = reply(body=packed, headers=(("Content-Encoding", "gzip"),))
    assert fetcher(tmp_path, "body_size_limit: 401B").fetch(target.url, 5.0) == (text, TEXT)
    for limit in ("400B", "399B", "100B"):
        f = fetcher(tmp_path, f"body_size_limit: {limit}")
        assert scrape_error(f, target.url) == "body size limit exceeded"


def test_gzip_bomb_stops_at_the_limit(tmp_path: Path, target: Target) -> None:
    packed = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    assert len(packed) < 100_000
    target.routes["/metrics"] = reply(body=packed, headers=(("Content-Encoding", "gzip"),))
    start = time.monotonic()
    assert scrape_error(fetcher(tmp_path, "body_size_limit: 1MiB"), target.url) == \
        "body size limit exceeded"
    assert time.monotonic() - start < 1.0


def test_short_body_is_unexpected_eof(tmp_path: Path, target: Target) -> None:
    def short(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", TEXT)
        h.send_header("Content-Length", "100")
        h.end_headers()
        h.wfile.write(BODY)
        h.close_connection = True
    target.routes["/metrics"] = short
    assert scrape_error(fetcher(tmp_path), target.url) == "unexpected EOF"


# ---------------------------------------------------------------- auth


def test_basic_auth_password(tmp_path: Path, target: Target) -> None:
    f = fetcher(tmp_path, "basic_auth: {username: prom, password: 'pässwörd'}")
    f.fetch(target.url, 5.0)
    assert target.headers()["Authorization"] == basic("prom", "pässwörd")  # UTF-8, as Go
    f = fetcher(tmp_path, "basic_auth: {username: prom}")
    f.fetch(target.url, 5.0)
    assert target.headers()["Authorization"] == "Basic cHJvbTo="
    fetcher(tmp_path, "basic_auth: {}").fetch(target.url, 5.0)
    assert target.headers()["Authorization"] == "Basic Og=="  # as Prometheus sends it


def test_basic_auth_password_file_is_read_at_each_scrape(tmp_path: Path,
                                                         target: Target) -> None:
    (tmp_path / "pw").write_text("first secret\n")
    f = fetcher(tmp_path, "basic_auth: {username: prom, password_file: pw}")
    f.fetch(target.url, 5.0)
    assert target.headers()["Authorization"] == basic("prom", "first secret")
    (tmp_path / "pw").write_text("  second\n\n")
    f.fetch(target.url, 5.0)
    assert target.headers()["Authorization"] == basic("prom", "second")
    os.remove(tmp_path / "pw")
    assert scrape_error(f, target.url) == (
        f'Get "{target.url}": unable to read basic auth password file {tmp_path}/pw: '
        f'open {tmp_path}/pw: no such file or directory')
    assert len(target.requests) == 2


def test_authorization_credentials(tmp_path: Path, target: Target) -> None:
    fetcher(tmp_path, "authorization: {credentials: tok-1}").fetch(target.url, 5.0)
    assert target.headers()["Authorization"] == "Bearer tok-1"
    fetcher(tmp_path, "authorization: {type: Token, credentials: tok-2}").fetch(target.url, 5.0)
    assert target.headers()["Authorization"] == "Token tok-2"


def test_credentials_are_sent_as_utf8_bytes(tmp_path: Path, target: Target) -> None:
    fetcher(tmp_path, "authorization: {credentials: tökén→}").fetch(target.url, 5.0)
    # http.server decodes header bytes as latin-1.
    assert target.headers()["Authorization"].encode("latin-1").decode() == "Bearer tökén→"


def test_invalid_credentials_are_not_shown(tmp_path: Path, target: Target) -> None:
    f = fetcher(tmp_path, 'authorization: {credentials: "top\\nsecret"}')
    assert f._authorization.credentials == "top\nsecret"
    assert scrape_error(f, target.url) == \
        f'Get "{target.url}": net/http: invalid header field value for "Authorization"'
    assert target.requests == []


def test_authorization_credentials_file_is_read_at_each_scrape(tmp_path: Path,
                                                               target: Target) -> None:
    (tmp_path / "cred").write_text("one\n")
    f = fetcher(tmp_path, "authorization: {type: Custom, credentials_file: cred}")
    f.fetch(target.url, 5.0)
    assert target.headers()["Authorization"] == "Custom one"
    (tmp_path / "cred").write_text("two")
    f.fetch(target.url, 5.0)
    assert target.headers()["Authorization"] == "Custom two"
    os.remove(tmp_path / "cred")
    assert scrape_error(f, target.url) == (
        f'Get "{target.url}": unable to read authorization credentials file {tmp_path}/cred: '
        f'open {tmp_path}/cred: no such file or directory')


def test_bearer_token_and_bearer_token_file(tmp_path: Path, target: Target) -> None:
    fetcher(tmp_path, "bearer_token: abc").fetch(target.url, 5.0)
    assert target.headers()["Authorization"] == "Bearer abc"
    (tmp_path / "token").write_text("from-file\n")
    f = fetcher(tmp_path, "bearer_token_file: token")
    f.fetch(target.url, 5.0)
    assert target.headers()["Authorization"] == "Bearer from-file"
    (tmp_path / "token").write_text("rotated\n")
    f.fetch(target.url, 5.0)
    assert target.headers()["Authorization"] == "Bearer rotated"


def test_auth_is_sent_after_a_redirect_to_another_host(tmp_path: Path, target: Target) -> None:
    # Prometheus sets the header on every request it makes, the redirected one included.
    other = Target()
    try:
        target.routes["/metrics"] = redirect(f"http://localhost:{other.port}/metrics")
        f = fetcher(tmp_path, "basic_auth: {username: u, password: p}")
        assert f.fetch(target.url, 5.0) == (BODY, TEXT)
        assert other.headers()["Authorization"] == basic("u", "p")
        assert other.headers()["Accept"] == PROMETHEUS_ACCEPT
    finally:
        other.stop()


# ---------------------------------------------------------------- TLS


@pytest.fixture
def tls_target(pki: PKI) -> Iterator[Target]:
    server = Target(pki.server_context())
    yield server
    server.stop()


def test_https_with_ca_file(tmp_path: Path, pki: PKI, tls_target: Target) -> None:
    f = fetcher(tmp_path, f"tls_config: {{ca_file: {pki.ca_file}}}")
    assert tls_target.url.startswith("https://127.0.0.1:")
    assert f.fetch(tls_target.url, 5.0) == (BODY, TEXT)
    assert tls_target.headers()["Accept"] == PROMETHEUS_ACCEPT


def test_https_without_ca_file_fails_on_the_certificate(tmp_path: Path,
                                                        tls_target: Target) -> None:
    assert scrape_error(fetcher(tmp_path), tls_target.url) == \
        f'Get "{tls_target.url}": x509: certificate signed by unknown authority'
    assert tls_target.requests == []


def test_https_insecure_skip_verify(tmp_path: Path, tls_target: Target) -> None:
    f = fetcher(tmp_path, "tls_config: {insecure_skip_verify: true}")
    assert f.fetch(tls_target.url, 5.0) == (BODY, TEXT)


def test_client_certificate(tmp_path: Path, pki: PKI) -> None:
    server = Target(pki.server_context(require_client_cert=True))
    try:
        with_cert = fetcher(tmp_path, (
            f"tls_config: {{ca_file: {pki.ca_file}, cert_file: {pki.client_cert}, "
            f"key_file: {pki.client_key}}}"))
        assert with_cert.fetch(server.url, 5.0) == (BODY, TEXT)
        without = fetcher(tmp_path, f"tls_config: {{ca_file: {pki.ca_file}}}")
        assert scrape_error(without, server.url) == \
            f'Get "{server.url}": remote error: tls: certificate required'
        assert len(server.requests) == 1
    finally:
        server.stop()


def test_tls_server_name(tmp_path: Path, pki: PKI) -> None:
    server = Target(pki.server_context(named=True))  # certificate for SERVER_NAME only
    try:
        f = fetcher(tmp_path, f"tls_config: {{ca_file: {pki.ca_file}, server_name: {SERVER_NAME}}}")
        assert f.fetch(server.url, 5.0) == (BODY, TEXT)
        assert server.server_names == [SERVER_NAME]
        other = fetcher(tmp_path, f"tls_config: {{ca_file: {pki.ca_file}, server_name: a.test}}")
        assert scrape_error(other, server.url) == \
            f'Get "{server.url}": x509: certificate is valid for {SERVER_NAME}, not a.test'
        plain = fetcher(tmp_path, f"tls_config: {{ca_file: {pki.ca_file}}}")
        assert scrape_error(plain, server.url) == (
            f'Get "{server.url}": x509: cannot validate certificate for 127.0.0.1 because it '
            "doesn't contain any IP SANs")
        assert len(server.requests) == 1
    finally:
        server.stop()


def test_tls_host_not_in_the_certificate(tmp_path: Path, pki: PKI, tls_target: Target) -> None:
    url = f"https://localhost:{tls_target.port}/metrics"  # the certificate has 127.0.0.1 only
    f = fetcher(tmp_path, f"tls_config: {{ca_file: {pki.ca_file}}}")
    assert scrape_error(f, url) == \
        f'Get "{url}": x509: certificate is not valid for any names, but wanted to match localhost'


def test_tls_min_version(tmp_path: Path, pki: PKI) -> None:
    server = Target(pki.server_context(max_version=ssl.TLSVersion.TLSv1_2))
    try:
        ok = fetcher(tmp_path, f"tls_config: {{ca_file: {pki.ca_file}, max_version: TLS12}}")
        assert ok.fetch(server.url, 5.0) == (BODY, TEXT)
        f = fetcher(tmp_path, f"tls_config: {{ca_file: {pki.ca_file}, min_version: TLS13}}")
        assert scrape_error(f, server.url) == \
            f'Get "{server.url}": remote error: tls: protocol version not supported'
    finally:
        server.stop()


def test_https_to_a_plain_http_server(tmp_path: Path, target: Target) -> None:
    url = target.url.replace("http://", "https://")
    assert scrape_error(fetcher(tmp_path), url) == \
        f'Get "{url}": tls: first record does not look like a TLS handshake'


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("status, text", [
    (500, "500 Internal Server Error"), (404, "404 Not Found"), (401, "401 Unauthorized"),
    (204, "204 No Content"),
])
def test_non_200_status(tmp_path: Path, target: Target, status: int, text: str) -> None:
    target.routes["/metrics"] = reply(status, b"" if status == 204 else b"oops\n")
    assert scrape_error(fetcher(tmp_path), target.url) == f"server returned HTTP status {text}"


def test_timeout_before_the_headers(tmp_path: Path, target: Target) -> None:
    target.routes["/metrics"] = stall(target, 5.0)
    f = fetcher(tmp_path)
    start = time.monotonic()
    assert scrape_error(f, target.url, 0.5) == f'Get "{target.url}": context deadline exceeded'
    assert 0.45 <= time.monotonic() - start < 1.0


@pytest.mark.parametrize("handler", ["trickle", "stall"])
def test_timeout_while_reading_the_body(tmp_path: Path, target: Target, handler: str) -> None:
    # Each read returns in time (trickle) or the body never comes (stall): the scrape
    # still ends at its deadline. Go reports it without the "Get" prefix here.
    slow = trickle(target, 0.05) if handler == "trickle" else stall(target, 5.0, True)
    target.routes["/slow"] = slow
    f = fetcher(tmp_path)
    start = time.monotonic()
    assert scrape_error(f, target.url.replace("/metrics", "/slow"), 0.5) == \
        "context deadline exceeded"
    assert 0.45 <= time.monotonic() - start < 1.0
    # The connection cut at the deadline is not reused.
    assert f.fetch(target.url, 5.0) == (BODY, TEXT)


def test_timeout_while_reading_a_tls_body(tmp_path: Path, pki: PKI,
                                          tls_target: Target) -> None:
    tls_target.routes["/slow"] = trickle(tls_target, 0.05)
    f = fetcher(tmp_path, f"tls_config: {{ca_file: {pki.ca_file}}}")
    start = time.monotonic()
    assert scrape_error(f, tls_target.url.replace("/metrics", "/slow"), 0.5) == \
        "context deadline exceeded"
    assert 0.45 <= time.monotonic() - start < 1.0
    assert f.fetch(tls_target.url, 5.0) == (BODY, TEXT)


def test_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/metrics"
    assert scrape_error(fetcher(tmp_path), url) == \
        f'Get "{url}": dial tcp 127.0.0.1:{port}: connect: connection refused'


def test_closed_without_an_answer(tmp_path: Path, target: Target) -> None:
    def hang_up(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
    target.routes["/metrics"] = hang_up
    assert scrape_error(fetcher(tmp_path), target.url) == f'Get "{target.url}": EOF'


# ---------------------------------------------------------------- redirects


def test_redirect_is_followed(tmp_path: Path, target: Target) -> None:
    target.routes["/old"] = redirect("/metrics")
    url = target.url.replace("/metrics", "/old")
    assert fetcher(tmp_path).fetch(url, 5.0) == (BODY, TEXT)
    assert [path for path, _, _ in target.requests] == ["/old", "/metrics"]
    assert target.headers()["X-Prometheus-Scrape-Timeout-Seconds"] == "5"


def test_redirect_not_followed(tmp_path: Path, target: Target) -> None:
    target.routes["/old"] = redirect("/metrics")
    f = fetcher(tmp_path, "follow_redirects: false")
    assert scrape_error(f, target.url.replace("/metrics", "/old")) == \
        "server returned HTTP status 302 Found"
    assert [path for path, _, _ in target.requests] == ["/old"]


def test_at_most_ten_requests(tmp_path: Path, target: Target) -> None:
    # Go's client makes 10 requests; the 10th answering a redirect is an error naming
    # that redirect's Location.
    for i in range(1, 11):
        target.routes[f"/c{i}"] = redirect(f"/c{i + 1}")
    target.routes["/c10"] = reply()
    target.routes["/c11"] = reply()
    f = fetcher(tmp_path)
    base = target.url.replace("/metrics", "")
    assert f.fetch(f"{base}/c2", 5.0) == (BODY, TEXT)  # 8 redirects, 9 requests
    assert f.fetch(f"{base}/c1", 5.0) == (BODY, TEXT)  # 9 redirects, 10 requests
    target.requests.clear()
    target.routes["/c0"] = redirect("/c1")
    assert scrape_error(f, f"{base}/c0") == 'Get "/c10": stopped after 10 redirects'
    assert len(target.requests) == 10
    target.routes["/loop"] = redirect("/loop")
    assert scrape_error(f, f"{base}/loop") == 'Get "/loop": stopped after 10 redirects'


# ---------------------------------------------------------------- no secrets in errors


def test_credentials_never_appear_in_errors(tmp_path: Path, pki: PKI, target: Target,
                                            tls_target: Target) -> None:
    secret = "hunter2-s3cret"
    (tmp_path / "pw").write_text(secret)
    jobs = [
        f"basic_auth: {{username: prom, password: {secret}}}",
        "basic_auth: {username: prom, password_file: pw}",
        f"authorization: {{credentials: {secret}}}",
        f"bearer_token: {secret}",
    ]
    target.routes["/500"] = reply(500, secret.encode())
    target.routes["/302"] = redirect(f"/{secret}")
    target.routes["/slow"] = trickle(target, 0.05)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{sock.getsockname()[1]}/metrics"
    base = target.url.replace("/metrics", "")
    for job in jobs:
        f = fetcher(tmp_path, job + "\nfollow_redirects: false\nbody_size_limit: 5B")
        errors = [
            scrape_error(f, f"{base}/500"),
            scrape_error(f, f"{base}/302"),
            scrape_error(f, f"{base}/metrics"),
            scrape_error(f, f"{base}/slow", 0.2),
            scrape_error(f, refused),
            scrape_error(f, tls_target.url),
        ]
        # The secret was sent (as is, or base64 in basic auth) and is in no error text.
        sent = target.headers()["Authorization"].split(" ", 1)[1]
        assert sent in (secret, base64.b64encode(f"prom:{secret}".encode()).decode())
        for error in errors:
            assert secret not in error
            assert sent not in error
        assert errors[:3] == ["server returned HTTP status 500 Internal Server Error",
                              "server returned HTTP status 302 Found",
                              "body size limit exceeded"]
