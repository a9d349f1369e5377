"""A scriptable scrape target for tests: serves a body, a status, or hangs; records scrapes.

    exp = Exporter(body=b"a 1\n")      # 127.0.0.1:free port, path /metrics
    exp.address                         # "127.0.0.1:PORT" for static_configs
    exp.status = 500; exp.body = b"garbage {"; exp.delay = 5.0
    exp.scrapes                         # (start, end, headers) of every request, monotonic
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Exporter:
    def __init__(self, body: bytes = b"", status: int = 200, delay: float = 0.0,
                 content_type: str = "text/plain; version=0.0.4",
                 delay_fn: Callable[[], float] | None = None) -> None:
        self.body = body
        self.status = status
        self.delay = delay
        self.delay_fn = delay_fn
        self.content_type = content_type
        self.scrapes: list[tuple[float, float, dict[str, str]]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                start = time.monotonic()
                delay = owner.delay_fn() if owner.delay_fn else owner.delay
                if delay:
                    time.sleep(delay)
                body = owner.body
                try:
                    self.send_response(owner.status)
                    self.send_header("Content-Type", owner.content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass
                with owner._lock:
                    owner.scrapes.append((start, time.monotonic(), dict(self.headers.items())))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
