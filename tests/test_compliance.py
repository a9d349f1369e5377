"""Prometheus' remote write sender compliance cases, against the real farm.

The cases of github.com/prometheus/compliance (remote_write/cases, later
remotewrite/sender/cases), restated: each exposes one small exposition, lets the sender
scrape it every second and write to a receiver, then checks what the receiver got. The
suite ran each sender for 10 s with `global: scrape_interval: 1s` and one job `test`.

Sixteen cases share one farm (one job and one exporter per case, one receiver; a case
looks at the samples whose `instance` is its exporter). Ordering, Retries500 and
Retries400 script the receiver (delays, error answers), so each has a farm of its own.
Where the suite asserts "more than zero samples", these tests also assert the exact
label sets, values and counts that Prometheus produces.
"""

from __future__ import annotations

import io
import math
import random
import re
import struct
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from clymene.storage.remote_write_pb import decompress
from tests.exporter import Exporter
from tests.farm import Farm
from tests.receiver import RemoteWriteReceiver, Request

STALE_NAN_BITS = 0x7FF0000000000002
REPORT_NAMES = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                "scrape_samples_post_metric_relabeling", "scrape_series_added"}
# The suite gives a sender 10 s; a 1 s interval farm must be scraping well before that.
FIRST_SCRAPE_WITHIN = 5.0
PROMHTTP = "text/plain; version=0.0.4; charset=utf-8"  # client_golang's promhttp
STATIC = "text/plain; charset=utf-8"  # Go's sniffed type for the suite's static handlers

Labels = tuple[tuple[str, str], ...]
Sample = tuple[Labels, float, int]


def _config(*jobs: tuple[str, str]) -> str:
    """The suite's Prometheus configuration: 1 s interval, one static target per job."""
    out = "global:\n  scrape_interval: 1s\nscrape_configs:\n"
    for job, address in jobs:
        out += f"  - job_name: {job}\n    static_configs:\n      - targets: ['{address}']\n"
    return out


def _is_stale(value: float) -> bool:
    return struct.unpack("<Q", struct.pack("<d", value))[0] == STALE_NAN_BITS


def _contains(labels: Labels, **want: str) -> bool:
    """The suite's labelsContain: every wanted label is there with that value."""
    d = dict(labels)
    return all(d.get(k) == v for k, v in want.items())


def _named(samples: list[Sample], name: str) -> list[Sample]:
    return [s for s in samples if dict(s[0]).get("__name__") == name]


def _now_ms_value() -> str:
    # The suite's gauge `now`: time.Now().Unix() * 1000 (whole seconds, in ms).
    return repr(float(int(time.time()) * 1000))


# -- scripted exporters and receivers ---------------------------------------------------


class DynamicExporter(Exporter):
    """An Exporter whose body is made per request: `make(n)`, n = requests served so far
    (the suite's handlers change state after each scrape)."""

    def __init__(self, make: Callable[[int], bytes], content_type: str = PROMHTTP) -> None:
        self.make = make
        super().__init__(content_type=content_type)

    @property
    def body(self) -> bytes:  # type: ignore[override]
        return self.make(len(self.scrapes))

    @body.setter
    def body(self, value: bytes) -> None:
        pass  # the body is always made by `make`


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, bytes | int]]:
    """(field number, payload) of a protobuf message; length-delimited payloads as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        wire = key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield key >> 3, value
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(data, pos)
            yield key >> 3, data[pos:pos + length]
            pos += length
        else:
            raise ValueError(f"wire type {wire} at offset {pos}")


def wire_labels(body: bytes) -> list[list[tuple[str, str]]]:
    """Every time series' labels exactly as sent: wire order, repeats kept (the
    receiver's decoder sorts them, which would hide what SortedLabels looks for)."""
    out = []
    for number, series in _fields(body):
        if number != 1:
            continue
        labels = []
        for n, label in _fields(series):  # type: ignore[arg-type]
            if n == 1:
                parts = dict(_fields(label))  # type: ignore[arg-type]
                labels.append((bytes(parts.get(1, b"")).decode(),
                               bytes(parts.get(2, b"")).decode()))
        out.append(labels)
    return out


class WireReceiver(RemoteWriteReceiver):
    """A RemoteWriteReceiver that also keeps every series' labels in wire order."""

    def __init__(self, **kwargs: Any) -> None:
        self.wire: list[list[tuple[str, str]]] = []
        super().__init__(**kwargs)

    def _handle(self, handler: Any) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        try:
            series = wire_labels(decompress(body))
        except Exception:
            series = []  # the receiver itself reports an undecodable body
        with self._lock:
            self.wire.extend(series)
        keep, handler.rfile = handler.rfile, io.BytesIO(body)
        try:
            super()._handle(handler)
        finally:
            handler.rfile = keep  # the same connection carries the next request


# -- the shared farm: one job per case --------------------------------------------------


def _counter_body(n: int) -> bytes:
    # promhttp of a counter with no help, incremented after each scrape.
    return f"# HELP counter \n# TYPE counter counter\ncounter {n}\n".encode()


def _now_body(_: int) -> bytes:
    return f"# HELP now \n# TYPE now gauge\nnow {_now_ms_value()}\n".encode()


GAUGE_42 = b"# HELP gauge \n# TYPE gauge gauge\ngauge 42\n"
HISTOGRAM = (b"# HELP histogram \n# TYPE histogram histogram\n"
             b'histogram_bucket{le="1"} 1\nhistogram_bucket{le="2"} 2\n'
             b'histogram_bucket{le="+Inf"} 2\nhistogram_sum 3\nhistogram_count 2\n')
SUMMARY = (b"# HELP summary \n# TYPE summary summary\n"
           b'summary{quantile="0.5"} 2\nsummary{quantile="0.9"} 3\n'
           b'summary{quantile="0.99"} 3\nsummary_sum 6\nsummary_count 3\n')
STATIC_BODIES = {
    "sorted_labels": b'\n# HELP test A gauge\n# TYPE test gauge\ntest{b="2",a="1"} 1.0\n',
    "repeated_labels": b'\n# HELP test A gauge\n# TYPE test gauge\ntest{a="1",a="1"} 1.0\n',
    "empty_labels": b'\n# HELP test A gauge\n# TYPE test gauge\ntest{a=""} 1.0\n',
    "name_label": b'\n# HELP test A gauge\n# TYPE test gauge\n{label="value"} 1.0\n',
    "invalid": b"\n# this is not valid prometheus\n1234notvali}{ 444\n",
    "honor_labels": (b'\n# HELP test A gauge\n# TYPE test gauge\n'
                     b'test{job="original", instance="foo"} 1.0\n'),
}


@dataclass
class SharedRun:
    start_ms: int  # wall clock just before the farm started
    end_ms: int  # wall clock just after the snapshot
    exporters: dict[str, Exporter]
    first_scrape: dict[str, float]  # seconds from the farm's start to the job's first scrape
    requests: list[Request]
    samples: list[Sample]  # accepted, in arrival order
    wire: list[list[tuple[str, str]]]
    violations: list[str]
    explicit_served: list[int] = field(default_factory=list)

    def of(self, job: str) -> list[Sample]:
        """The samples of one case's target, in arrival order."""
        address = self.exporters[job].address
        return [s for s in self.samples if dict(s[0]).get("instance") == address]

    def wire_of(self, job: str) -> list[list[tuple[str, str]]]:
        address = self.exporters[job].address
        return [labels for labels in self.wire if ("instance", address) in labels]


@pytest.fixture(scope="module")
def shared(tmp_path_factory, redis_server) -> Iterator[SharedRun]:
    explicit_served: list[int] = []

    def explicit_body(_: int) -> bytes:
        ts = int(time.time() * 1000) - 1234  # an explicit timestamp, unlike any scrape's
        explicit_served.append(ts)
        return f"# TYPE explicit gauge\nexplicit 7 {ts}\n".encode()

    exporters: dict[str, Exporter] = {
        "counter": DynamicExporter(_counter_body),
        "gauge": DynamicExporter(_now_body),
        "headers": DynamicExporter(_now_body),
        "staleness": DynamicExporter(
            lambda n: b"# HELP stale \n# TYPE stale gauge\nstale 0\n" if n == 0 else b""),
        "timestamp": Exporter(body=GAUGE_42, content_type=PROMHTTP),
        "timestamp_explicit": DynamicExporter(explicit_body),
        "up": Exporter(body=GAUGE_42, content_type=PROMHTTP),
        "instance_label": Exporter(body=GAUGE_42, content_type=PROMHTTP),
        "test": Exporter(body=GAUGE_42, content_type=PROMHTTP),  # JobLabel: job "test"
        "histogram": Exporter(body=HISTOGRAM, content_type=PROMHTTP),
        "summary": Exporter(body=SUMMARY, content_type=PROMHTTP),
    }
    for job, body in STATIC_BODIES.items():
        exporters[job] = Exporter(body=body, content_type=STATIC)
    rx = WireReceiver()
    tmp = tmp_path_factory.mktemp("compliance")
    farm = Farm(tmp, redis_server.redis_url(redis_server.fresh_db()),
                _config(*((job, e.address) for job, e in exporters.items())),
                {"STORAGE_TYPE": "prometheus", "PROMETHEUS_REMOTE_URL": rx.url})
    start_ms = int(time.time() * 1000)
    started = time.monotonic()
    farm.start("run")
    try:
        addresses = {e.address for e in exporters.values()}

        def enough(r: RemoteWriteReceiver) -> bool:
            ups: dict[str, int] = defaultdict(int)
            for labels, _, _ in _named(r.samples(), "up"):
                ups[dict(labels)["instance"]] += 1
            return all(ups[a] >= 4 for a in addresses)

        try:
            rx.wait_for(enough, timeout=25)
        except TimeoutError:
            print(farm.logs())
            raise
        # Snapshot while the farm runs: what a sender stopped now would have delivered.
        requests = list(rx.requests)
        samples = rx.samples()
        with rx._lock:
            wire = list(rx.wire)
            violations = list(rx.violations)
        served = list(explicit_served)
        end_ms = int(time.time() * 1000)
        first = {job: e.scrapes[0][0] - started for job, e in exporters.items() if e.scrapes}
    finally:
        farm.stop()
        rx.stop()
        for e in exporters.values():
            e.stop()
    yield SharedRun(start_ms=start_ms, end_ms=end_ms, exporters=exporters, first_scrape=first,
                    requests=requests, samples=samples, wire=wire, violations=violations,
                    explicit_served=served)


def _ups(run: SharedRun, job: str) -> list[Sample]:
    ups = _named(run.of(job), "up")
    assert len(ups) >= 4, (job, ups)
    return ups


def test_every_case_scraped_soon_after_start(shared):
    assert set(shared.first_scrape) == set(shared.exporters)
    late = {job: round(t, 2) for job, t in shared.first_scrape.items()
            if t > FIRST_SCRAPE_WITHIN}
    assert late == {}, f"first scrape later than {FIRST_SCRAPE_WITHIN} s after start"


def test_counter(shared):
    """Counter: the counter goes up by one after each scrape; the values arrive as
    0, 1, 2, ... (no scrape lost, repeated or reordered)."""
    counters = _named(shared.of("counter"), "counter")
    assert [v for _, v, _ in counters] == [float(i) for i in range(len(counters))]
    assert len(counters) >= 4
    address = shared.exporters["counter"].address
    assert {labels for labels, _, _ in counters} == {
        (("__name__", "counter"), ("instance", address), ("job", "counter"))}


def _check_now(samples: list[Sample], job: str, address: str) -> None:
    nows = _named(samples, "now")
    assert len(nows) >= 4
    for labels, value, ts in nows:
        assert labels == (("__name__", "now"), ("instance", address), ("job", job))
        assert abs(value - ts) <= 0.01 * ts  # the suite: InEpsilon(ts, v, 0.01)
        # Tighter: the value is the exporter's whole second at serving time, which is
        # at most the scrape timeout (1 s) after the scrape's timestamp.
        assert ts - 1000 < value < ts + 1000, (value, ts)


def test_gauge(shared):
    """Gauge: `now` (the exporter's clock in ms) arrives with a timestamp close to it."""
    _check_now(shared.of("gauge"), "gauge", shared.exporters["gauge"].address)


def test_headers(shared):
    """Headers: every write carries Content-Encoding snappy, Content-Type
    application/x-protobuf and X-Prometheus-Remote-Write-Version 0.1.0."""
    assert shared.violations == []
    assert shared.requests
    for r in shared.requests:
        assert r.headers.get("Content-Encoding") == "snappy"
        assert r.headers.get("Content-Type") == "application/x-protobuf"
        assert r.headers.get("X-Prometheus-Remote-Write-Version") == "0.1.0"
        assert r.headers.get("User-Agent")
        assert 200 <= r.status < 300, r.status
    _check_now(shared.of("headers"), "headers", shared.exporters["headers"].address)


def test_sorted_labels(shared):
    """SortedLabels: `test{b="2",a="1"}` is sent with its labels sorted by name, like
    every other series."""
    assert shared.wire
    unsorted = [labels for labels in shared.wire
                if [n for n, _ in labels] != sorted(n for n, _ in labels)]
    assert unsorted == []
    address = shared.exporters["sorted_labels"].address
    tests = _named(shared.of("sorted_labels"), "test")
    assert len(tests) >= 4
    assert {(labels, value) for labels, value, _ in tests} == {
        ((("__name__", "test"), ("a", "1"), ("b", "2"), ("instance", address),
          ("job", "sorted_labels")), 1.0)}
    assert [n for n, _ in shared.wire_of("sorted_labels")[0]] == sorted(
        n for n, _ in shared.wire_of("sorted_labels")[0])


def test_repeated_labels(shared):
    """RepeatedLabels: `test{a="1",a="1"}` fails the scrape: no `test` sample, up 0."""
    for labels in shared.wire:
        names = [n for n, _ in labels]
        assert len(names) == len(set(names)), labels
    samples = shared.of("repeated_labels")
    assert [s for s in samples if _contains(s[0], __name__="test", a="1")] == []
    assert {dict(s[0])["__name__"] for s in samples} == REPORT_NAMES
    assert {v for _, v, _ in _ups(shared, "repeated_labels")} == {0.0}


def test_empty_labels(shared):
    """EmptyLabels: `test{a=""}` arrives as `test` without the label `a`."""
    empty = [labels for labels in shared.wire if any(v == "" for _, v in labels)]
    assert empty == []
    address = shared.exporters["empty_labels"].address
    tests = _named(shared.of("empty_labels"), "test")
    assert len(tests) >= 4
    assert {(labels, value) for labels, value, _ in tests} == {
        ((("__name__", "test"), ("instance", address), ("job", "empty_labels")), 1.0)}


def test_name_label(shared):
    """NameLabel: `{label="value"}` has no metric name; nothing without `__name__` is
    sent (Prometheus 2.42's text parser refuses the line: the scrape fails, up 0)."""
    nameless = [labels for labels in shared.wire if "__name__" not in dict(labels)]
    assert nameless == []
    samples = shared.of("name_label")
    assert [s for s in samples if _contains(s[0], label="value")] == []
    assert {dict(s[0])["__name__"] for s in samples} == REPORT_NAMES
    assert {v for _, v, _ in _ups(shared, "name_label")} == {0.0}


def test_invalid(shared):
    """Invalid: an exposition that does not parse gives up 0, and only the report series."""
    samples = shared.of("invalid")
    assert {dict(s[0])["__name__"] for s in samples} == REPORT_NAMES
    assert {v for _, v, _ in _ups(shared, "invalid")} == {0.0}
    for name in ("scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
                 "scrape_series_added"):
        assert {v for _, v, _ in _named(samples, name)} == {0.0}, name


def test_staleness(shared):
    """Staleness: `stale` is exposed by the first scrape only; the next scrape writes one
    staleness marker (StaleNaN) for it, at that scrape's timestamp."""
    samples = shared.of("staleness")
    stale = _named(samples, "stale")
    up_stamps = [ts for _, _, ts in _ups(shared, "staleness")]
    assert len(stale) == 2, stale
    (labels1, v1, ts1), (labels2, v2, ts2) = stale
    address = shared.exporters["staleness"].address
    assert labels1 == labels2 == (("__name__", "stale"), ("instance", address),
                                  ("job", "staleness"))
    assert v1 == 0.0 and ts1 == up_stamps[0]
    assert math.isnan(v2) and _is_stale(v2), struct.pack("<d", v2).hex()
    assert ts2 == up_stamps[1]


def test_timestamp(shared):
    """Timestamp: every sample's timestamp lies within the sender's run, and they never
    go back; a timestamp given in the exposition is kept exactly."""
    samples = shared.of("timestamp")
    assert len(samples) >= 4 * 6
    last = 0
    for labels, _, ts in samples:
        assert shared.start_ms < ts < shared.end_ms, (labels, ts)
        assert ts >= last, (labels, ts, last)
        last = ts
    gauges = _named(samples, "gauge")
    assert len(gauges) >= 4 and {v for _, v, _ in gauges} == {42.0}

    explicit = _named(shared.of("timestamp_explicit"), "explicit")
    stamps = [ts for _, _, ts in explicit]
    assert {v for _, v, _ in explicit} == {7.0}
    assert len(stamps) >= 4
    # Each scrape's explicit timestamp arrives as served, in order, none missing (the
    # last one or two served may still have been in flight at the snapshot).
    assert stamps == shared.explicit_served[:len(stamps)]
    assert len(stamps) >= len(shared.explicit_served) - 2
    scrape_stamps = [ts for _, _, ts in _ups(shared, "timestamp_explicit")]
    assert not set(stamps) & set(scrape_stamps)


def test_up(shared):
    """Up: `up` is 1 for a target that answers, with the job's and instance's labels."""
    ups = _ups(shared, "up")
    address = shared.exporters["up"].address
    assert {(labels, v) for labels, v, _ in ups} == {
        ((("__name__", "up"), ("instance", address), ("job", "up")), 1.0)}
    stamps = [ts for _, _, ts in ups]
    assert stamps == sorted(set(stamps))
    gauges = _named(shared.of("up"), "gauge")
    assert [ts for _, _, ts in gauges] == stamps[:len(gauges)]


def test_instance_label(shared):
    """InstanceLabel: every sample carries instance="127.0.0.1:<port>" (the target)."""
    address = shared.exporters["instance_label"].address
    samples = shared.of("instance_label")
    assert len(samples) >= 4 * 6
    for labels, _, _ in samples:
        assert re.fullmatch(r"127\.0\.0\.1:\d+", dict(labels)["instance"])
    instances = {dict(labels).get("instance") for labels, _, _ in shared.samples}
    assert None not in instances
    gauges = _named(samples, "gauge")
    assert {(labels, v) for labels, v, _ in gauges} == {
        ((("__name__", "gauge"), ("instance", address), ("job", "instance_label")), 42.0)}


def test_job_label(shared):
    """JobLabel: gauge{job="test"} = 42, and every sample of the target has job "test"."""
    samples = shared.of("test")
    assert len(samples) >= 4 * 6
    assert {dict(labels)["job"] for labels, _, _ in samples} == {"test"}
    gauges = _named(samples, "gauge")
    assert len(gauges) >= 4
    assert {(labels, v) for labels, v, _ in gauges} == {
        ((("__name__", "gauge"), ("instance", shared.exporters["test"].address),
          ("job", "test")), 42.0)}


def test_honor_labels(shared):
    """HonorLabels (honor_labels false, the default): the exposed job and instance
    become exported_job and exported_instance."""
    address = shared.exporters["honor_labels"].address
    tests = _named(shared.of("honor_labels"), "test")
    assert len(tests) >= 4
    assert {(labels, v) for labels, v, _ in tests} == {
        ((("__name__", "test"), ("exported_instance", "foo"), ("exported_job", "original"),
          ("instance", address), ("job", "honor_labels")), 1.0)}


def _check_family(samples: list[Sample], expected: dict[Labels, float], job: str,
                  address: str) -> None:
    """Every scrape delivers each series of the family once, with its exact value."""
    target = (("instance", address), ("job", job))
    by_ts: dict[int, dict[Labels, float]] = defaultdict(dict)
    for labels, value, ts in samples:
        if dict(labels)["__name__"] in REPORT_NAMES:
            continue
        assert labels not in by_ts[ts], ("repeated", labels, ts)
        by_ts[ts][labels] = value
    want = {tuple(sorted(labels + target)): v for labels, v in expected.items()}
    assert len(by_ts) >= 4
    for ts, got in by_ts.items():
        assert got == want, ts


def test_histogram(shared):
    """Histogram: buckets 1, 2 and +Inf (1, 2, 2), sum 3, count 2, as many of each."""
    _check_family(shared.of("histogram"), {
        (("__name__", "histogram_bucket"), ("le", "1")): 1.0,
        (("__name__", "histogram_bucket"), ("le", "2")): 2.0,
        (("__name__", "histogram_bucket"), ("le", "+Inf")): 2.0,
        (("__name__", "histogram_sum"),): 3.0,
        (("__name__", "histogram_count"),): 2.0,
    }, "histogram", shared.exporters["histogram"].address)


def test_summary(shared):
    """Summary: quantiles 0.5, 0.9, 0.99 (2, 3, 3), sum 6, count 3, as many of each."""
    _check_family(shared.of("summary"), {
        (("__name__", "summary"), ("quantile", "0.5")): 2.0,
        (("__name__", "summary"), ("quantile", "0.9")): 3.0,
        (("__name__", "summary"), ("quantile", "0.99")): 3.0,
        (("__name__", "summary_sum"),): 6.0,
        (("__name__", "summary_count"),): 3.0,
    }, "summary", shared.exporters["summary"].address)


# -- cases with a scripted receiver: one farm each --------------------------------------


def _run_alone(tmp_path, redis_url: str, rx: RemoteWriteReceiver, exporter: Exporter,
               until: Callable[[RemoteWriteReceiver], Any], timeout: float) -> Farm:
    farm = Farm(tmp_path, redis_url, _config(("test", exporter.address)),
                {"STORAGE_TYPE": "prometheus", "PROMETHEUS_REMOTE_URL": rx.url})
    started = time.monotonic()
    farm.start("run")
    try:
        rx.wait_for(until, timeout=timeout)
        assert exporter.scrapes[0][0] - started < FIRST_SCRAPE_WITHIN
    except BaseException:
        farm.stop()
        print(farm.logs())
        raise
    return farm


def test_ordering(tmp_path, redis_url):
    """Ordering: 1,000 series, a receiver that sleeps 0-5 s before each answer; per
    series the timestamps still only go up, and no write of a series starts before the
    previous write of that series was answered."""
    rng = random.Random(1000)
    delays: dict[int, float] = {}

    def delay(number: int) -> float:
        delays[number] = rng.uniform(0.0, 5.0)
        return delays[number]

    # promhttp's order: the series sorted by their label value, as strings.
    body = "# HELP test \n# TYPE test gauge\n" + "".join(
        f'test{{i="{i}"}} 1\n' for i in sorted(map(str, range(1000))))
    exporter = Exporter(body=body.encode(), content_type=PROMHTTP)
    rx = RemoteWriteReceiver(delay=delay)

    def complete_scrapes(r: RemoteWriteReceiver) -> list[int]:
        per_ts: dict[int, int] = defaultdict(int)
        for labels, _, ts in r.samples():
            if labels[0] == ("__name__", "test"):
                per_ts[ts] += 1
        return sorted(ts for ts, n in per_ts.items() if n == 1000)

    farm = _run_alone(tmp_path, redis_url, rx, exporter,
                      lambda r: len(complete_scrapes(r)) >= 2, timeout=45)
    try:
        requests = [r for r in rx.accepted()]
        with rx._lock:
            answered = {n: d for n, d in delays.items()}
    finally:
        farm.stop()
        rx.stop()
        exporter.stop()
    assert rx.violations == []
    last: dict[Labels, tuple[int, float]] = {}  # series -> (timestamp, answered at)
    tests = 0
    per_ts: dict[int, set[str]] = defaultdict(set)
    for r in requests:
        done = r.received + answered[r.number]
        for labels, value, ts in r.samples:
            if labels in last:
                prev_ts, prev_done = last[labels]
                assert ts > prev_ts, (labels, prev_ts, ts)
                assert r.received >= prev_done, (labels, "sent before the last was answered")
            last[labels] = (ts, done)
            d = dict(labels)
            if d["__name__"] == "test":
                tests += 1
                assert value == 1.0
                per_ts[ts].add(d["i"])
    assert tests > 0
    # Every scrape is complete except perhaps the newest, still being written.
    stamps = sorted(per_ts)
    assert len(stamps) >= 2
    for ts in stamps[:-1]:
        assert len(per_ts[ts]) == 1000, (ts, len(per_ts[ts]))


def test_retries_500(tmp_path, redis_url):
    """Retries500: the first write is answered 500; its `now` sample is sent again."""
    exporter = DynamicExporter(_now_body)
    rx = RemoteWriteReceiver(responses=[500])
    farm = _run_alone(tmp_path, redis_url, rx, exporter,
                      lambda r: len(r.accepted()) >= 2, timeout=20)
    farm.stop()
    rx.stop()
    exporter.stop()
    assert rx.violations == []
    first = rx.requests[0]
    assert first.status == 500
    [rejected_ts] = [ts for labels, _, ts in first.samples if _contains(labels, __name__="now")]
    resent = [ts for labels, _, ts in rx.samples()
              if _contains(labels, __name__="now") and ts == rejected_ts]
    assert resent == [rejected_ts]
    # It is the same batch, resent as it was, before anything newer.
    assert rx.requests[1].status == 204
    assert rx.requests[1].samples == first.samples


def test_retries_400(tmp_path, redis_url):
    """Retries400: the first write is answered 400; its `now` sample is never sent again."""
    exporter = DynamicExporter(_now_body)
    rx = RemoteWriteReceiver(responses=[400])
    farm = _run_alone(tmp_path, redis_url, rx, exporter,
                      lambda r: len(r.accepted()) >= 3, timeout=20)
    farm.stop()
    rx.stop()
    exporter.stop()
    assert rx.violations == []
    first = rx.requests[0]
    assert first.status == 400
    [rejected_ts] = [ts for labels, _, ts in first.samples if _contains(labels, __name__="now")]
    again = [r.number for r in rx.requests[1:]
             if any(_contains(labels, __name__="now") and ts == rejected_ts
                    for labels, _, ts in r.samples)]
    assert again == []
    # Later scrapes are still delivered.
    nows = [ts for labels, _, ts in rx.samples() if _contains(labels, __name__="now")]
    assert len(nows) >= 3 and nows == sorted(set(nows)) and nows[0] > rejected_ts
