"""A scriptable Prometheus remote write receiver for tests.

    rx = RemoteWriteReceiver(responses=[500, 204])   # first request fails, then accepted
    storage = RemoteWriteStorage(rx.url)
    ...
    rx.requests      # every request: headers, decoded series, status answered
    rx.samples()     # (labels, value, ts) of the requests answered 2xx, in arrival order
    rx.violations    # protocol problems seen (missing headers, undecodable bodies)
    rx.stop()

A response is a status code, or `(status, headers)` / `(status, headers, body)`; when the
queue is empty `default` (204, like Prometheus) is answered. `delay(request_number)`
returns seconds to wait before answering. Listens on 127.0.0.1, on a free port.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from clymene.storage.remote_write_pb import decode_write_request, decompress

Response = int | tuple[int, dict[str, str]] | tuple[int, dict[str, str], bytes]

REQUIRED_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


@dataclass
class Request:
    number: int
    path: str
    headers: dict[str, str]
    client: tuple[str, int]
    received: float  # time.monotonic() when the body was read
    body_size: int
    series: list = field(default_factory=list)
    status: int = 0

    @property
    def samples(self) -> list[tuple[tuple[tuple[str, str], ...], float, int]]:
        return [(labels, v, ts) for labels, samples in self.series for v, ts in samples]


class RemoteWriteReceiver:
    def __init__(
        self,
        responses: Iterable[Response] = (),
        delay: Callable[[int], float] | None = None,
        default: Response = 204,
    ) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._responses: list[Response] = list(responses)
        self.delay = delay
        self.default = default
        self.requests: list[Request] = []
        self.violations: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse shows

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                receiver._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/api/v1/write"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    # -- scripting

    def respond(self, *responses: Response) -> None:
        """Queue more scripted responses."""
        with self._lock:
            self._responses.extend(responses)

    # -- the handler

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        headers = {k: v for k, v in handler.headers.items()}
        problems = []
        for name, expected in REQUIRED_HEADERS.items():
            got = handler.headers.get(name)
            if got != expected:
                problems.append(f"header {name}: expected {expected!r}, got {got!r}")
        if not handler.headers.get("User-Agent"):
            problems.append("header User-Agent missing")
        series: list = []
        try:
            series = decode_write_request(decompress(body))
        except Exception as exc:  # any undecodable body is a violation, and a 400
            problems.append(f"body not a snappy WriteRequest: {exc}")
        with self._lock:
            number = len(self.requests)
            request = Request(
                number=number,
                path=handler.path,
                headers=headers,
                client=handler.client_address,
                received=time.monotonic(),
                body_size=len(body),
                series=series,
            )
            self.requests.append(request)
            self.violations.extend(f"request {number}: {p}" for p in problems)
            if problems:
                response: Response = (400, {}, "; ".join(problems).encode())
            elif self._responses:
                response = self._responses.pop(0)
            else:
                response = self.default
        if self.delay is not None:
            time.sleep(self.delay(number))
        if isinstance(response, int):
            status, extra, payload = response, {}, b""
        elif len(response) == 2:
            status, extra, payload = response[0], response[1], b""
        else:
            status, extra, payload = response  # type: ignore[misc]
        with self._changed:
            request.status = status
            self._changed.notify_all()
        try:
            handler.send_response(status)
            for key, value in extra.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:
            pass  # the client gave up (timeout) before the answer

    # -- reading what came in

    def accepted(self) -> list[Request]:
        """Requests answered with 2xx, in arrival order."""
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def samples(self) -> list[tuple[tuple[tuple[str, str], ...], float, int]]:
        """(labels, value, ts) of every accepted request, in arrival order."""
        return [s for r in self.accepted() for s in r.samples]

    def wait_for(
        self, predicate: Callable[[RemoteWriteReceiver], Any], timeout: float = 10.0
    ) -> Any:
        """Wait until `predicate(self)` is truthy (checked on each answered request);
        return its value or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate(self)
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"receiver condition not met within {timeout} s")
            with self._changed:
                self._changed.wait(min(remaining, 0.1))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
