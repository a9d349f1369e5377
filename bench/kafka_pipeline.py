"""Kafka pipeline benchmark: ingester throughput, gateway requests/s, end-to-end latency.

    python -m bench.kafka_pipeline [--messages 600] [--gateway-seconds 10]
                                   [--latency-seconds 30] [--targets 20 --series 500]

1. ingester: `--messages` messages of 1,000 series each are published first; then
   `clymene ingester` (its own process, STORAGE_TYPE=prometheus, batches of 20
   messages, 5,000 samples per remote write request) drains them into VictoriaMetrics.
   Reported: samples per second of wall time and per CPU second of the ingester process
   (utime+stime from /proc), from its first batch written to its last.
2. gateway: `clymene gateway` (STORAGE_TYPE=kafka, acks=all) receives remote-write
   bodies of 1,000 samples from 4 keep-alive client threads for `--gateway-seconds`.
   Reported: requests/s answered 204, and the gateway's CPU seconds per request.
3. latency: `clymene run` (STORAGE_TYPE=kafka) scrapes bench.targets every second; a
   `clymene ingester` writes to a sink in this process that records each request's
   arrival time (and decodes it after the run): per sample, arrival time minus the
   sample's timestamp (the scrape's start). Reported: p50, p99
   and max over `--latency-seconds`, after a 10 s warm-up.

Servers (Tansu, VictoriaMetrics, Redis) are started on free loopback ports and stopped
by PID. Prints a JSON summary and a Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clymene import settings as settings_module  # noqa: E402
from clymene.storage.kafka import open_kafka  # noqa: E402
from clymene.storage.remote_write_pb import (  # noqa: E402
    compress,
    decode_write_request,
    decompress,
    encode_write_request,
)
from tests.servers import (  # noqa: E402
    free_port,
    http_get,
    start_redis,
    start_tansu,
    start_victoria_metrics,
    wait_until,
)

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its reaped children."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICKS


def _metric(url: str, name: str) -> float:
    try:
        status, body = http_get(url, timeout=2)
    except OSError:
        return 0.0
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _spawn(command: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    full = dict(os.environ)
    full.update(env)
    full["PYTHONPATH"] = str(ROOT)
    with open(log, "wb") as f:
        return subprocess.Popen([sys.executable, "-m", "clymene", command], env=full,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _batch(n: int, series: int, base_ms: int) -> list:
    return [((("__name__", "bench_m"), ("i", str(i)), ("instance", f"t{n % 16}:9100"),
              ("job", "bench")), float(n + i), base_ms + n) for i in range(series)]


def bench_ingester(tmp: Path, broker, vm, messages: int) -> dict:
    env = {"KAFKA_PRODUCER_BROKERS": broker.url, "KAFKA_CONSUMER_BROKERS": broker.url,
           "KAFKA_PRODUCER_TOPIC": "bench-ingest", "KAFKA_CONSUMER_TOPIC": "bench-ingest",
           "KAFKA_PRODUCER_REQUIRED_ACKS": "all", "KAFKA_CONSUMER_SESSION_TIMEOUT": "6s",
           "KAFKA_CONSUMER_PARTITIONS": "4", "METRIC_SPLIT_LENGTH": "1000",
           "KAFKA_PRODUCER_COMPRESSION": "none"}
    producer = open_kafka(settings_module.load(env))
    base = int(time.time() * 1000) - 3_600_000
    for n in range(messages):
        producer.write(_batch(n, 1000, base), time.monotonic() + 30)
    producer.close()
    total = messages * 1000
    admin = free_port()
    proc = _spawn("ingester", {**env, "STORAGE_TYPE": "prometheus", "LOG_LEVEL": "warn",
                               "PROMETHEUS_REMOTE_URL": vm.write_url,
                               "PROMETHEUS_REMOTE_MAX_SAMPLES_PER_SEND": "5000",
                               "INGESTER_BATCH_MESSAGES": "20",
                               "INGESTER_LISTEN_ADDRESS": f"127.0.0.1:{admin}"},
                  tmp / "ingester-bench.log")
    url = f"http://127.0.0.1:{admin}/metrics"
    try:
        # The clock starts at the first batch written (start-up and the group join are
        # not counted); the samples of that first batch are not counted either.
        first = wait_until(lambda: _metric(url, "clymene_ingester_samples_written_total"),
                           timeout=120, interval=0.01)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        wait_until(lambda: _metric(url, "clymene_ingester_samples_written_total") >= total,
                   timeout=600, interval=0.05)
        cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
    finally:
        _stop(proc)
    counted = total - first
    return {"samples": int(counted), "wall_s": round(t1 - t0, 2),
            "cpu_s": round(cpu1 - cpu0, 2), "samples_per_s": round(counted / (t1 - t0)),
            "samples_per_cpu_s": round(counted / max(cpu1 - cpu0, 1e-9))}


def bench_gateway(tmp: Path, broker, seconds: float, threads: int = 4) -> dict:
    port = free_port()
    proc = _spawn("gateway", {"STORAGE_TYPE": "kafka", "KAFKA_PRODUCER_BROKERS": broker.url,
                              "KAFKA_PRODUCER_TOPIC": "bench-gw", "LOG_LEVEL": "warn",
                              "KAFKA_PRODUCER_REQUIRED_ACKS": "all",
                              "GATEWAY_HTTP_SERVER_HOST_PORT": f"127.0.0.1:{port}"},
                  tmp / "gateway-bench.log")
    body = compress(encode_write_request(_batch(0, 1000, int(time.time() * 1000))))
    headers = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
               "X-Prometheus-Remote-Write-Version": "0.1.0"}
    counts = {"ok": 0, "other": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not stop.is_set():
            conn.request("POST", "/api/v1/write", body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            with lock:
                counts["ok" if r.status == 204 else "other"] += 1
        conn.close()

    try:
        def ready() -> bool:
            try:
                return http_get(f"http://127.0.0.1:{port}/-/ready", 1)[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout=30)
        # Warm up: the first request creates the topic.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/api/v1/write", body=body, headers=headers)
        assert conn.getresponse().status == 204
        conn.close()
        workers = [threading.Thread(target=client) for _ in range(threads)]
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        for w in workers:
            w.start()
        time.sleep(seconds)
        stop.set()
        for w in workers:
            w.join()
        cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
    finally:
        _stop(proc)
    return {"requests": counts["ok"], "failed": counts["other"], "wall_s": round(t1 - t0, 2),
            "requests_per_s": round(counts["ok"] / (t1 - t0), 1),
            "gateway_cpu_s": round(cpu1 - cpu0, 2),
            "cpu_ms_per_request": round(1000 * (cpu1 - cpu0) / max(counts["ok"], 1), 2),
            "body_bytes": len(body)}


class _LatencySink:
    def __init__(self) -> None:
        self.bodies: list[tuple[float, bytes]] = []
        self.recording = False
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                data = self.rfile.read(int(self.headers["Content-Length"]))
                if sink.recording:  # decoded after the run, off the critical path
                    sink.bodies.append((time.time() * 1000, data))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/write"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def bench_latency(tmp: Path, broker, seconds: float, targets: int, series: int) -> dict:
    redis_server = start_redis(tmp)
    ready_file = tmp / "targets.json"
    tproc = subprocess.Popen([sys.executable, "-m", "bench.targets", "--targets", str(targets),
                              "--series", str(series), "--ready-file", str(ready_file)],
                             cwd=ROOT, start_new_session=True)
    sink = _LatencySink()
    procs: list[subprocess.Popen] = []
    try:
        wait_until(ready_file.exists, timeout=30)
        ports = json.loads(ready_file.read_text())["ports"]
        cfg = tmp / "clymene.yml"
        addrs = ", ".join(f"'127.0.0.1:{p}'" for p in ports)
        cfg.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                       f"scrape_configs:\n  - job_name: t\n    static_configs:\n"
                       f"      - targets: [{addrs}]\n")
        common = {"KAFKA_PRODUCER_BROKERS": broker.url, "KAFKA_CONSUMER_BROKERS": broker.url,
                  "KAFKA_PRODUCER_TOPIC": "bench-lat", "KAFKA_CONSUMER_TOPIC": "bench-lat",
                  "KAFKA_PRODUCER_REQUIRED_ACKS": "all", "KAFKA_CONSUMER_PARTITIONS": "4",
                  "KAFKA_CONSUMER_SESSION_TIMEOUT": "6s", "LOG_LEVEL": "warn",
                  "CLYMENE_BROKER_URL": redis_server.redis_url(1), "CONFIG_FILE": str(cfg),
                  "WEB_LISTEN_ADDRESS": f"127.0.0.1:{free_port()}"}
        procs.append(_spawn("ingester", {**common, "STORAGE_TYPE": "prometheus",
                                         "PROMETHEUS_REMOTE_URL": sink.url,
                                         "INGESTER_LISTEN_ADDRESS": f"127.0.0.1:{free_port()}"},
                            tmp / "ingester-lat.log"))
        procs.append(_spawn("run", {**common, "STORAGE_TYPE": "kafka"}, tmp / "run-lat.log"))
        time.sleep(10)
        sink.recording = True
        cpu0 = [cpu_seconds(p.pid) for p in procs]
        time.sleep(seconds)
        cpu1 = [cpu_seconds(p.pid) for p in procs]
        sink.recording = False
        import redis

        farm_stats = {k.decode(): float(v) for k, v in redis.Redis.from_url(
            common["CLYMENE_BROKER_URL"]).hgetall("clymene:stats").items()}
    finally:
        for p in reversed(procs):
            _stop(p)
        os.killpg(tproc.pid, signal.SIGTERM)
        tproc.wait(10)
        sink.server.shutdown()
        redis_server.stop()
    lat = sorted(now_ms - ts for now_ms, data in sink.bodies
                 for _, samples in decode_write_request(decompress(data)) for _, ts in samples)
    if not lat:
        return {"samples": 0}

    def pct(q: float) -> float:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] / 1000, 3)

    lag_n = farm_stats.get("clymene_scheduling_lag_seconds_count", 0)
    return {"samples": len(lat), "p50_s": pct(0.50), "p99_s": pct(0.99),
            "max_s": round(lat[-1] / 1000, 3), "targets": targets, "series": series,
            "scrapes": farm_stats.get("clymene_scrapes_total{job=\"t\"}", 0),
            "ingester_cores": round((cpu1[0] - cpu0[0]) / seconds, 2),
            "run_main_cores": round((cpu1[1] - cpu0[1]) / seconds, 2),
            "mean_scheduling_lag_s": round(
                farm_stats.get("clymene_scheduling_lag_seconds_sum", 0) / max(lag_n, 1), 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.kafka_pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=600)
    p.add_argument("--gateway-seconds", type=float, default=10)
    p.add_argument("--latency-seconds", type=float, default=30)
    p.add_argument("--targets", type=int, default=20)
    p.add_argument("--series", type=int, default=500)
    p.add_argument("--only", choices=["ingester", "gateway", "latency"], default=None)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    broker = start_tansu(tmp)
    vm = start_victoria_metrics(tmp)
    try:
        result: dict = {}
        if args.only in (None, "ingester"):
            result["ingester"] = bench_ingester(tmp, broker, vm, args.messages)
            print(json.dumps(result["ingester"]), flush=True)
        if args.only in (None, "gateway"):
            result["gateway"] = bench_gateway(tmp, broker, args.gateway_seconds)
            print(json.dumps(result["gateway"]), flush=True)
        if args.only in (None, "latency"):
            result["latency"] = bench_latency(tmp, broker, args.latency_seconds,
                                              args.targets, args.series)
    finally:
        broker.stop()
        vm.stop()
    print(json.dumps(result, indent=2))
    i, g, lat = result.get("ingester"), result.get("gateway"), result.get("latency", {})
    print("\n| measure | value |\n|---|---:|")
    if i:
        print(f"| ingester samples/s (wall) | {i['samples_per_s']:,} |")
        print(f"| ingester samples per CPU second | {i['samples_per_cpu_s']:,} |")
    if g:
        print(f"| gateway requests/s (1,000 samples each) | {g['requests_per_s']:,} |")
        print(f"| gateway CPU ms per request | {g['cpu_ms_per_request']} |")
    if lat.get("samples"):
        print(f"| scrape -> database latency p50 / p99 / max (s) | {lat['p50_s']} / "
              f"{lat['p99_s']} / {lat['max_s']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
