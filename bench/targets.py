"""Synthetic node-exporter-like scrape targets: N HTTP ports served by one selector loop.

    python -m bench.targets --targets 50 --series 500 --ready-file F

Every target serves exactly `--series` sample lines in the text format 0.0.4 (counters
ending in `_total`, gauges, histograms with `le` buckets, a summary; labels like cpu,
mode, device; HELP and TYPE lines). A few body variants are built at start, plain and
gzipped, and each target rotates through them, so values change between scrapes while
serving costs next to nothing. When the ports are listening, the ready file gets
`{"ports": [...], "control_port": P, "series": S}`; `GET /stats` on the control port
answers the scrapes served so far per User-Agent product (`Prometheus`, `clymene`,
`vm_promscrape`, ...).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import selectors
import socket
import threading
from collections.abc import Callable
from decimal import Decimal

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

MODES = ("idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user")
BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf")
# Share of the requests at or below each bucket bound (the last is +Inf).
BUCKET_SHARE = (0.02, 0.05, 0.12, 0.25, 0.41, 0.62, 0.78, 0.9, 0.96, 0.985, 0.995, 1.0)
QUANTILES = ("0", "0.25", "0.5", "0.75", "1")


def go_float(x: float) -> str:
    """A float as Go's strconv.FormatFloat(x, 'g', -1, 64) writes it, which is what
    client_golang exporters expose: shortest digits, an exponent from 1e+06 up."""
    if x == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(float(x))).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    nd = len(text)
    dp = nd + exponent  # value = 0.<digits> * 10**dp
    exp = dp - 1
    neg = "-" if sign else ""
    if exp < -4 or exp >= 6:
        mantissa = text[0] + ("." + text[1:] if nd > 1 else "")
        return f"{neg}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        return f"{neg}0.{'0' * -dp}{text}"
    if dp >= nd:
        return f"{neg}{text}{'0' * (dp - nd)}"
    return f"{neg}{text[:dp]}.{text[dp:]}"


# A family: name, type, help, lines per unit, share of the series, unit lines(i, variant).
Family = tuple[str, str, str, int, float, Callable[[int, int], list[str]]]


def _cpu(i: int, v: int) -> list[str]:
    return [f'node_cpu_seconds_total{{cpu="{i}",mode="{m}"}} '
            f"{go_float(round(5000.0 * (i + 1) * (j + 1) + 0.37 * j + v * 0.83 * (j + 1), 2))}"
            for j, m in enumerate(MODES)]


def _counter(name: str, label: str, prefix: str, base: float, rate: float
             ) -> Callable[[int, int], list[str]]:
    def lines(i: int, v: int) -> list[str]:
        return [f'{name}{{{label}="{prefix}{i}"}} {go_float(base * (i + 1) + rate * v)}']
    return lines


def _filesystem(name: str, base: float, step: float) -> Callable[[int, int], list[str]]:
    def lines(i: int, v: int) -> list[str]:
        value = base * (i + 1) + step * ((v * 7 + i) % 5)
        return [f'{name}{{device="/dev/vd{i}",fstype="ext4",mountpoint="/mnt/disk{i}"}} '
                f"{go_float(value)}"]
    return lines


def _temperature(i: int, v: int) -> list[str]:
    return [f'node_hwmon_temp_celsius{{chip="platform_coretemp_{i // 8}",sensor="temp{i % 8}"}} '
            f"{go_float(38.0 + (i % 17) + ((v + i) % 6) * 0.5)}"]


def _histogram(i: int, v: int) -> list[str]:
    handler = f"/api/v1/endpoint{i}"
    total = 1000 * (i + 1) + 37 * v
    out = [f'http_request_duration_seconds_bucket{{handler="{handler}",le="{le}"}} '
           f"{int(total * share)}" for le, share in zip(BUCKETS, BUCKET_SHARE, strict=True)]
    out.append(f'http_request_duration_seconds_sum{{handler="{handler}"}} '
               f"{go_float(round(total * 0.1234, 3))}")
    out.append(f'http_request_duration_seconds_count{{handler="{handler}"}} {total}')
    return out


def _summary(i: int, v: int) -> list[str]:
    service = f"svc{i}"
    out = [f'rpc_duration_seconds{{service="{service}",quantile="{q}"}} '
           f"{go_float(round(0.0001 * (k + 1) * (1 + (v + i) % 4), 6))}"
           for k, q in enumerate(QUANTILES)]
    count = 500 * (i + 1) + 11 * v
    out.append(f'rpc_duration_seconds_sum{{service="{service}"}} {go_float(round(count * 0.0021, 4))}')
    out.append(f'rpc_duration_seconds_count{{service="{service}"}} {count}')
    return out


def _filler(i: int, v: int) -> list[str]:
    return [f'node_textfile_bench_value{{index="{i}"}} {go_float(i * 1.5 + (v % 3))}']


FAMILIES: tuple[Family, ...] = (
    ("node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode.", 8, 0.20, _cpu),
    ("node_network_receive_bytes_total", "counter", "Network device statistic receive_bytes.",
     1, 0.03, _counter("node_network_receive_bytes_total", "device", "eth", 9.1e9, 123456.0)),
    ("node_network_transmit_bytes_total", "counter", "Network device statistic transmit_bytes.",
     1, 0.03, _counter("node_network_transmit_bytes_total", "device", "eth", 4.2e9, 65432.0)),
    ("node_network_receive_packets_total", "counter", "Network device statistic receive_packets.",
     1, 0.02, _counter("node_network_receive_packets_total", "device", "eth", 8.8e6, 321.0)),
    ("node_network_transmit_packets_total", "counter",
     "Network device statistic transmit_packets.",
     1, 0.02, _counter("node_network_transmit_packets_total", "device", "eth", 6.1e6, 222.0)),
    ("node_network_receive_errs_total", "counter", "Network device statistic receive_errs.",
     1, 0.01, _counter("node_network_receive_errs_total", "device", "eth", 0.0, 1.0)),
    ("node_disk_read_bytes_total", "counter", "The total number of bytes read successfully.",
     1, 0.03, _counter("node_disk_read_bytes_total", "device", "vd", 2.5e10, 40960.0)),
    ("node_disk_written_bytes_total", "counter", "The total number of bytes written successfully.",
     1, 0.03, _counter("node_disk_written_bytes_total", "device", "vd", 7.7e10, 81920.0)),
    ("node_disk_io_time_seconds_total", "counter", "Total seconds spent doing I/Os.",
     1, 0.03, _counter("node_disk_io_time_seconds_total", "device", "vd", 3456.78, 0.25)),
    ("node_disk_reads_completed_total", "counter", "The total number of reads completed.",
     1, 0.02, _counter("node_disk_reads_completed_total", "device", "vd", 123456.0, 12.0)),
    ("node_filesystem_avail_bytes", "gauge", "Filesystem space available to non-root users.",
     1, 0.04, _filesystem("node_filesystem_avail_bytes", 3.2e10, 4096.0)),
    ("node_filesystem_size_bytes", "gauge", "Filesystem size in bytes.",
     1, 0.04, _filesystem("node_filesystem_size_bytes", 1.0e11, 0.0)),
    ("node_filesystem_files_free", "gauge", "Filesystem total free file nodes.",
     1, 0.03, _filesystem("node_filesystem_files_free", 6.5e6, 3.0)),
    ("node_hwmon_temp_celsius", "gauge", "Hardware monitor for temperature (input).",
     1, 0.05, _temperature),
    ("http_request_duration_seconds", "histogram", "Latency of HTTP requests.",
     len(BUCKETS) + 2, 0.20, _histogram),
    ("rpc_duration_seconds", "summary", "RPC latency distributions.",
     len(QUANTILES) + 2, 0.05, _summary),
)
FILLER: Family = ("node_textfile_bench_value", "gauge", "Synthetic gauges filling the body.",
                  1, 0.0, _filler)


def plan(series: int) -> list[tuple[Family, int]]:
    """How many units of each family make exactly `series` sample lines."""
    out: list[tuple[Family, int]] = []
    left = series
    for family in FAMILIES:
        unit, share = family[3], family[4]
        units = min(int(series * share) // unit, left // unit)
        if units:
            out.append((family, units))
            left -= units * unit
    if left:
        out.append((FILLER, left))
    return out


def body(series: int, variant: int) -> bytes:
    """One exposition body with exactly `series` sample lines."""
    lines: list[str] = []
    for (name, kind, help_text, _, _, make), units in plan(series):
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for i in range(units):
            lines.extend(make(i, variant))
    return ("\n".join(lines) + "\n").encode()


def sample_lines(data: bytes) -> int:
    return sum(1 for line in data.split(b"\n") if line and not line.startswith(b"#"))


def _response(status: bytes, payload: bytes, extra: bytes = b"",
              content_type: bytes = CONTENT_TYPE) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type
            + b"\r\nContent-Length: " + str(len(payload)).encode() + b"\r\n" + extra + b"\r\n"
            + payload)


class Conn:
    __slots__ = ("sock", "target", "inbuf", "out", "closing")

    def __init__(self, sock: socket.socket, target: int):
        self.sock = sock
        self.target = target  # index of the target, -1 for the control port
        self.inbuf = b""
        self.out = b""
        self.closing = False


class TargetServer:
    """All targets and the control port on one selector loop in one thread."""

    def __init__(self, targets: int, series: int, variants: int = 8):
        self.variants = variants
        bodies = [body(series, v) for v in range(variants)]
        self.plain = [_response(b"200 OK", b) for b in bodies]
        self.gzipped = [_response(b"200 OK", gzip.compress(b, 6, mtime=0),
                                  b"Content-Encoding: gzip\r\n") for b in bodies]
        self.served = [0] * targets
        self.by_agent: dict[str, int] = {}
        self.sel = selectors.DefaultSelector()
        self.ports: list[int] = []
        for i in range(targets):
            self.ports.append(self._listen(i))
        self.control_port = self._listen(-1)

    def _listen(self, target: int) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)
        self.sel.register(sock, selectors.EVENT_READ, target)
        return sock.getsockname()[1]

    def serve_forever(self, stop: threading.Event | None = None) -> None:
        """Serve until `stop` is set (checked every 0.2 s), or forever."""
        while stop is None or not stop.is_set():
            for key, mask in self.sel.select(0.2):
                if isinstance(key.data, int):
                    self._accept(key.fileobj, key.data)  # type: ignore[arg-type]
                else:
                    self._io(key.data, mask)

    def _accept(self, lsock: socket.socket, target: int) -> None:
        while True:
            try:
                sock, _ = lsock.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sel.register(sock, selectors.EVENT_READ, Conn(sock, target))

    def close(self) -> None:
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.sel.close()

    def _close(self, conn: Conn) -> None:
        self.sel.unregister(conn.sock)
        conn.sock.close()

    def _io(self, conn: Conn, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                self._close(conn)
                return
            if data == b"":
                self._close(conn)
                return
            if data:
                conn.inbuf += data
                while True:
                    end = conn.inbuf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head, conn.inbuf = conn.inbuf[:end], conn.inbuf[end + 4:]
                    conn.out += self._handle(conn, head)
        self._flush(conn)

    def _flush(self, conn: Conn) -> None:
        if conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._close(conn)
                return
            conn.out = conn.out[sent:]
        if conn.out:
            self.sel.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
        elif conn.closing:
            self._close(conn)
        else:
            self.sel.modify(conn.sock, selectors.EVENT_READ, conn)

    def _handle(self, conn: Conn, head: bytes) -> bytes:
        lines = head.split(b"\r\n")
        request = lines[0].split(b" ")
        path = request[1] if len(request) > 1 else b"/"
        if len(request) < 3 or request[2] != b"HTTP/1.1":
            conn.closing = True
        gz = False
        agent = "unknown"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"accept-encoding":
                gz = b"gzip" in value
            elif name == b"user-agent":
                agent = value.strip().split(b"/")[0].decode("latin-1") or "unknown"
            elif name == b"connection" and value.strip().lower() == b"close":
                conn.closing = True
        if conn.target < 0:
            if path.startswith(b"/stats"):
                payload = json.dumps({"by_agent": self.by_agent,
                                      "served": sum(self.served)}).encode()
                return _response(b"200 OK", payload, content_type=b"application/json")
            return _response(b"200 OK", b"ok\n")
        i = conn.target
        variant = (self.served[i] + i) % self.variants
        self.served[i] += 1
        self.by_agent[agent] = self.by_agent.get(agent, 0) + 1
        return self.gzipped[variant] if gz else self.plain[variant]


def write_ready_file(path: str, content: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(content, f)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.targets", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", type=int, default=50)
    p.add_argument("--series", type=int, default=500)
    p.add_argument("--variants", type=int, default=8, help="body variants to rotate through")
    p.add_argument("--ready-file", required=True)
    args = p.parse_args(argv)
    if args.targets < 1 or args.series < 1 or args.variants < 1:
        p.error("--targets, --series and --variants must be at least 1")
    server = TargetServer(args.targets, args.series, args.variants)
    write_ready_file(args.ready_file, {"ports": server.ports, "control_port": server.control_port,
                                       "series": args.series})
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
