"""A remote-write sink that only counts: POST a snappy `WriteRequest` -> 204.

    python -m bench.sink --ready-file F

Counts requests, bytes, series and samples, and staleness markers, and answers 204.
`GET /count` answers the counts as JSON. When it listens, the ready file gets
`{"port": P}`. A body that is not a valid snappy WriteRequest gets 400 and is counted
in `errors`.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cramjam

from bench.targets import write_ready_file

# A Sample's value field (tag 1, 64-bit) holding Prometheus' staleness NaN 0x7ff0000000000002.
STALE_VALUE = b"\x09\x02\x00\x00\x00\x00\x00\xf0\x7f"


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def count_samples(data: bytes) -> tuple[int, int]:
    """(series, samples) in a decompressed WriteRequest, without decoding labels.

    Every field of WriteRequest and TimeSeries is length-delimited, so the walk only
    reads tags and lengths: TimeSeries is field 1 of WriteRequest, Sample field 2 of it.
    """
    series = samples = 0
    pos, end = 0, len(data)
    while pos < end:
        tag = data[pos]
        if tag & 7 != 2:
            raise ValueError(f"unexpected wire type {tag & 7} at offset {pos}")
        n = data[pos + 1]
        if n < 0x80:
            pos += 2
        else:
            n, pos = _varint(data, pos + 1)
        stop = pos + n
        if stop > end:
            raise ValueError("truncated message")
        if tag == 0x0A:
            series += 1
            p = pos
            while p < stop:
                t = data[p]
                if t & 7 != 2:
                    raise ValueError(f"unexpected wire type {t & 7} in a TimeSeries")
                ln = data[p + 1]
                if ln < 0x80:
                    p += 2 + ln
                else:
                    ln, q = _varint(data, p + 1)
                    p = q + ln
                if t == 0x12:
                    samples += 1
            if p != stop:
                raise ValueError("truncated TimeSeries")
        pos = stop
    return series, samples


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.bytes = 0
        self.series = 0
        self.samples = 0
        self.stale = 0
        self.errors = 0

    def as_dict(self) -> dict[str, int]:
        with self.lock:
            return {"requests": self.requests, "bytes": self.bytes, "series": self.series,
                    "samples": self.samples, "stale_markers": self.stale,
                    "errors": self.errors}


def make_handler(counts: Counts) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as remote-write clients expect

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def _answer(self, code: int, payload: bytes = b"", ctype: str = "text/plain") -> None:
            self.send_response(code)
            if code != 204:
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload and code != 204:
                self.wfile.write(payload)

        def do_GET(self) -> None:
            if self.path.startswith("/count"):
                self._answer(200, json.dumps(counts.as_dict()).encode(), "application/json")
            else:
                self._answer(200, b"ok\n")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                data = bytes(cramjam.snappy.decompress_raw(raw))
                series, samples = count_samples(data)
            except Exception as exc:  # noqa: BLE001 - any bad body is the client's error
                with counts.lock:
                    counts.errors += 1
                self._answer(400, f"bad write request: {exc}\n".encode())
                return
            stale = data.count(STALE_VALUE)
            with counts.lock:
                counts.requests += 1
                counts.bytes += length
                counts.series += series
                counts.samples += samples
                counts.stale += stale
            self._answer(204)

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sink", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ready-file", required=True)
    args = p.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(Counts()))
    server.daemon_threads = True
    write_ready_file(args.ready_file, {"port": server.server_address[1]})
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
