"""Samples per second per core of each storage backend's encoder and writer.

    python -m bench.storage_encoders [--series 2000] [--rounds 20]

A batch is one scrape of `--series` node-exporter-like series (name + 6 labels), written
`--rounds` times with new timestamps and values (the series repeat, as scrapes do, so
per-series caches are warm as in a running worker). CPU is this process' own
(time.process_time): for encoders, the encoding alone; for writers, the whole `write()`
(encoding, compression, HTTP or TCP client, response handling) against a sink in a
separate process that answers success and discards the body, so the sink's CPU is not
counted. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

SINK = r'''
import json, socket, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        body = b'{"errors":false}' if "_bulk" in self.path else b"{}"
        code = 200 if ("_bulk" in self.path or "_template" in self.path) else 204
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) if code == 200 else 0))
        self.end_headers()
        if code == 200:
            self.wfile.write(body)
    do_POST = do_PUT = _answer

http = ThreadingHTTPServer(("127.0.0.1", 0), H)
tcp = socket.socket(); tcp.bind(("127.0.0.1", 0)); tcp.listen()
def drain():
    while True:
        c, _ = tcp.accept()
        threading.Thread(target=lambda c=c: [None for _ in iter(lambda: c.recv(1 << 20), b"")],
                         daemon=True).start()
threading.Thread(target=drain, daemon=True).start()
print(http.server_address[1], tcp.getsockname()[1], flush=True)
http.serve_forever()
'''


def make_batches(series: int, rounds: int) -> list[list]:
    t0 = int(time.time() * 1000)
    labels = []
    for i in range(series):
        pairs = {"__name__": f"node_metric_{i % 50}_total", "instance": f"10.0.{i % 7}.1:9100",
                 "job": "node", "cpu": str(i % 16), "mode": ("idle", "user", "system")[i % 3],
                 "device": f"dev{i % 13}", "series": str(i)}
        labels.append(tuple(sorted(pairs.items())))
    return [[(lbls, float(i * r) + 0.5, t0 + r * 15_000) for i, lbls in enumerate(labels)]
            for r in range(rounds)]


def cpu_rate(fn: Callable[[list], object], batches: list[list]) -> float:
    fn(batches[0])  # warm the caches (first scrape)
    start = time.process_time()
    for batch in batches[1:]:
        fn(batch)
    spent = time.process_time() - start
    return sum(len(b) for b in batches[1:]) / spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    from clymene.storage.elasticsearch import ElasticsearchStorage
    from clymene.storage.file import FileStorage
    from clymene.storage.influxdb import InfluxDBStorage
    from clymene.storage.opentsdb import OpenTSDBStorage
    from clymene.storage.prometheus import RemoteWriteStorage
    from clymene.storage.remote_write_pb import compress, encode_write_request

    batches = make_batches(args.series, args.rounds)
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert sink.stdout is not None
        http_port, tcp_port = map(int, sink.stdout.readline().split())
        base = f"http://127.0.0.1:{http_port}"
        tmp = tempfile.mkdtemp(prefix="clymene-bench-")
        storages = {
            "prometheus (remote write)": RemoteWriteStorage(f"{base}/api/v1/write"),
            "influxdb (v1 line protocol)": InfluxDBStorage(base, database="db"),
            "opentsdb http (JSON)": OpenTSDBStorage([("127.0.0.1", http_port)], http=True,
                                                    max_chunk=512, max_tags=8),
            "opentsdb telnet": OpenTSDBStorage([("127.0.0.1", tcp_port)], max_tags=8),
            "elasticsearch (bulk)": ElasticsearchStorage([base], bulk_actions=1000),
            "file (JSON lines)": FileStorage(tmp, max_bytes=1 << 40),
        }
        encoders: dict[str, Callable[[list], object]] = {
            "prometheus (remote write)": lambda b: compress(encode_write_request(b)),
            "influxdb (v1 line protocol)": storages["influxdb (v1 line protocol)"].encode,
            "opentsdb http (JSON)": lambda b: storages["opentsdb http (JSON)"].json_body(
                storages["opentsdb http (JSON)"].points(b)[0]),
            "opentsdb telnet": lambda b: OpenTSDBStorage.telnet_lines(
                storages["opentsdb telnet"].points(b)[0]),
            "elasticsearch (bulk)": storages["elasticsearch (bulk)"].encode,
            "file (JSON lines)": storages["file (JSON lines)"].encode,
        }
        print(f"{args.series} series x {args.rounds} rounds; CPU of this process only\n")
        print("| backend | encoder samples/s per core | writer samples/s per core |")
        print("|---|---:|---:|")
        for name, storage in storages.items():
            enc = cpu_rate(encoders[name], batches)
            wri = cpu_rate(lambda b, s=storage: s.write(b, time.monotonic() + 60), batches)
            print(f"| {name} | {enc:,.0f} | {wri:,.0f} |")
            storage.close()
        for entry in os.listdir(tmp):
            os.unlink(os.path.join(tmp, entry))
        os.rmdir(tmp)
    finally:
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    main()
