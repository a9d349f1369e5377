"""Remote write: the hand-written protobuf codec, RemoteWriteStorage against a real
Prometheus and a scripted receiver, the counters, the storage factory, and the test
servers themselves."""

from __future__ import annotations

import base64
import math
import os
import random
import struct
import threading
import time
from types import SimpleNamespace

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from clymene import stats
from clymene.storage import Storage, WriteError
from clymene.storage import remote_write_pb as pb
from clymene.storage.factory import open_storages
from clymene.storage.file import FileStorage
from clymene.storage.prometheus import (
    DEFAULT_USER_AGENT,
    RemoteWriteStorage,
    parse_retry_after,
    redact_url,
)
from tests.servers import free_port, query, series, start_prometheus, wait_until

STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


def bits(value: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", value))[0]


def now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------- the codec vs protobuf

F = descriptor_pb2.FieldDescriptorProto


def _message_classes(extra_fields: bool = False) -> dict[str, type]:
    """The remote write messages defined at run time (no protoc). With `extra_fields`
    the schema also has fields a newer sender might set, unknown to our decoder."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name=f"rw{int(extra_fields)}.proto", package=f"rw{int(extra_fields)}", syntax="proto3"
    )
    pkg = f".rw{int(extra_fields)}"

    def message(name: str, *fields: tuple) -> None:
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = f"{pkg}.{type_name}"

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message(
        "Label",
        ("name", 1, F.TYPE_STRING, opt, ""),
        ("value", 2, F.TYPE_STRING, opt, ""),
        *([("note", 7, F.TYPE_STRING, opt, "")] if extra_fields else []),
    )
    message(
        "Sample",
        ("value", 1, F.TYPE_DOUBLE, opt, ""),
        ("timestamp", 2, F.TYPE_INT64, opt, ""),
        *(
            [("fx", 3, F.TYPE_FIXED32, opt, ""), ("packed", 4, F.TYPE_INT64, rep, "")]
            if extra_fields
            else []
        ),
    )
    message(
        "Exemplar",
        ("labels", 1, F.TYPE_MESSAGE, rep, "Label"),
        ("value", 2, F.TYPE_DOUBLE, opt, ""),
        ("timestamp", 3, F.TYPE_INT64, opt, ""),
    )
    message(
        "TimeSeries",
        ("labels", 1, F.TYPE_MESSAGE, rep, "Label"),
        ("samples", 2, F.TYPE_MESSAGE, rep, "Sample"),
        ("exemplars", 3, F.TYPE_MESSAGE, rep, "Exemplar"),
        *(
            [("histo", 4, F.TYPE_BYTES, rep, ""), ("fixed", 9, F.TYPE_FIXED64, rep, "")]
            if extra_fields
            else []
        ),
    )
    message(
        "MetricMetadata",
        ("type", 1, F.TYPE_INT32, opt, ""),
        ("metric_family_name", 2, F.TYPE_STRING, opt, ""),
        ("help", 4, F.TYPE_STRING, opt, ""),
        ("unit", 5, F.TYPE_STRING, opt, ""),
    )
    message(
        "WriteRequest",
        ("timeseries", 1, F.TYPE_MESSAGE, rep, "TimeSeries"),
        ("metadata", 3, F.TYPE_MESSAGE, rep, "MetricMetadata"),
        *([("future", 20, F.TYPE_SINT64, rep, "")] if extra_fields else []),
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {
        m.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{pkg[1:]}.{m.name}"))
        for m in fdp.message_type
    }


PB = _message_classes()
PBX = _message_classes(extra_fields=True)


def official_encoding(batch) -> bytes:
    """The same WriteRequest built with the official runtime: one TimeSeries per distinct
    labels in order of first appearance, samples in batch order."""
    req = PB["WriteRequest"]()
    by_labels = {}
    for labels, value, ts in batch:
        if labels not in by_labels:
            series_msg = req.timeseries.add()
            for name, val in labels:
                series_msg.labels.add(name=name, value=val)
            by_labels[labels] = series_msg
        by_labels[labels].samples.add(value=value, timestamp=ts)
    return req.SerializeToString()


def official_decoding(data: bytes, classes=PB) -> list:
    req = classes["WriteRequest"]()
    req.ParseFromString(data)
    return [
        (
            tuple(sorted(((lb.name, lb.value) for lb in ts.labels), key=lambda p: p[0])),
            [(s.value, s.timestamp) for s in ts.samples],
        )
        for ts in req.timeseries
    ]


SPECIAL_VALUES = [
    0.0,
    -0.0,
    1.0,
    -1.5,
    0.1 + 0.2,
    1e-320,
    5e-324,
    1.7976931348623157e308,
    math.inf,
    -math.inf,
    math.nan,
    STALE,
    2.0**53 + 1,
    123456789.0,
]
SPECIAL_TS = [0, 1, -1, 127, 128, 1_700_000_000_123, 2**63 - 1, -(2**63)]


def random_batch(rng: random.Random, n: int):
    names = ["up", "http_requests_total", "métrique_ü", "a" * 200]
    values = ["", "x", "日本語", 'with "quotes"\nand newline', "v" * 300]
    pool = []
    for _ in range(max(1, n // 3)):
        labels = {"__name__": rng.choice(names)}
        for _ in range(rng.randrange(0, 6)):
            labels[rng.choice(["job", "instance", "le", "code", "zz", "_x"])] = rng.choice(values)
        pool.append(tuple(sorted(labels.items())))
    batch = []
    for _ in range(n):
        value = rng.choice(SPECIAL_VALUES) if rng.random() < 0.5 else rng.uniform(-1e6, 1e6)
        ts = rng.choice(SPECIAL_TS) if rng.random() < 0.3 else rng.randrange(-(2**40), 2**45)
        batch.append((rng.choice(pool), value, ts))
    return batch


def same_samples(a, b) -> bool:
    """Equal, comparing values by their bits (NaN payloads, -0.0)."""
    return [(labels, [(bits(v), t) for v, t in s]) for labels, s in a] == [
        (labels, [(bits(v), t) for v, t in s]) for labels, s in b
    ]


def test_encoder_matches_official_protobuf_byte_for_byte():
    rng = random.Random(42)
    for n in [0, 1, 2, 5, 50, 500]:
        for _ in range(20):
            batch = random_batch(rng, n)
            assert pb.encode_write_request(batch) == official_encoding(batch), batch


def test_encoder_special_values_byte_for_byte_and_bits_kept():
    labels = (("__name__", "v"), ("job", "j"))
    batch = [(labels, v, ts) for v in SPECIAL_VALUES for ts in SPECIAL_TS]
    data = pb.encode_write_request(batch)
    assert data == official_encoding(batch)
    decoded = official_decoding(data)
    assert len(decoded) == 1 and decoded[0][0] == labels
    assert [(bits(v), t) for v, t in decoded[0][1]] == [(bits(v), t) for _, v, t in batch]


def test_encoder_groups_by_labels_in_first_appearance_order():
    a = (("__name__", "a"),)
    b = (("__name__", "b"),)
    batch = [(a, 1.0, 10), (b, 2.0, 10), (a, 3.0, 20), (b, 4.0, 20), (a, 5.0, 30)]
    assert pb.decode_write_request(pb.encode_write_request(batch)) == [
        (a, [(1.0, 10), (3.0, 20), (5.0, 30)]),
        (b, [(2.0, 10), (4.0, 20)]),
    ]


def test_encoder_scrape_batches_with_known_series_byte_for_byte():
    # A worker encodes the same label tuples every scrape (cached by identity); the
    # encoding must not depend on that: equal labels in two distinct tuples are one
    # series, zeros are left out, and a batch with several timestamps is grouped.
    rng = random.Random(3)
    first = random_batch(rng, 300)
    series = list(dict.fromkeys(labels for labels, _, _ in first))
    twin = tuple(list(series[0]))  # equal to series[0], another object
    assert twin == series[0] and twin is not series[0]
    for step in range(4):
        ts = 1_700_000_000_000 + 1000 * step
        values = [0.0 if i % 7 == 0 else -0.0 if i % 11 == 0 else rng.random() * 1e6
                  for i in range(len(series))]
        batch = [(labels, v, ts) for labels, v in zip(series, values, strict=True)]
        assert pb.encode_write_request(batch) == official_encoding(batch)
        pb.encode_write_request([(twin, 1.0, ts)])  # the twin's head gets cached too
        with_twin = batch + [(twin, 2.0, ts)]
        assert pb.encode_write_request(with_twin) == official_encoding(with_twin)
        two_times = batch + [(series[1], 3.0, ts + 500)]
        assert pb.encode_write_request(two_times) == official_encoding(two_times)


def test_decoder_reads_official_encoding():
    rng = random.Random(7)
    for n in [0, 1, 3, 40, 400]:
        for _ in range(10):
            data = official_encoding(random_batch(rng, n))
            assert same_samples(pb.decode_write_request(data), official_decoding(data))


def test_decoder_skips_metadata_exemplars_and_unknown_fields():
    req = PBX["WriteRequest"]()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="m", note="ignored")
    ts.labels.add(name="job", value="j")
    ts.samples.add(value=2.5, timestamp=1000, fx=7, packed=[1, -2, 3])
    ts.samples.add(value=-1.0, timestamp=-5)
    ex = ts.exemplars.add(value=9.0, timestamp=1)
    ex.labels.add(name="trace_id", value="abc")
    ts.histo.append(b"\x01\x02\x03")
    ts.fixed.extend([1, 2])
    md = req.metadata.add(type=1, metric_family_name="m", help="help text", unit="s")
    assert md.help
    req.future.extend([-1, 5])
    data = req.SerializeToString()
    assert pb.decode_write_request(data) == [
        ((("__name__", "m"), ("job", "j")), [(2.5, 1000), (-1.0, -5)])
    ]
    # A request with metadata only (Prometheus sends those) has no series.
    only_md = PB["WriteRequest"]()
    only_md.metadata.add(type=2, metric_family_name="x", help="h")
    assert pb.decode_write_request(only_md.SerializeToString()) == []


def _key(field: int, wire: int) -> bytes:
    return pb._varint(field << 3 | wire)


def test_decoder_handles_unusual_but_valid_encodings_like_protobuf():
    label_name = _key(1, 2) + b"\x08__name__"
    label_value = _key(2, 2) + b"\x01m"
    # Value before name, a group-typed unknown field, a varint written non-minimally.
    label = label_value + _key(5, 3) + _key(1, 0) + b"\x01" + _key(5, 4) + label_name
    label2 = _key(1, 2) + b"\x03job" + _key(2, 2) + b"\x01a" + _key(2, 2) + b"\x01b"  # last wins
    sample = _key(2, 0) + b"\x80\x01" + _key(1, 1) + struct.pack("<d", 4.0)
    sample_merged = (
        _key(1, 1)
        + struct.pack("<d", 1.0)
        + _key(1, 1)
        + struct.pack("<d", 2.0)
        + _key(2, 0)
        + b"\xe8\x87\x80\x00"
    )  # non-minimal varint for 1000
    # Samples before labels, labels out of name order, a wrong-wire-type "known" field.
    series_body = (
        _key(2, 2)
        + pb._varint(len(sample))
        + sample
        + _key(1, 2)
        + pb._varint(len(label2))
        + label2
        + _key(1, 0)
        + b"\x05"
        + _key(1, 2)
        + pb._varint(len(label))
        + label
        + _key(2, 2)
        + pb._varint(len(sample_merged))
        + sample_merged
        + _key(3, 5)
        + b"\x00\x00\x00\x00"
    )
    data = (
        _key(3, 2)
        + b"\x00"
        + _key(1, 2)
        + pb._varint(len(series_body))
        + series_body
        + _key(15, 1)
        + b"\x00" * 8
    )
    ours = pb.decode_write_request(data)
    assert ours == [((("__name__", "m"), ("job", "b")), [(4.0, 128), (2.0, 1000)])]
    assert ours == official_decoding(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a",  # length missing
        b"\x0a\x05\x0a\x03",  # series shorter than declared
        b"\x0a\x0b\x12\x09\x09\x00\x00\x00",  # double cut short
        b"\x0a\x04\x0a\x02\x0a\x05",  # label string past its label
        b"\x0f",  # wire type 7
        b"\x00\x01",  # field number 0
        b"\x0a\x06\x0a\x04\x0a\x02\xff\xfe",  # not UTF-8
        b"\x08" + b"\xff" * 11,  # varint too long
    ],
)
def test_decoder_rejects_invalid_messages_as_protobuf_does(data):
    with pytest.raises(ValueError):
        pb.decode_write_request(data)
    with pytest.raises(Exception):  # noqa: B017 - the runtime's DecodeError
        PB["WriteRequest"]().ParseFromString(data)


def test_label_cache_is_bounded_and_stays_correct(monkeypatch):
    monkeypatch.setattr(pb, "LABEL_CACHE_MAX", 10)
    pb._label_cache.clear()
    batch = [((("__name__", f"m{i}"),), float(i), i) for i in range(25)]
    assert pb.encode_write_request(batch) == official_encoding(batch)
    assert 1 <= len(pb._label_cache) <= 10
    assert pb.encode_write_request(batch) == official_encoding(batch)


def test_snappy_block_round_trip():
    data = pb.encode_write_request(random_batch(random.Random(1), 100))
    compressed = pb.compress(data)
    assert isinstance(compressed, bytes) and compressed != data
    assert pb.decompress(compressed) == data


# ---------------------------------------------------------------- counters


def test_stats_keys_sorted_escaped_and_drained():
    stats.drain()
    stats.inc("c_total", storage="x", code="500")
    stats.inc("c_total", 2, code="500", storage="x")
    stats.inc("plain_total", 0.5)
    stats.inc("esc_total", v='a"b\\c\nd')
    assert stats.drain() == {
        'c_total{code="500",storage="x"}': 3,
        "plain_total": 0.5,
        'esc_total{v="a\\"b\\\\c\\nd"}': 1,
    }
    assert stats.drain() == {}


def test_stats_threads_lose_no_increment():
    stats.drain()

    def work():
        for _ in range(20_000):
            stats.inc("t_total", storage="s")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats.drain() == {'t_total{storage="s"}': 80_000}


# ---------------------------------------------------------------- against real Prometheus


def test_remote_write_into_real_prometheus(prometheus):
    t0 = now_ms() - 60_000
    counter = (("__name__", "clymene_test_requests_total"), ("code", "200"), ("job", "t"))
    gauge = (("__name__", "clymene_test_temperature"), ("room", 'hall "B"\nwest'), ("unit", "°C"))
    nan = (("__name__", "clymene_test_nan"), ("job", "t"))
    gone = (("__name__", "clymene_test_gone"), ("job", "t"))
    batch = [
        (counter, 1.0, t0),
        (gauge, -3.25, t0),
        (nan, math.nan, t0),
        (gone, 7.0, t0),
        (counter, 5.0, t0 + 1000),
        (gauge, 0.1 + 0.2, t0 + 1000),
        (gone, STALE, t0 + 1000),
    ]
    storage = RemoteWriteStorage(prometheus.write_url)
    try:
        storage.write(batch, time.monotonic() + 10)
    finally:
        storage.close()

    def at(promql, ms):
        """{labels: value} of an instant query evaluated at `ms`."""
        result = query(prometheus, promql, at=ms / 1000)
        assert all(r["value"][0] == ms / 1000 for r in result)
        return {tuple(sorted(r["metric"].items())): r["value"][1] for r in result}

    assert at("clymene_test_requests_total", t0 + 500) == {counter: "1"}
    assert at("clymene_test_requests_total", t0 + 1000) == {counter: "5"}
    assert at("clymene_test_temperature", t0) == {gauge: "-3.25"}
    assert at("clymene_test_temperature", t0 + 1000) == {gauge: "0.30000000000000004"}
    assert at("clymene_test_nan", t0 + 1) == {nan: "NaN"}
    # The staleness marker ends the series at once, not 5 minutes later.
    assert at("clymene_test_gone", t0 + 500) == {gone: "7"}
    assert at("clymene_test_gone", t0 + 1000) == {}
    assert at("clymene_test_gone", t0 + 2000) == {}
    # Exact sample timestamps, by a range selector.
    raw = query(prometheus, "clymene_test_requests_total[5s]", at=(t0 + 2000) / 1000)
    assert [v for r in raw for v in r["values"]] == [[t0 / 1000, "1"], [(t0 + 1000) / 1000, "5"]]
    found = series(
        prometheus, '{__name__=~"clymene_test_.*"}', start=t0 / 1000 - 1, end=t0 / 1000 + 5
    )
    assert sorted(tuple(sorted(s.items())) for s in found) == sorted([counter, gauge, nan, gone])


def test_prometheus_rejection_is_not_retried(prometheus):
    # Out of bounds: once its head holds samples of now, Prometheus answers 400 for
    # samples far older than the head's time range.
    storage = RemoteWriteStorage(prometheus.write_url)
    storage.write([((("__name__", "clymene_new"),), 1.0, now_ms())], time.monotonic() + 10)
    stats.drain()
    old = [((("__name__", "clymene_old"),), 1.0, now_ms() - 48 * 3600 * 1000)]
    with pytest.raises(WriteError) as info:
        storage.write(old, time.monotonic() + 10)
    storage.close()
    assert info.value.retryable is False
    assert "400" in str(info.value) and "out of bounds" in str(info.value)
    counts = stats.drain()
    assert counts['clymene_storage_requests_total{code="400",storage="prometheus"}'] == 1
    assert (
        counts['clymene_storage_samples_dropped_total{reason="rejected",storage="prometheus"}'] == 1
    )
    assert 'clymene_storage_retries_total{storage="prometheus"}' not in counts


# ---------------------------------------------------------------- against the scripted receiver


def make_batch(n: int, t0: int = 1_700_000_000_000):
    return [((("__name__", "m"), ("i", str(i))), float(i), t0 + i) for i in range(n)]


def test_headers_user_agent_and_connection_reuse(receiver):
    storage = RemoteWriteStorage(receiver.url, headers={"X-Scope-OrgID": "tenant-1"})
    batch = make_batch(3)
    for _ in range(3):
        storage.write(batch, time.monotonic() + 5)
    storage.close()
    assert receiver.violations == []
    assert len(receiver.requests) == 3
    for r in receiver.requests:
        assert r.path == "/api/v1/write"
        assert r.headers["Content-Encoding"] == "snappy"
        assert r.headers["Content-Type"] == "application/x-protobuf"
        assert r.headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
        assert r.headers["User-Agent"] == DEFAULT_USER_AGENT
        assert r.headers["X-Scope-OrgID"] == "tenant-1"
        assert "Authorization" not in r.headers
        assert r.samples == batch
    assert DEFAULT_USER_AGENT.startswith("clymene/")
    # One keep-alive connection for all requests.
    assert len({r.client for r in receiver.requests}) == 1


def test_nan_and_stale_marker_sent_bit_for_bit(receiver):
    labels = (("__name__", "g"),)
    batch = [(labels, math.nan, 1), (labels, STALE, 2), (labels, -0.0, 3), (labels, math.inf, 4)]
    storage = RemoteWriteStorage(receiver.url, user_agent="custom/1")
    storage.write(batch, time.monotonic() + 5)
    got = receiver.samples()
    assert [(lb, bits(v), t) for lb, v, t in got] == [(lb, bits(v), t) for lb, v, t in batch]
    assert receiver.requests[0].headers["User-Agent"] == "custom/1"


def test_empty_batch_sends_nothing(receiver):
    RemoteWriteStorage(receiver.url).write([], time.monotonic() + 5)
    assert receiver.requests == []


def test_500_then_200_sends_twice_stores_once(receiver):
    stats.drain()
    receiver.respond(500, 200)
    batch = make_batch(5)
    storage = RemoteWriteStorage(receiver.url)
    storage.write(batch, time.monotonic() + 5)
    assert [r.status for r in receiver.requests] == [500, 200]
    assert receiver.requests[0].samples == batch == receiver.requests[1].samples
    assert receiver.samples() == batch
    assert stats.drain() == {
        'clymene_storage_requests_total{code="500",storage="prometheus"}': 1,
        'clymene_storage_requests_total{code="200",storage="prometheus"}': 1,
        'clymene_storage_retries_total{storage="prometheus"}': 1,
        'clymene_storage_samples_written_total{storage="prometheus"}': 5,
        'clymene_storage_bytes_sent_total{storage="prometheus"}': 2
        * receiver.requests[0].body_size,
    }


@pytest.mark.parametrize("status", [400, 401, 404, 409, 413])
def test_4xx_is_not_retried(receiver, status):
    stats.drain()
    receiver.respond((status, {}, b"x" * 300 + b"END"))
    storage = RemoteWriteStorage(receiver.url)
    with pytest.raises(WriteError) as info:
        storage.write(make_batch(4), time.monotonic() + 5)
    assert info.value.retryable is False
    message = str(info.value)
    assert str(status) in message
    assert "x" * 256 in message and "x" * 257 not in message and "END" not in message
    assert len(receiver.requests) == 1
    counts = stats.drain()
    assert (
        counts['clymene_storage_samples_dropped_total{reason="rejected",storage="prometheus"}'] == 4
    )
    assert 'clymene_storage_retries_total{storage="prometheus"}' not in counts
    assert 'clymene_storage_samples_written_total{storage="prometheus"}' not in counts


def test_429_honours_retry_after(receiver):
    receiver.respond((429, {"Retry-After": "1"}), 204)
    start = time.monotonic()
    RemoteWriteStorage(receiver.url).write(make_batch(2), start + 10)
    elapsed = time.monotonic() - start
    first, second = receiver.requests
    assert (first.status, second.status) == (429, 204)
    assert 1.0 <= second.received - first.received < 1.5
    assert elapsed < 1.5
    assert receiver.samples() == make_batch(2)


def test_503_retry_after_http_date(receiver):
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 2))
    receiver.respond((503, {"Retry-After": when}), 204)
    RemoteWriteStorage(receiver.url).write(make_batch(1), time.monotonic() + 10)
    first, second = receiver.requests
    # Whole seconds in the header: between 1 and 2 s from now.
    assert 0.9 <= second.received - first.received < 2.3


def test_retry_after_parsing():
    assert parse_retry_after(None) == 0
    assert parse_retry_after("") == 0
    assert parse_retry_after("3") == 3
    assert parse_retry_after(" 12 ") == 12
    assert parse_retry_after("soon") == 0
    assert parse_retry_after("-1") == 0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412500.0) == 0


def test_backoff_doubles_from_30ms(receiver):
    stats.drain()
    receiver.respond(500, 502, 503, 500, 204)
    RemoteWriteStorage(receiver.url).write(make_batch(1), time.monotonic() + 10)
    times = [r.received for r in receiver.requests]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    for gap, expected in zip(gaps, [0.03, 0.06, 0.12, 0.24], strict=True):
        assert expected * 0.95 <= gap < expected + 0.1, gaps
    assert stats.drain()['clymene_storage_retries_total{storage="prometheus"}'] == 4


def test_deadline_respected_while_server_fails(receiver):
    stats.drain()
    receiver.default = 500
    start = time.monotonic()
    with pytest.raises(WriteError) as info:
        RemoteWriteStorage(receiver.url).write(make_batch(7), start + 0.5)
    elapsed = time.monotonic() - start
    assert info.value.retryable is True
    assert elapsed <= 0.55
    assert len(receiver.requests) >= 4  # 30 + 60 + 120 + 240 ms of backoff fit in 0.5 s
    counts = stats.drain()
    assert (
        counts['clymene_storage_samples_dropped_total{reason="deadline",storage="prometheus"}'] == 7
    )
    assert receiver.samples() == []


def test_deadline_cuts_a_slow_request(receiver):
    receiver.delay = lambda n: 3.0
    start = time.monotonic()
    with pytest.raises(WriteError) as info:
        RemoteWriteStorage(receiver.url, timeout=30).write(make_batch(1), start + 0.4)
    assert info.value.retryable is True
    assert time.monotonic() - start < 0.6


def test_request_timeout_is_retried(receiver):
    stats.drain()
    receiver.delay = lambda n: 1.0 if n == 0 else 0.0
    RemoteWriteStorage(receiver.url, timeout=0.2).write(make_batch(2), time.monotonic() + 5)
    assert len(receiver.requests) == 2
    counts = stats.drain()
    assert counts['clymene_storage_requests_total{code="error",storage="prometheus"}'] == 1
    assert counts['clymene_storage_requests_total{code="204",storage="prometheus"}'] == 1


def test_connection_refused_is_retried_until_deadline():
    stats.drain()
    url = f"http://127.0.0.1:{free_port()}/api/v1/write?token=qs-secret"
    with pytest.raises(WriteError) as info:
        RemoteWriteStorage(url).write(make_batch(3), time.monotonic() + 0.3)
    assert info.value.retryable is True
    assert "qs-secret" not in str(info.value)
    counts = stats.drain()
    assert counts['clymene_storage_requests_total{code="error",storage="prometheus"}'] >= 2
    assert (
        counts['clymene_storage_samples_dropped_total{reason="deadline",storage="prometheus"}'] == 3
    )


def test_split_at_max_samples_per_send_keeps_every_sample_in_order(receiver):
    stats.drain()
    labels = (("__name__", "boundary"),)
    # One series crosses both boundaries: its samples must stay in order across requests.
    batch = [
        (labels if i % 2 else (("__name__", "m"), ("i", str(i))), float(i), 1000 + i)
        for i in range(2001)
    ]
    storage = RemoteWriteStorage(receiver.url, max_samples_per_send=1000)
    storage.write(batch, time.monotonic() + 10)
    assert [len(r.samples) for r in receiver.requests] == [1000, 1000, 1]
    for k, r in enumerate(receiver.requests):
        assert sorted(r.samples, key=lambda s: s[2]) == batch[k * 1000 : (k + 1) * 1000]
    got = receiver.samples()
    assert sorted(got, key=lambda s: s[2]) == batch
    boundary = [s for s in got if s[0] == labels]
    assert boundary == [s for s in batch if s[0] == labels]
    counts = stats.drain()
    assert counts['clymene_storage_samples_written_total{storage="prometheus"}'] == 2001


def test_failure_mid_batch_drops_the_remaining_samples(receiver):
    stats.drain()
    receiver.respond(204, 400)
    with pytest.raises(WriteError):
        RemoteWriteStorage(receiver.url, max_samples_per_send=1000).write(
            make_batch(2001), time.monotonic() + 5
        )
    assert len(receiver.requests) == 2
    counts = stats.drain()
    assert counts['clymene_storage_samples_written_total{storage="prometheus"}'] == 1000
    assert (
        counts['clymene_storage_samples_dropped_total{reason="rejected",storage="prometheus"}']
        == 1001
    )


def test_credentials_sent_but_never_shown(receiver):
    receiver.respond((400, {}, b"bad token tok-SECRET"), (400, {}, b"no pw-SECRET"))
    bearer = RemoteWriteStorage(receiver.url, bearer_token="tok-SECRET")
    with pytest.raises(WriteError) as info:
        bearer.write(make_batch(1), time.monotonic() + 5)
    assert "tok-SECRET" not in str(info.value) and "<secret>" in str(info.value)
    assert receiver.requests[0].headers["Authorization"] == "Bearer tok-SECRET"

    url = receiver.url.replace("http://", "http://user:pw-SECRET@")
    basic = RemoteWriteStorage(url)
    with pytest.raises(WriteError) as info:
        basic.write(make_batch(1), time.monotonic() + 5)
    assert "pw-SECRET" not in str(info.value)
    expected = "Basic " + base64.b64encode(b"user:pw-SECRET").decode()
    assert receiver.requests[1].headers["Authorization"] == expected

    explicit = RemoteWriteStorage(receiver.url, basic_auth=("u", "p2-SECRET"))
    explicit.write(make_batch(1), time.monotonic() + 5)
    assert (
        receiver.requests[2].headers["Authorization"]
        == "Basic " + base64.b64encode(b"u:p2-SECRET").decode()
    )


def test_redact_url():
    assert (
        redact_url("https://u:p@host:9090/api/v1/write?token=t") == "https://host:9090/api/v1/write"
    )
    assert redact_url("http://[::1]:80/w") == "http://[::1]:80/w"


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"url": "ftp://x/"}, "http(s) URL"),
        ({"url": "http:///nohost"}, "http(s) URL"),
        ({"url": "http://h/", "timeout": 0}, "timeout"),
        ({"url": "http://h/", "max_samples_per_send": 0}, "max_samples_per_send"),
    ],
)
def test_remote_write_storage_rejects_bad_settings(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        RemoteWriteStorage(**kwargs)


def test_concurrent_writers_share_one_storage(receiver):
    storage = RemoteWriteStorage(receiver.url)
    batches = [make_batch(50, t0=1_000_000 * k) for k in range(8)]
    threads = [
        threading.Thread(target=storage.write, args=(b, time.monotonic() + 10)) for b in batches
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = sorted(receiver.samples(), key=lambda s: s[2])
    assert got == sorted((s for b in batches for s in b), key=lambda s: s[2])


# ---------------------------------------------------------------- the factory


def settings(**overrides):
    base = dict(
        storage_type=[],
        prometheus_remote_url="",
        prometheus_remote_timeout=30.0,
        prometheus_remote_user_agent=None,
        data_dir="/nonexistent",
        file_max_bytes=1000,
    )
    base.update(overrides)
    return SimpleNamespace(**base)


def test_factory_default_is_file(tmp_path):
    [storage] = open_storages(settings(data_dir=str(tmp_path / "d"), file_max_bytes=1234))
    assert isinstance(storage, FileStorage) and isinstance(storage, Storage)
    assert storage.name == "file" and storage.max_bytes == 1234
    assert storage.path == os.path.join(str(tmp_path / "d"), "samples.jsonl")
    storage.close()


def test_factory_prometheus_and_file(tmp_path, receiver):
    storages = open_storages(
        settings(
            storage_type=["prometheus", " File ", "prometheus"],
            prometheus_remote_url=receiver.url,
            prometheus_remote_timeout=2.5,
            prometheus_remote_user_agent="agent/9",
            data_dir=str(tmp_path),
        )
    )
    assert [s.name for s in storages] == ["prometheus", "file"]
    prom = storages[0]
    assert isinstance(prom, RemoteWriteStorage) and prom.timeout == 2.5
    prom.write(make_batch(1), time.monotonic() + 5)
    assert receiver.requests[0].headers["User-Agent"] == "agent/9"
    for s in storages:
        s.close()


def test_factory_prometheus_needs_url():
    with pytest.raises(ValueError) as info:
        open_storages(settings(storage_type=["prometheus"]))
    assert "--prometheus.remote.url" in str(info.value)
    assert "PROMETHEUS_REMOTE_URL" in str(info.value)


def test_factory_unknown_type_lists_known(tmp_path):
    with pytest.raises(ValueError) as info:
        open_storages(settings(storage_type=["file", "cassandra"], data_dir=str(tmp_path)))
    message = str(info.value)
    assert "'cassandra'" in message and "file" in message and "prometheus" in message
    assert not os.path.exists(tmp_path / "samples.jsonl.lock")  # nothing opened


# ---------------------------------------------------------------- the test servers


def test_prometheus_server_and_agent_scrape_node_exporter(tmp_path, node_exporter, receiver):
    """Both start modes of start_prometheus (Prometheus applies targets only every 5 s, so
    they run side by side). The agent remote-writes into the receiver: real Prometheus
    remote write, decoded by our decoder, headers and series as expected."""
    instance = f"127.0.0.1:{node_exporter.port}"
    agent = start_prometheus(
        tmp_path,
        f"[{{job_name: node, static_configs: [{{targets: ['{instance}']}}]}}]",
        agent=True,
        remote_write_url=receiver.url,
    )
    server = start_prometheus(
        tmp_path,
        f"""
global:
  external_labels: {{site: lab}}
scrape_configs:
  - job_name: ne
    static_configs: [{{targets: ['{instance}']}}]
""",
    )
    try:

        def up_sample():
            for labels, value, _ in receiver.samples():
                if dict(labels).get("__name__") == "up":
                    return labels, value
            return None

        labels, value = receiver.wait_for(lambda r: up_sample(), timeout=20)
        assert labels == (("__name__", "up"), ("instance", instance), ("job", "node"))
        assert value == 1.0
        assert receiver.violations == []
        names = {dict(lb)["__name__"] for lb, _, _ in receiver.samples()}
        assert "node_cpu_seconds_total" in names and "scrape_samples_scraped" in names
        assert receiver.requests[0].headers["User-Agent"].startswith("Prometheus/")

        result = wait_until(lambda: query(server, "up"), timeout=20)
        assert [r["metric"] for r in result] == [
            {"__name__": "up", "instance": instance, "job": "ne"}
        ]
        assert result[0]["value"][1] == "1"
    finally:
        agent.stop()
        server.stop()
    for prom in (agent, server):
        assert prom.proc.returncode is not None
        with pytest.raises(ProcessLookupError):
            os.killpg(prom.pid, 0)


def test_redis_fixture_gives_separate_empty_databases(redis_server, redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    assert client.ping() is True
    assert client.dbsize() == 0
    client.set("k", "v")
    other = redis_server.redis_url(redis_server.fresh_db())
    assert other != redis_url
    assert redis.Redis.from_url(other).dbsize() == 0
    assert client.get("k") == b"v"
    client.close()
