"""OpenTSDB storage: the sanitisation rule, and every point read back through
VictoriaMetrics' OpenTSDB HTTP and telnet listeners and InfluxDB 1.6's OpenTSDB listener."""

from __future__ import annotations

import json
import math
import socket
import time

import pytest

from clymene import stats
from clymene.storage import WriteError
from clymene.storage.opentsdb import OpenTSDBStorage, sanitize
from tests.servers import free_port, wait_until
from tests.test_storage_batches import many_series, tricky_batch
from tests.test_storage_fanout import RecordingServer


def now_ms() -> int:
    return int(time.time() * 1000)


def expected_points(batch, max_tags: int = 8, seconds: bool = False) -> set:
    out = set()
    for lbls, value, ts in batch:
        if seconds:
            ts = ts // 1000 * 1000
        tags = [(sanitize(k), sanitize(v)) for k, v in lbls if k != "__name__"]
        if math.isnan(value) or math.isinf(value) or not tags or len(tags) > max_tags:
            continue
        out.add((sanitize(dict(lbls)["__name__"]), tuple(sorted(tags)), value, ts))
    return out


def vm_points(vm, t0: int, metric_re: str) -> set:
    got = set()
    for item in vm.export(f'{{__name__=~"{metric_re}"}}'):
        metric = dict(item["metric"])
        name = metric.pop("__name__")
        for value, ts in zip(item["values"], item["timestamps"], strict=True):
            if ts >= t0:
                got.add((name, tuple(sorted(metric.items())), float(value), ts))
    return got


def influx_points(server, t0: int) -> set:
    out = set()
    for series in server.query('SELECT "value" FROM /.*/ GROUP BY *', "opentsdb"):
        tags = tuple(sorted((k, v) for k, v in (series.get("tags") or {}).items() if v != ""))
        for ts, value in series["values"]:
            if ts >= t0:
                out.add((series["name"], tags, float(value), ts))
    return out


def test_sanitize_rule():
    assert sanitize("node_cpu_seconds_total") == "node_cpu_seconds_total"
    assert sanitize("a.b-c/d_e") == "a.b-c/d_e"
    assert sanitize("한국어 라벨") == "한국어_u0020_라벨"
    assert sanitize("colon:metric") == "colon_u003A_metric"
    assert sanitize('k="v",x\\') == "k_u003D__u0022_v_u0022__u002C_x_u005C_"
    assert sanitize("😀") == "_u1F600_"
    assert sanitize("tab\tnl\n") == "tab_u0009_nl_u000A_"


def test_points_drop_and_count_what_opentsdb_cannot_store():
    storage = OpenTSDBStorage([("127.0.0.1", 1)], max_tags=8)
    points, skipped = storage.points(tricky_batch(1_700_000_000_000))
    assert skipped == {"nan": 1, "inf": 2, "stale": 1, "too_many_tags": 1}
    assert points[0] == ("plain_metric", "instance=host_u003A_9100 job=j", 0.0, 1_700_000_000_000)
    _, skipped = OpenTSDBStorage([("h", 1)]).points([((("__name__", "lonely"),), 1.0, 1)])
    assert skipped == {"no_tags": 1}
    lines = storage.telnet_lines(points[:1]).decode()
    assert lines == "put plain_metric 1700000000000 0.0 instance=host_u003A_9100 job=j\n"
    assert json.loads(storage.json_body(points[:1])) == [
        {"metric": "plain_metric", "tags": {"instance": "host_u003A_9100", "job": "j"},
         "timestamp": 1_700_000_000_000, "value": 0.0}]


@pytest.mark.parametrize("http", [True, False], ids=["http", "telnet"])
def test_victoria_metrics_listeners_read_back_exactly(vm_listeners, http):
    vm = vm_listeners
    t0 = now_ms()
    name = "otsdb_http" if http else "otsdb_telnet"
    batch = [((("__name__", f"{name}_{dict(lbls)['__name__']}"),)
              + tuple(p for p in lbls if p[0] != "__name__"), v, ts)
             for lbls, v, ts in tricky_batch(t0) + many_series(10_000, t0 + 1000)]
    # The telnet listener takes whole seconds: samples a second apart stay apart.
    batch = [(tuple(sorted(lbls)), v, ts if http else t0 + (ts - t0) * 1000)
             for lbls, v, ts in batch]
    port = vm.opentsdb_http_port if http else vm.opentsdb_port
    storage = OpenTSDBStorage([("127.0.0.1", port)], http=http, max_chunk=1000,
                              seconds=not http)
    stats.drain()
    storage.write(batch, time.monotonic() + 30)
    storage.close()
    counts = stats.drain()
    assert counts['clymene_storage_samples_dropped_total{reason="too_many_tags",storage="opentsdb"}'] == 1
    want = expected_points(batch, seconds=not http)
    since = t0 // 1000 * 1000
    wait_until(lambda: len(vm_points(vm, since, f"{name}_.*")) >= len(want), timeout=20,
               interval=0.3)
    got = vm_points(vm, since, f"{name}_.*")
    assert got == want, (sorted(want - got)[:5], sorted(got - want)[:5])


@pytest.mark.parametrize("http", [True, False], ids=["http", "telnet"])
def test_influxdb_opentsdb_listener_reads_back_exactly(influxdb_server, http):
    """InfluxDB's listener keeps whole seconds (it cuts the milliseconds off itself), so
    the samples are a second apart and each run has its own time range."""
    server = influxdb_server
    t0 = now_ms() + (0 if http else 400_000)
    batch = [(lbls, v, t0 + (ts - t0) * 1000) for lbls, v, ts in tricky_batch(t0)]
    storage = OpenTSDBStorage([("127.0.0.1", server.opentsdb_port)], http=http)
    storage.write(batch, time.monotonic() + 30)
    storage.close()
    want = expected_points(batch, seconds=True)
    since = t0 // 1000 * 1000

    def read() -> set:
        return {p for p in influx_points(server, since) if p[3] < since + 400_000}

    wait_until(lambda: len(read()) >= len(want), timeout=20, interval=0.3)
    got = read()
    assert got == want, (sorted(want - got)[:5], sorted(got - want)[:5])


def test_http_hosts_failover_and_auth_errors():
    dead = free_port()
    rx = RecordingServer(statuses=[503, 204])
    try:
        storage = OpenTSDBStorage([("127.0.0.1", dead), ("127.0.0.1", rx.port)], http=True,
                                  username="u", password="pw-secret-9", timeout=1.0)
        storage.write(tricky_batch(1_700_000_000_000)[:2], time.monotonic() + 10)
        assert [b[0] for b in rx.bodies] == ["/api/put?details", "/api/put?details"]
        assert rx.bodies[0][1]["Authorization"].startswith("Basic ")
        rx.statuses = [401]
        with pytest.raises(WriteError) as info:
            storage.write(tricky_batch(1_700_000_000_000)[:1], time.monotonic() + 10)
        message = str(info.value)
        assert "opentsdb" in message and f"http://127.0.0.1:{rx.port}/api/put" in message
        assert "401" in message and "pw-secret-9" not in message
        assert not info.value.retryable
    finally:
        rx.stop()


def test_telnet_reconnects_and_gives_up_at_the_deadline():
    storage = OpenTSDBStorage([("127.0.0.1", free_port())], timeout=0.5)
    start = time.monotonic()
    with pytest.raises(WriteError) as info:
        storage.write(tricky_batch(1_700_000_000_000)[:1], start + 0.5)
    assert info.value.retryable and time.monotonic() - start < 1.5
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    storage = OpenTSDBStorage([("127.0.0.1", listener.getsockname()[1])])
    storage.write(tricky_batch(1_700_000_000_000)[:1], time.monotonic() + 5)
    conn, _ = listener.accept()
    conn.settimeout(2)
    assert conn.recv(1000) == b"put plain_metric 1700000000000 0.0 instance=host_u003A_9100 job=j\n"
    conn.close()
    listener.close()
    storage.close()
