"""clymene.http1 against a scripted server on loopback: each test's server writes exactly
the bytes of the case (framings, keep-alive, servers closing at awkward moments)."""

from __future__ import annotations

import errno
import http.client
import socket
import threading
import time
from collections.abc import Callable

import pytest

from clymene import http1


class Scripted:
    """A loopback server running `serve(conn, n)` for its n-th accepted connection."""

    def __init__(self, serve: Callable[[socket.socket, int], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.requests: list[bytes] = []
        self._serve = serve
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._one, args=(conn, self.accepted), daemon=True).start()

    def _one(self, conn: socket.socket, n: int) -> None:
        with conn:
            try:
                self._serve(conn, n)
            except OSError:
                pass

    def read_request(self, conn: socket.socket) -> bytes:
        """One request (head and Content-Length body); b"" when the client closed."""
        data = b""
        while b"\r\n\r\n" not in data:
            more = conn.recv(65536)
            if not more:
                return b""
            data += more
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            body += conn.recv(65536)
        self.requests.append(head + b"\r\n\r\n" + body)
        return data

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def scripted():
    servers: list[Scripted] = []

    def start(serve: Callable[[Scripted, socket.socket, int], None]) -> Scripted:
        holder: list[Scripted] = []
        server = Scripted(lambda conn, n: serve(holder[0], conn, n))
        holder.append(server)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _get(pool: http1.Pool, path: str = "/m", timeout: float = 5.0) -> tuple[int, dict, bytes]:
    head = http1.request_head("GET", path, pool.host, pool.port, {"Accept": "*/*"})
    deadline = time.monotonic() + timeout
    with pool.request("GET", head, b"", timeout, deadline) as resp:
        return resp.status, resp.headers, resp.read(deadline)


def test_request_head_bytes():
    assert http1.request_head("GET", "/metrics?a=1", "127.0.0.1", 9100,
                              {"Accept": "text/plain", "Authorization": "Bearer ü".encode()}) == (
        b"GET /metrics?a=1 HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nAccept: text/plain\r\n"
        b"Authorization: Bearer \xc3\xbc\r\n\r\n")
    assert http1.request_head("POST", "/w", "example.test", 80, {"X": "é"}, 3) == (
        b"POST /w HTTP/1.1\r\nHost: example.test\r\nX: \xe9\r\nContent-Length: 3\r\n\r\n")
    assert http1.request_head("GET", "/", "::1", 8080, {}).startswith(
        b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n")


def test_framings_keep_one_connection(scripted):
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 3\nX-A: 1\nX-A: 2\nX-Fold: a\n b\n\nbare",
    ]

    def serve(server, conn, n):
        for answer in answers:
            if not server.read_request(conn):
                return
            for i in range(0, len(answer), 7):  # in small pieces
                conn.sendall(answer[i:i + 7])
                time.sleep(0.001)

    server = scripted(serve)
    pool = http1.Pool("127.0.0.1", server.port)
    assert _get(pool)[::2] == (200, b"hello")
    assert _get(pool)[::2] == (200, b"abc0123456789abcdef")
    assert _get(pool)[::2] == (200, b"ok")
    assert _get(pool)[::2] == (204, b"")
    status, headers, body = _get(pool)
    assert (status, body) == (200, b"bar")
    assert headers["x-a"] == "1, 2" and headers["x-fold"] == "a b"
    assert server.accepted == 1


def test_body_until_close_is_not_kept(scripted):
    def serve(server, conn, n):
        server.read_request(conn)
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nall of it")

    server = scripted(serve)
    pool = http1.Pool("127.0.0.1", server.port)
    assert _get(pool)[::2] == (200, b"all of it")
    assert _get(pool)[::2] == (200, b"all of it")
    assert server.accepted == 2


def test_connection_close_is_honoured(scripted):
    def serve(server, conn, n):
        while server.read_request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx")

    server = scripted(serve)
    pool = http1.Pool("127.0.0.1", server.port)
    for _ in range(3):
        assert _get(pool)[::2] == (200, b"x")
    assert server.accepted == 3


def test_a_kept_connection_closed_while_idle_is_replaced(scripted):
    def serve(server, conn, n):
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + str(n).encode())
        # ... and close the kept connection (an idle timeout on the server)

    server = scripted(serve)
    pool = http1.Pool("127.0.0.1", server.port)
    assert _get(pool)[2] == b"1"
    time.sleep(0.1)
    assert _get(pool)[2] == b"2"


def test_a_get_on_a_connection_closed_as_it_is_reused_is_sent_again(scripted):
    # The server reads the second request and closes without answering (its idle timer
    # fired just then): Go's client sends a GET again on a new connection, once.
    def serve(server, conn, n):
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + str(n).encode())
        if n == 1:
            server.read_request(conn)
            conn.shutdown(socket.SHUT_RDWR)

    server = scripted(serve)
    pool = http1.Pool("127.0.0.1", server.port)
    assert _get(pool)[2] == b"1"
    assert _get(pool)[2] == b"2"
    assert len(server.requests) == 3


def test_a_post_is_not_sent_twice(scripted):
    def serve(server, conn, n):
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
        server.read_request(conn)
        conn.shutdown(socket.SHUT_RDWR)

    server = scripted(serve)
    pool = http1.Pool("127.0.0.1", server.port)
    body = b"x" * 100_000  # sent in a write of its own
    head = http1.request_head("POST", "/w", pool.host, pool.port, {}, len(body))
    with pool.request("POST", head, body, 5, time.monotonic() + 5) as resp:
        assert resp.status == 204
    assert server.requests[0].endswith(b"\r\n\r\n" + body)
    with pytest.raises(http.client.RemoteDisconnected):
        pool.request("POST", head, body, 5, time.monotonic() + 5)
    assert len(server.requests) == 2


@pytest.mark.parametrize("answer,error", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", http.client.IncompleteRead),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", http.client.HTTPException),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", http.client.IncompleteRead),
    (b"SSH-2.0-OpenSSH\r\n\r\n", http.client.BadStatusLine),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", http.client.HTTPException),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", http.client.HTTPException),
    (b"HTTP/1.1 200 OK\r\nContent", http.client.IncompleteRead),
    (b"", http.client.RemoteDisconnected),
])
def test_malformed_answers(scripted, answer, error):
    def serve(server, conn, n):
        server.read_request(conn)
        conn.sendall(answer)

    server = scripted(serve)
    with pytest.raises(error):
        _get(http1.Pool("127.0.0.1", server.port))


def test_the_deadline_bounds_a_trickling_answer(scripted):
    def serve(server, conn, n):
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            conn.sendall(b"x")
            time.sleep(0.05)

    server = scripted(serve)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        _get(http1.Pool("127.0.0.1", server.port), timeout=0.5)
    assert 0.45 < time.monotonic() - start < 1.5


def test_connection_refused_is_a_connect_error():
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(http1.ConnectError) as exc:
        _get(http1.Pool("127.0.0.1", port))
    assert exc.value.errno == errno.ECONNREFUSED


def test_threads_share_a_pool(scripted):
    def serve(server, conn, n):
        while server.read_request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server = scripted(serve)
    pool = http1.Pool("127.0.0.1", server.port, maxsize=4)
    results: list[bytes] = []

    def work():
        for _ in range(50):
            results.append(_get(pool)[2])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [b"ok"] * 200
    assert server.accepted <= 4 + 4  # connections are kept, not one per request


def test_ipv6_loopback_and_the_deadline_before_connecting():
    sock = socket.create_server(("::1", 0), family=socket.AF_INET6)
    port = sock.getsockname()[1]

    def serve():
        conn, _ = sock.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: " + b"%d" % len(data)
                         + b"\r\n\r\n" + data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        status, _, echoed = _get(http1.Pool("::1", port))
        assert status == 200 and f"Host: [::1]:{port}\r\n".encode() in echoed
    finally:
        sock.close()
    with pytest.raises(TimeoutError):
        http1.Pool("::1", port).request("GET", b"", b"", 5, time.monotonic() - 1)


def test_pools_by_url():
    pools = http1.Pools(maxsize=3, max_hosts=2)
    a, target = pools.for_url("http://127.0.0.1:9100/metrics?x=a b")
    assert (a.host, a.port, a.maxsize, target) == ("127.0.0.1", 9100, 3, "/metrics?x=a%20b")
    assert pools.for_url("http://127.0.0.1:9100/other")[0] is a  # one pool per host:port
    v6, _ = pools.for_url("http://[::1]/m")
    assert (v6.host, v6.port) == ("::1", 80)
    assert pools.for_url("http://127.0.0.1:9101/m")[0] is not a  # past max_hosts: anew
    assert pools.for_url("http://127.0.0.1:9100/metrics?x=a b")[0] is not a
