"""A lean HTTP/1.1 client for plain http:// on the hot path: scrapes and remote write.

Each scrape makes two requests (the GET of the target, the POST of its samples). Through
urllib3 and http.client a request costs more CPU than parsing and encoding the samples
(header parsing alone goes through the email package); here a request is one `sendall`
of bytes built once per URL and headers, and the answer is read with bytes methods
(bench/RESULTS.md has the figures). Only plain http:// without a proxy comes here:
HTTPS, proxies and redirects stay with urllib3 and requests.

A `Pool` keeps the idle connections of one host:port. A kept connection that the server
closed meanwhile is noticed before it is used (as urllib3 does); a GET that still fails on
a reused connection before any byte of the answer arrived is sent once more on a new
one, as Go's client does for idempotent requests.

Errors are the exceptions urllib3 and http.client users know, so callers map them to
texts as before: `ConnectError` (an OSError with the errno of connect) while connecting,
`TimeoutError` at the deadline, `http.client.RemoteDisconnected` when the server closed
without answering, `http.client.IncompleteRead` for a short body and
`http.client.HTTPException` for an answer that is not HTTP/1.x.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Iterator

import urllib3

MAX_HEAD = 1 << 20  # Go's DefaultMaxHeaderBytes
_READ = 65536
_NO_BODY = frozenset((204, 304))


class ConnectError(OSError):
    """The connection could not be made; errno and strerror are the socket's."""


class Response:
    """A status, headers (lower-cased names; repeated ones joined by ", ") and a body to
    be read with `chunks()` or `read()`; `close()` hands the connection back to its
    pool when the body was read to the end and the server keeps it open."""

    __slots__ = ("status", "reason", "headers", "_conn", "_pool", "_left", "_chunked",
                 "_done", "_keep")

    def __init__(self, status: int, reason: str, headers: dict[str, str],
                 conn: _Connection, pool: Pool, method: str, keep: bool) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self._conn = conn
        self._pool = pool
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._left = -1  # bytes of the body still to come; -1: until the server closes
        if method == "HEAD" or status in _NO_BODY:
            self._left = 0
        elif not self._chunked:
            length = headers.get("content-length")
            if length is not None:
                if not length.isdigit():
                    raise http.client.HTTPException(f"bad Content-Length {length!r}")
                self._left = int(length)
        self._keep = keep and (self._chunked or self._left >= 0)
        self._done = self._left == 0 and not self._chunked

    def chunks(self, deadline: float) -> Iterator[bytes]:
        """The body as sent (Content-Encoding not undone), piece by piece."""
        conn = self._conn
        if self._chunked:
            yield from self._dechunk(deadline)
        elif self._left >= 0:
            while self._left:
                piece = conn.take(min(self._left, _READ), deadline)
                if not piece:
                    raise http.client.IncompleteRead(b"", self._left)
                self._left -= len(piece)
                yield piece
        else:
            while True:
                piece = conn.take(_READ, deadline)
                if not piece:
                    break
                yield piece
        self._done = True

    def _dechunk(self, deadline: float) -> Iterator[bytes]:
        conn = self._conn
        while True:
            line = conn.line(deadline)
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise http.client.HTTPException("malformed chunked encoding") from None
            if size == 0:
                while conn.line(deadline):  # trailers, up to the blank line
                    pass
                return
            while size:
                piece = conn.take(min(size, _READ), deadline)
                if not piece:
                    raise http.client.IncompleteRead(b"", size)
                size -= len(piece)
                yield piece
            if conn.line(deadline):
                raise http.client.HTTPException("malformed chunked encoding")

    def read(self, deadline: float) -> bytes:
        return b"".join(self.chunks(deadline))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._done and self._keep:
            self._pool.put(conn)
        else:
            conn.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Connection:
    """A socket and what was read from it but not yet used."""

    __slots__ = ("sock", "buf")

    def __init__(self, host: str, port: int, timeout: float) -> None:
        try:
            self.sock = socket.create_connection((host, port), timeout)
        except (TimeoutError, socket.gaierror):
            raise
        except OSError as exc:
            raise ConnectError(exc.errno, exc.strerror) from exc
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def dropped(self) -> bool:
        """Whether the server closed (or wrote unasked) while the connection was idle."""
        try:
            self.sock.settimeout(0)
            self.sock.recv(1, socket.MSG_PEEK)  # b"" (closed) or bytes nobody asked for
            return True
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _recv(self, deadline: float) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        self.sock.settimeout(left)
        return self.sock.recv(_READ)

    def take(self, n: int, deadline: float) -> bytes:
        """Up to n bytes (at least one; b"" when the server closed)."""
        if not self.buf:
            data = self._recv(deadline)
            if len(data) <= n:
                return data
            self.buf = data[n:]
            return data[:n]
        piece, self.buf = self.buf[:n], self.buf[n:]
        return piece

    def line(self, deadline: float) -> bytes:
        """One line without its line end; IncompleteRead if the server closed first."""
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                line, self.buf = self.buf[:end], self.buf[end + 1:]
                return line[:-1] if line.endswith(b"\r") else line
            if len(self.buf) > MAX_HEAD:
                raise http.client.LineTooLong("chunk size")
            more = self._recv(deadline)
            if not more:
                raise http.client.IncompleteRead(self.buf)
            self.buf += more

    def head(self, deadline: float) -> list[bytes]:
        """The lines of the status line and headers; RemoteDisconnected when the server
        closed before sending anything."""
        while True:
            end = self.buf.find(b"\n\r\n")
            alt = self.buf.find(b"\n\n")
            if alt >= 0 and (end < 0 or alt < end):
                head, self.buf = self.buf[:alt], self.buf[alt + 2:]
                break
            if end >= 0:
                head, self.buf = self.buf[:end], self.buf[end + 3:]
                break
            if len(self.buf) > MAX_HEAD:
                raise http.client.LineTooLong("header line")
            more = self._recv(deadline)
            if not more:
                if self.buf:
                    raise http.client.IncompleteRead(self.buf)
                raise http.client.RemoteDisconnected("Remote end closed connection without response")
            self.buf += more
        return [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Pool:
    """The kept-alive connections to one host:port (at most `maxsize` idle ones)."""

    def __init__(self, host: str, port: int, maxsize: int = 2) -> None:
        self.host = host
        self.port = port
        self.maxsize = maxsize
        self._idle: list[_Connection] = []

    def close(self) -> None:
        """Close the idle connections (those in use close when their answer is done)."""
        while self._idle:
            try:
                self._idle.pop().close()
            except IndexError:
                break

    def put(self, conn: _Connection) -> None:
        if len(self._idle) < self.maxsize:
            self._idle.append(conn)
        else:
            conn.close()

    def _get(self) -> _Connection | None:
        while True:
            try:
                conn = self._idle.pop()  # atomic: pools are shared by worker threads
            except IndexError:
                return None
            if not conn.dropped():
                return conn
            conn.close()

    def request(self, method: str, head: bytes, body: bytes, timeout: float,
                deadline: float) -> Response:
        """Send a request (`head`: request line and headers, blank line included) and read
        the answer's status and headers. `timeout` bounds the connect, `deadline` (a
        time.monotonic() value) everything."""
        conn = self._get()
        reused = conn is not None
        while True:
            if conn is None:
                left = min(timeout, deadline - time.monotonic())
                if left <= 0:
                    raise TimeoutError("timed out")
                conn = _Connection(self.host, self.port, left)
            try:
                conn.sock.settimeout(max(1e-3, deadline - time.monotonic()))
                conn.sock.sendall(head + body if len(body) < 16384 else head)
                if len(body) >= 16384:
                    conn.sock.sendall(body)
                lines = conn.head(deadline)
                while lines[0].split(b" ", 2)[1:2] == [b"100"]:  # 100 Continue: skip it
                    lines = conn.head(deadline)
                return self._response(lines, conn, method)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if not (reused and method == "GET"):
                    raise
                conn, reused = None, False  # the server closed a kept connection: once more
            except BaseException:
                conn.close()
                raise

    def _response(self, lines: list[bytes], conn: _Connection, method: str) -> Response:
        status_line = lines[0].decode("iso-8859-1")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise http.client.BadStatusLine(status_line)
        headers: dict[str, str] = {}
        name = ""
        for raw in lines[1:]:
            line = raw.decode("iso-8859-1")
            if line[:1] in (" ", "\t") and name:  # an obsolete folded continuation
                headers[name] += " " + line.strip()
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise http.client.HTTPException(f"malformed MIME header line: {line}")
            name = name.lower()
            value = value.strip(" \t")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        connection = headers.get("connection", "").lower()
        keep = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
        return Response(int(code), reason.strip(), headers, conn, self, method, keep)


class Pools:
    """The pools of the hosts a client talks to, and each URL's pool and request target,
    looked up once per URL (parsing a URL costs more than the rest of a request here).
    Past `max_hosts` hosts (targets come and go) everything is closed and starts over."""

    def __init__(self, maxsize: int = 2, max_hosts: int = 100_000) -> None:
        self.maxsize = maxsize
        self.max_hosts = max_hosts
        self._by_host: dict[tuple[str, int], Pool] = {}
        self._by_url: dict[str, tuple[Pool, str]] = {}

    def for_url(self, url: str) -> tuple[Pool, str]:
        """The pool of an http:// URL's host:port and its request target (path and
        query, invalid characters escaped as urllib3 escapes them)."""
        found = self._by_url.get(url)
        if found is None:
            if len(self._by_url) >= self.max_hosts or len(self._by_host) >= self.max_hosts:
                self.close()
            parts = urllib3.util.parse_url(url)
            host = (parts.host or "").strip("[]")  # an IPv6 address without its brackets
            port = parts.port or 80
            pool = self._by_host.get((host, port))
            if pool is None:
                pool = self._by_host[(host, port)] = Pool(host, port, self.maxsize)
            found = self._by_url[url] = (pool, parts.request_uri)
        return found

    def close(self) -> None:
        for pool in self._by_host.values():
            pool.close()
        self._by_host.clear()
        self._by_url.clear()


def request_head(method: str, target: str, host: str, port: int,
                 headers: dict[str, str | bytes], content_length: int | None = None) -> bytes:
    """The bytes of a request line and headers: `target` is the path and query, `Host`
    comes first (without the default port), then `headers` as given (str values as
    Latin-1, as http.client sends them; bytes as they are)."""
    host_header = host if port == 80 else f"{host}:{port}"
    if ":" in host:
        host_header = f"[{host}]" if port == 80 else f"[{host}]:{port}"
    out = [f"{method} {target} HTTP/1.1\r\nHost: {host_header}\r\n".encode("iso-8859-1")]
    for name, value in headers.items():
        out.append(name.encode("iso-8859-1") + b": "
                   + (value if isinstance(value, bytes) else value.encode("iso-8859-1"))
                   + b"\r\n")
    if content_length is not None:
        out.append(b"Content-Length: %d\r\n" % content_length)
    out.append(b"\r\n")
    return b"".join(out)
