"""InfluxDB storage: line protocol escaping, and every point read back from InfluxDB 1.6
(v1 API, InfluxQL) and VictoriaMetrics (v2 API path, /api/v1/export)."""

from __future__ import annotations

import gzip
import math
import time

import pytest

from clymene import stats
from clymene.storage import WriteError
from clymene.storage.influxdb import InfluxDBStorage, escape_measurement, escape_tag, stored_text
from tests.servers import start_influxdb, wait_until
from tests.test_storage_batches import many_series, tricky_batch


def now_ms() -> int:
    return int(time.time() * 1000)


def expected_points(batch, v2: bool) -> set:
    """(measurement, tags, value, ts) of every sample the line protocol can carry."""
    out = set()
    for lbls, value, ts in batch:
        if math.isnan(value) or math.isinf(value):
            continue
        name = dict(lbls)["__name__"]
        tags = tuple(sorted((stored_text(k, v2), stored_text(v, v2))
                            for k, v in lbls if k != "__name__"))
        out.add((stored_text(name, v2), tags, value, ts))
    return out


def influx_points(server, db: str) -> set:
    out = set()
    for series in server.query('SELECT "value" FROM /.*/ GROUP BY *', db):
        tags = tuple(sorted((k, v) for k, v in (series.get("tags") or {}).items() if v != ""))
        for ts, value in series["values"]:
            out.add((series["name"], tags, float(value), ts))
    return out


def test_escaping_rules():
    assert escape_measurement("a b,c=d") == "a\\ b\\,c=d"
    assert escape_tag("a b,c=d") == "a\\ b\\,c\\=d"
    assert escape_tag("back\\slash") == "back\\\\slash"
    assert escape_tag("back\\slash", v2=False) == "back\\slash"
    assert escape_tag("trailing\\", v2=False) == "trailing\\\\ "
    assert escape_tag("new\nline") == "new\\\\nline"
    assert escape_tag("new\nline", v2=False) == "new\\nline"
    assert escape_tag("한국어") == "한국어"


def test_encode_lines_precision_and_specials():
    storage = InfluxDBStorage("http://127.0.0.1:1", database="db", precision="ns")
    batch = tricky_batch(1_700_000_000_000)
    lines, skipped = storage.encode(batch)
    assert skipped == {"nan": 1, "inf": 2, "stale": 1}
    assert lines[0] == 'plain_metric,instance=host:9100,job=j value=0.0 1700000000000000000\n'
    assert len(lines) == len(batch) - 4
    s = InfluxDBStorage("http://127.0.0.1:1", database="db", precision="s")
    assert s.encode(batch[:1])[0] == ['plain_metric,instance=host:9100,job=j value=0.0 1700000000\n']


def test_v1_api_into_influxdb_reads_back_exactly(influxdb_server):
    server = influxdb_server
    server.create_database("clymene")
    t0 = now_ms()
    batch = tricky_batch(t0) + many_series(10_000, t0 + 1000)
    storage = InfluxDBStorage(server.url, database="clymene", use_gzip=True)
    stats.drain()
    storage.write(batch, time.monotonic() + 30)
    counts = stats.drain()
    storage.close()
    assert counts['clymene_storage_samples_dropped_total{reason="nan",storage="influxdb"}'] == 1
    assert counts['clymene_storage_samples_dropped_total{reason="inf",storage="influxdb"}'] == 2
    assert counts['clymene_storage_samples_dropped_total{reason="stale",storage="influxdb"}'] == 1
    assert counts['clymene_storage_samples_written_total{storage="influxdb"}'] == len(batch) - 4
    got = influx_points(server, "clymene")
    want = expected_points(batch, v2=False)
    assert len(want) == 10_000 + len(tricky_batch(0)) - 4
    assert got == want, (sorted(want - got)[:5], sorted(got - want)[:5])


def test_v2_api_into_victoria_metrics_reads_back_exactly(vm_listeners):
    vm = vm_listeners
    t0 = now_ms()
    batch = tricky_batch(t0)
    storage = InfluxDBStorage(vm.url, bucket="b", org="o", token="tok")
    storage.write(batch, time.monotonic() + 30)
    storage.close()
    want = expected_points(batch, v2=True)

    def read() -> set:
        got = set()
        for item in vm.export('{__name__=~"(plain|tricky|special|wide|colon.*)_.*"}'):
            metric = dict(item["metric"])
            name = metric.pop("__name__")
            assert name.endswith("_value"), name
            for value, ts in zip(item["values"], item["timestamps"], strict=True):
                if ts >= t0:
                    got.add((name[: -len("_value")], tuple(sorted(metric.items())),
                             float(value), ts))
        return got

    # VictoriaMetrics makes ingested lines searchable a moment later.
    wait_until(lambda: len(read()) >= len(want), timeout=15, interval=0.3)
    got = read()
    assert got == want, (sorted(want - got)[:5], sorted(got - want)[:5])


def test_auth_refused_names_backend_and_url_not_the_password(tmp_path):
    server = start_influxdb(tmp_path, auth_enabled=True)
    try:
        storage = InfluxDBStorage(server.url, database="x", username="admin",
                                  password="wrong-pass-123")
        with pytest.raises(WriteError) as info:
            storage.write(tricky_batch(now_ms())[:1], time.monotonic() + 10)
        message = str(info.value)
        assert not info.value.retryable
        assert "influxdb" in message and f"{server.url}/write" in message
        assert "401" in message and "authentication refused" in message
        assert "wrong-pass-123" not in message
        good = InfluxDBStorage(server.url, database="ok", username="admin", password="secret")
        server.create_database("ok", auth=("admin", "secret"))
        good.write(tricky_batch(now_ms())[:1], time.monotonic() + 10)
        assert len(server.query('SELECT * FROM "plain_metric"', "ok", ("admin", "secret"))) == 1
    finally:
        server.stop()


def test_gzip_body_and_token_header(receiver_http):
    rx = receiver_http
    storage = InfluxDBStorage(rx.url, bucket="b", org="o", token="t0k", use_gzip=True,
                              batch_size=2)
    storage.write(tricky_batch(1_700_000_000_000)[:3], time.monotonic() + 5)
    assert len(rx.bodies) == 2
    path, headers, body = rx.bodies[0]
    assert path == "/api/v2/write?org=o&bucket=b&precision=ms"
    assert headers["Authorization"] == "Token t0k"
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body).decode().count("\n") == 2


def test_bad_settings():
    with pytest.raises(ValueError, match="influxdb.database"):
        InfluxDBStorage("http://127.0.0.1:1")
    with pytest.raises(ValueError, match="precision"):
        InfluxDBStorage("http://127.0.0.1:1", database="d", precision="h")


@pytest.fixture
def receiver_http():
    from tests.test_storage_fanout import RecordingServer

    rx = RecordingServer()
    yield rx
    rx.stop()
