"""A Loki push API receiver for tests: decodes the real wire format and keeps Loki's
per-stream ordering rule.

    rx = LokiReceiver()            # 127.0.0.1, free port; rx.url is the push URL
    rx.down = True                 # answer 503 until set back to False
    rx.entries[(tenant, labels)]   # accepted (ts_ns, line) per stream, in order
    rx.rejected / rx.duplicates    # out-of-order entries refused / exact repeats ignored
    rx.stop()

Bodies: `application/x-protobuf` (snappy block-compressed logproto.PushRequest) or
`application/json` (optionally gzip `Content-Encoding`). Ordering, as Loki with
unordered writes off: per stream, an entry older than the stream's newest is refused
("entry out of order"), an entry equal in time and line to the newest is a duplicate
and silently ignored; the rest of the request is still accepted and the answer is 400
when anything was refused, else 204.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from clymene.logs import loki_pb
from clymene.logs.push import PushDecodeError, decode_push


class LokiReceiver:
    def __init__(self, responses: list[int] | None = None) -> None:
        self.entries: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
        self.requests: list[dict] = []
        self.responses = list(responses or [])
        self.rejected = 0
        self.duplicates = 0
        self.down = False
        self.violations: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                status, text = receiver._handle(self.path, dict(self.headers), body)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/loki/api/v1/push"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        with self._lock:
            if path != "/loki/api/v1/push":
                return 404, "not found"
            if self.down:
                return 503, "down"
            if self.responses:
                status = self.responses.pop(0)
                if status != 204:
                    self.requests.append({"status": status, "headers": headers})
                    return status, "scripted"
            try:
                streams = decode_push(body, headers.get("Content-Type", ""),
                                      headers.get("Content-Encoding", ""))
            except PushDecodeError as exc:
                self.violations.append(str(exc))
                return exc.status, str(exc)
            tenant = headers.get("X-Scope-OrgID", "")
            for labels, _ in streams:
                try:
                    pairs = loki_pb.parse_labels(labels)
                except ValueError as exc:
                    self.violations.append(str(exc))
                    return 400, str(exc)
                if not pairs:  # Loki: the whole request fails
                    self.violations.append("stream without labels")
                    return 400, "error at least one label pair is required per stream"
            refused = []
            for labels, entries in streams:
                key = (tenant, loki_pb.format_labels(dict(loki_pb.parse_labels(labels))))
                stored = self.entries[key]
                for ts, line in entries:
                    if stored:
                        last_ts, last_line = stored[-1]
                        if ts < last_ts:
                            self.rejected += 1
                            refused.append(f"entry with timestamp {ts} ignored, reason: "
                                           f"'entry out of order' for stream: {labels}")
                            continue
                        if ts == last_ts and line == last_line:
                            self.duplicates += 1
                            continue
                    stored.append((ts, line))
            status = 400 if refused else 204
            self.requests.append({"status": status, "headers": headers,
                                  "entries": sum(len(e) for _, e in streams)})
            return status, "\n".join(refused[:10])

    def lines(self, tenant: str = "") -> dict[str, list[tuple[int, str]]]:
        with self._lock:
            return {k[1]: list(v) for k, v in self.entries.items() if k[0] == tenant}

    def count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self.entries.values())

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
