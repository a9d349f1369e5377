"""Differential harness: Prometheus 2.42 (agent mode) and clymene on the same targets.

    targets = TargetSet()
    targets.add("doc-x", [Step(b"a 1\\n")])          # one HTTP server per target
    run = Run(tmp_path, redis_url, config_yaml, targets)  # "{{doc-x}}": its address
    run.start()
    ...                                               # wait (UpCounter), change things
    run.fetch_targets_api(); run.stop()
    run.prometheus, run.clymene                       # the Delivery of each system
    compare_job(run.prometheus, run.clymene, "job", need=4)   # [] when the same

Every target is a scripted HTTP server on its own 127.0.0.1 port. It tells the two
scrapers apart by their User-Agent and answers request k of each with step k of its
script (the last step repeats), so scrape k of Prometheus and scrape k of clymene see
the same document whatever their timing.

A `Delivery` is what one system's remote writes brought: samples grouped by series, the
targets (the label sets of their `up` series) with their scrape timestamps, and each
series assigned to the target that scraped it. Scrape k of a target is the set of its
samples at its k-th scrape timestamp; comparing scrape k of one system with scrape k of
the other compares timestamps by scrape, not by millisecond.
"""

from __future__ import annotations

import json
import math
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.farm import Farm
from tests.receiver import RemoteWriteReceiver
from tests.servers import Server, http_get, start_prometheus

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
STALE_NAN_BITS = 0x7FF0000000000002
REPORT_NAMES = ("up", "scrape_duration_seconds", "scrape_samples_scraped",
                "scrape_samples_post_metric_relabeling", "scrape_series_added")

Labels = tuple[tuple[str, str], ...]

# ---------------------------------------------------------------- scripted targets


@dataclass
class Step:
    """One answer of a target. `body` may be a function of the request path (with its
    query string); `truncate` sends a Content-Length larger than the body and closes."""

    body: bytes | Callable[[str], bytes] = b""
    content_type: str = TEXT
    status: int = 200
    delay: float = 0.0
    truncate: bool = False


def client_of(user_agent: str) -> str:
    return "prometheus" if user_agent.startswith("Prometheus/") else "clymene"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Dozens of jobs scrape the shared echo targets in the same second: a deep backlog,
    # or some connections are refused.
    request_queue_size = 256


class ScriptedTarget:
    """An HTTP target on its own port answering each client's k-th request with step k."""

    def __init__(self, name: str, steps: list[Step]) -> None:
        if not steps:
            raise ValueError(f"target {name}: no steps")
        self.name = name
        self.steps = steps
        self.requests: dict[str, list[tuple[float, str]]] = defaultdict(list)
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner._answer(self)

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        client = client_of(handler.headers.get("User-Agent", ""))
        with self._lock:
            k = len(self.requests[client])
            self.requests[client].append((time.time(), handler.path))
        step = self.steps[min(k, len(self.steps) - 1)]
        if step.delay:
            time.sleep(step.delay)
        body = step.body(handler.path) if callable(step.body) else step.body
        try:
            handler.send_response(step.status)
            handler.send_header("Content-Type", step.content_type)
            if step.truncate:
                handler.send_header("Content-Length", str(len(body) + 100))
                handler.send_header("Connection", "close")
                handler.end_headers()
                handler.wfile.write(body)
                handler.wfile.flush()
                handler.close_connection = True
                return
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except OSError:
            pass

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class TargetSet:
    """The scripted targets of a run, by name."""

    def __init__(self) -> None:
        self.targets: dict[str, ScriptedTarget] = {}

    def add(self, name: str, steps: list[Step]) -> ScriptedTarget:
        if name in self.targets:
            raise ValueError(f"target {name} defined twice")
        target = ScriptedTarget(name, steps)
        self.targets[name] = target
        return target

    def __getitem__(self, name: str) -> ScriptedTarget:
        return self.targets[name]

    def substitute(self, text: str) -> str:
        """Replace every `{{name}}` with that target's address."""
        for name, target in self.targets.items():
            text = text.replace("{{" + name + "}}", target.address)
        if "{{" in text:
            start = text.index("{{")
            raise ValueError(f"unknown target placeholder {text[start:start + 60]!r}")
        return text

    def stop(self) -> None:
        for target in self.targets.values():
            target.stop()


# ---------------------------------------------------------------- what a system delivered


def bits(value: float) -> int:
    """The value as compared: a NaN by its bits (StaleNaN is not a normal NaN), any other
    number by value (-0 equals 0: Prometheus' remote write cannot even send -0, proto3
    leaves a zero value out)."""
    if value != value:
        return struct.unpack("<Q", struct.pack("<d", value))[0]
    return struct.unpack("<Q", struct.pack("<d", value + 0.0))[0]


def show(value_bits: int) -> str:
    """A value's bits for messages: the float, with StaleNaN and NaN payloads visible."""
    if value_bits == STALE_NAN_BITS:
        return "StaleNaN"
    value = struct.unpack("<d", struct.pack("<Q", value_bits))[0]
    if math.isnan(value):
        return f"NaN(0x{value_bits:016x})"
    return repr(value)


def target_key(labels: Labels) -> Labels:
    return tuple(kv for kv in labels if kv[0] != "__name__")


def name_of(labels: Labels) -> str:
    return dict(labels).get("__name__", "")


@dataclass
class TargetRecord:
    key: Labels  # the labels of its `up` series without __name__ (external labels included)
    scrapes: list[int] = field(default_factory=list)  # scrape timestamps, increasing
    series: set[Labels] = field(default_factory=set)  # series assigned to it (report too)


@dataclass
class Scrape:
    ts: int
    values: dict[Labels, int]  # series -> value bits at ts (scrape_duration_seconds: 0)
    duplicates: list[Labels] = field(default_factory=list)  # later samples of a series


class Delivery:
    """Samples one system delivered, organised by target and scrape."""

    def __init__(self, name: str, samples: list[tuple[Labels, float, int]]) -> None:
        self.name = name
        self.samples = samples
        self.series: dict[Labels, list[tuple[int, int]]] = defaultdict(list)
        for labels, value, ts in samples:
            self.series[labels].append((ts, bits(value)))
        self.targets: dict[Labels, TargetRecord] = {}
        for labels, points in self.series.items():
            if name_of(labels) == "up":
                key = target_key(labels)
                rec = TargetRecord(key, sorted({ts for ts, b in points if b != STALE_NAN_BITS}))
                self.targets[key] = rec
        self._scrape_sets = {key: set(rec.scrapes) for key, rec in self.targets.items()}
        self._by_ts: dict[int, list[Labels]] = defaultdict(list)
        for key, rec in self.targets.items():
            for ts in rec.scrapes:
                self._by_ts[ts].append(key)
        self.owner: dict[Labels, Labels | None] = {}
        for labels in self.series:
            owner = self._owner_of(labels)
            self.owner[labels] = owner
            if owner is not None:
                self.targets[owner].series.add(labels)

    def _owner_of(self, labels: Labels) -> Labels | None:
        """Among the targets that scraped when the series has samples (all targets for a
        series with explicit timestamps only), the one of the series' job, then the one
        with most of its labels on the series, then most of the series' timestamps. None
        when that is not one target (targets often share scrape timestamps)."""
        if name_of(labels) in REPORT_NAMES and target_key(labels) in self.targets:
            return target_key(labels)
        overlap: dict[Labels, int] = defaultdict(int)
        for ts in {ts for ts, _ in self.series[labels]}:
            for key in self._by_ts.get(ts, ()):
                overlap[key] += 1
        have = set(labels)
        job = ("job", dict(labels).get("job"))
        scores = {key: (job in key, len(have.intersection(key)), overlap[key])
                  for key in (overlap or self.targets)}
        best = max(scores.values(), default=(False, 0, 0))
        winners = [k for k, v in scores.items() if v == best]
        return winners[0] if len(winners) == 1 and best[1:] != (0, 0) else None

    def target(self, key: Labels) -> TargetRecord:
        try:
            return self.targets[key]
        except KeyError:
            raise AssertionError(f"{self.name}: no target with labels {dict(key)}") from None

    def keys_of_job(self, job: str) -> list[Labels]:
        return sorted(key for key in self.targets if dict(key).get("job") == job)

    def scrape(self, key: Labels, k: int, exclude: frozenset[str] = frozenset()) -> Scrape:
        """The k-th scrape of a target: every sample of its series at that timestamp.
        A series with several samples at that timestamp keeps its first value, the
        others are listed in `duplicates`."""
        rec = self.target(key)
        ts = rec.scrapes[k]
        out = Scrape(ts, {})
        for labels in rec.series:
            if name_of(labels) in exclude:
                continue
            for t, b in self.series[labels]:
                if t == ts:
                    if labels in out.values:
                        out.duplicates.append(labels)
                    else:
                        out.values[labels] = 0 if name_of(labels) == "scrape_duration_seconds" else b
        return out

    def off_scrape(self, key: Labels) -> dict[Labels, list[tuple[int, int]]]:
        """Samples of a target's series at timestamps that are none of its scrapes, in
        arrival order: explicit exposition timestamps and end-of-run staleness markers."""
        rec = self.target(key)
        scrape_set = self._scrape_sets[key]
        out: dict[Labels, list[tuple[int, int]]] = {}
        for labels in rec.series:
            points = [(t, b) for t, b in self.series[labels] if t not in scrape_set]
            if points:
                out[labels] = points
        return out

    def unowned(self) -> list[Labels]:
        return [labels for labels, owner in self.owner.items() if owner is None]


def describe(labels: Labels, key: Labels) -> str:
    """A series for messages: its name and the labels its target does not have."""
    d = dict(labels)
    name = d.pop("__name__", "")
    rest = {k: v for k, v in d.items() if dict(key).get(k) != v}
    return name + (str(rest) if rest else "")


def describe_scrape_diff(a: Scrape, b: Scrape, key: Labels, name_a: str, name_b: str) -> str:
    lines = []
    for labels in sorted(set(a.values) | set(b.values)):
        va, vb = a.values.get(labels), b.values.get(labels)
        if va != vb:
            sa = "-" if va is None else show(va)
            sb = "-" if vb is None else show(vb)
            lines.append(f"    {describe(labels, key)}: {name_a}={sa} {name_b}={sb}")
    return "\n".join(lines)


# ---------------------------------------------------------------- a run of both systems


class Run:
    """Prometheus agent -> receiver P and clymene -> receiver C, same config and targets.

    clymene runs as `clymene run` plus `extra_workers` more worker processes.

    `config_yaml` is a Prometheus config (global + scrape_configs) in which `{{name}}`
    stands for the address of target `name`."""

    def __init__(self, tmp_path: Path, redis_url: str, config_yaml: str, targets: TargetSet,
                 worker_concurrency: int = 8, extra_workers: int = 1) -> None:
        self.tmp_path = Path(tmp_path)
        self.targets = targets
        self.config_yaml = targets.substitute(config_yaml)
        self.config = yaml.safe_load(self.config_yaml)
        self.rx_prometheus = RemoteWriteReceiver()
        self.rx_clymene = RemoteWriteReceiver()
        self.server: Server | None = None
        (self.tmp_path / "clymene").mkdir(exist_ok=True)
        self.farm = Farm(self.tmp_path / "clymene", redis_url, self.config_yaml,
                         {"STORAGE_TYPE": "prometheus",
                          "PROMETHEUS_REMOTE_URL": self.rx_clymene.url,
                          "WORKER_CONCURRENCY": str(worker_concurrency),
                          "LOG_LEVEL": "warning"})
        self.worker_concurrency = worker_concurrency
        self.extra_workers = extra_workers
        self.prometheus: Delivery | None = None
        self.clymene: Delivery | None = None
        self.api: dict[str, dict[str, Any]] = {}
        self.started = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        self.farm.start("run")
        # More worker processes: consecutive scrapes of a target run in different
        # processes, so what a scrape hands to the next goes through Redis.
        for _ in range(self.extra_workers):
            self.farm.start("worker", "--concurrency", str(self.worker_concurrency),
                            "--pool", "threads")
        (self.tmp_path / "prometheus").mkdir(exist_ok=True)
        self.server = start_prometheus(self.tmp_path / "prometheus", self.config_yaml,
                                       agent=True, remote_write_url=self.rx_prometheus.url)

    def snapshot(self) -> tuple[Delivery, Delivery]:
        return (Delivery("prometheus", self.rx_prometheus.samples()),
                Delivery("clymene", self.rx_clymene.samples()))

    def fetch_targets_api(self) -> None:
        assert self.server is not None
        status, body = http_get(self.server.url + "/api/v1/targets")
        assert status == 200, body
        self.api["prometheus"] = json.loads(body)["data"]
        self.api["clymene"] = self.farm.targets()

    def stop(self) -> None:
        """Stop both systems (Prometheus flushes its remote write queue on SIGTERM)."""
        try:
            if self.server is not None:
                self.server.stop()
        finally:
            self.farm.stop()
        self.prometheus, self.clymene = self.snapshot()

    def close(self) -> None:
        self.rx_prometheus.stop()
        self.rx_clymene.stop()

    def logs(self) -> str:
        out = self.farm.logs()
        if self.server is not None:
            out += "\n===== prometheus\n" + self.server.log()[-6000:]
        return out


class UpCounter:
    """Scrapes delivered so far per target (non-stale `up` samples), read incrementally."""

    def __init__(self, rx: RemoteWriteReceiver) -> None:
        self.rx = rx
        self.seen = 0
        self.counts: dict[Labels, int] = defaultdict(int)
        self.stale: set[Labels] = set()

    def update(self) -> dict[Labels, int]:
        accepted = self.rx.accepted()
        for request in accepted[self.seen:]:
            for labels, samples in request.series:
                if labels and dict(labels).get("__name__") == "up":
                    for value, _ts in samples:
                        if bits(value) == STALE_NAN_BITS:
                            self.stale.add(target_key(labels))
                        else:
                            self.counts[target_key(labels)] += 1
        self.seen = len(accepted)
        return self.counts


def start_redis_exporter(tmp_path: Path, redis_port: int) -> Server:
    """Debian's prometheus-redis-exporter on a free port, pointed at a Redis."""
    import shutil

    from tests.servers import _http_ready, _start

    binary = shutil.which("prometheus-redis-exporter") or "/usr/bin/prometheus-redis-exporter"

    def argv(port: int) -> list[str]:
        return [binary, f"-redis.addr=redis://127.0.0.1:{redis_port}",
                f"-web.listen-address=127.0.0.1:{port}"]

    return _start("redis-exporter", Path(tmp_path), argv, _http_ready("/metrics"))


# ---------------------------------------------------------------- comparisons


def compare_job(p: Delivery, c: Delivery, job: str, need: int,
                exclude: frozenset[str] = frozenset()) -> list[str]:
    """What differs between the deliveries of a job's targets: the targets (their `up`
    label sets), then for each target scrape k of Prometheus against scrape k of
    clymene (every scrape both delivered completely, at least `need`), then the samples
    with explicit timestamps. Series named in `exclude` are left out."""
    problems: list[str] = []
    keys_p, keys_c = p.keys_of_job(job), c.keys_of_job(job)
    if keys_p != keys_c:
        return [f"job {job}: targets differ:\n  prometheus {[dict(k) for k in keys_p]}\n"
                f"  clymene    {[dict(k) for k in keys_c]}"]
    for key in keys_p:
        for d in (p, c):
            order = [ts for labels in d.target(key).series if name_of(labels) == "up"
                     and target_key(labels) == key for ts, _ in d.series[labels]]
            if any(b < a for a, b in zip(order, order[1:], strict=False)):
                problems.append(f"{d.name}: the scrapes of {dict(key)} arrived out of "
                                f"order: {order}")
        # The last scrape of each may be cut short by the stop: not compared.
        n = min(len(p.target(key).scrapes), len(c.target(key).scrapes)) - 1
        if n < need:
            problems.append(f"{dict(key)}: only {n} complete scrapes of both "
                            f"(prometheus {len(p.target(key).scrapes)}, clymene "
                            f"{len(c.target(key).scrapes)}); {need} needed")
            continue
        for k in range(n):
            a, b = p.scrape(key, k, exclude), c.scrape(key, k, exclude)
            # Prometheus' agent forwards every sample of a series exposed twice; clymene
            # writes the first. Both write an exposed series that has a report series'
            # labels (an exposed `up`) and the report sample.
            expected = sorted(x for x in a.duplicates if name_of(x) in REPORT_NAMES)
            if sorted(b.duplicates) != expected:
                problems.append(f"scrape {k}: series written twice: clymene "
                                f"{[describe(x, key) for x in b.duplicates]}, expected "
                                f"{[describe(x, key) for x in expected]}")
            if a.values != b.values:
                problems.append(f"scrape {k} of {dict(key)} differs:\n"
                                + describe_scrape_diff(a, b, key, p.name, c.name))
        problems += compare_explicit(p, c, key, exclude)
    return problems


def compare_explicit(p: Delivery, c: Delivery, key: Labels,
                     exclude: frozenset[str] = frozenset()) -> list[str]:
    """Samples at timestamps that are none of the target's scrapes (explicit exposition
    timestamps), per series in arrival order. They cannot be told apart by scrape, and
    the two runs have different lengths, so the shorter sequence must start the longer
    one (the last step of a script repeats)."""
    problems = []
    off_p, off_c = p.off_scrape(key), c.off_scrape(key)
    for labels in sorted(set(off_p) | set(off_c)):
        if name_of(labels) in exclude:
            continue
        a, b = off_p.get(labels, []), off_c.get(labels, [])
        m = min(len(a), len(b))
        if a[:m] != b[:m] or (m == 0 and (a or b)):
            problems.append(f"{describe(labels, key)} with explicit timestamps differs:\n"
                            f"    prometheus {[(t, show(v)) for t, v in a[:8]]}\n"
                            f"    clymene    {[(t, show(v)) for t, v in b[:8]]}")
    return problems


API_FIELDS = ("labels", "scrapePool", "scrapeUrl", "scrapeInterval", "scrapeTimeout")


def compare_api(api: dict[str, dict[str, Any]], job: str, discovered: bool = True,
                health: bool = False) -> list[str]:
    """The job's targets in both /api/v1/targets: active targets (their labels, pool,
    URL, interval, timeout; discovered labels when `discovered`; health when `health`,
    which is the outcome of each system's last scrape, taken at different moments) and
    the discovered labels of the dropped ones."""
    fields = API_FIELDS + (("health",) if health else ()) + \
        (("discoveredLabels",) if discovered else ())
    out = {}
    for system, body in api.items():
        active = sorted(({f: t.get(f) for f in fields} for t in body["activeTargets"]
                         if t["scrapePool"] == job), key=lambda t: json.dumps(t, sort_keys=True))
        dropped = sorted((t["discoveredLabels"] for t in body["droppedTargets"]
                          if t["discoveredLabels"].get("job") == job),
                         key=lambda d: json.dumps(d, sort_keys=True))
        out[system] = (active, dropped)
    (pa, pd), (ca, cd) = out["prometheus"], out["clymene"]
    problems = []
    if pa != ca:
        problems.append(f"job {job}: active targets differ:\n  prometheus {pa}\n  clymene    {ca}")
    if pd != cd:
        problems.append(f"job {job}: dropped targets differ:\n  prometheus {pd}\n  clymene    {cd}")
    return problems


def last_errors(api: dict[str, dict[str, Any]], job: str) -> dict[str, list[str]]:
    """The lastError of the job's targets in each system, sorted."""
    return {system: sorted(t["lastError"] for t in body["activeTargets"]
                           if t["scrapePool"] == job)
            for system, body in api.items()}


def up_values(d: Delivery, job: str) -> list[float]:
    """Every `up` value of a job's targets at all but their last scrape (the last one may
    be cut short by the stop), exposed `up` series included."""
    out = []
    for key in d.keys_of_job(job):
        scrapes = set(d.target(key).scrapes[:-1])
        for labels in d.target(key).series:
            if name_of(labels) == "up":
                out += [struct.unpack("<d", struct.pack("<Q", b))[0]
                        for t, b in d.series[labels] if t in scrapes]
    return out
