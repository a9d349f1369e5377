"""One scrape's samples, Prometheus' way: labels, metric relabeling, limits, staleness, report.

This is Prometheus 2.42's scrapeLoop.append and report (scrape/scrape.go), with the agent
appender's rules, sample by sample:

- samples are appended in exposition order while the document is parsed, so a document
  that fails half way still counts what came before the error in scrape_samples_scraped,
  scrape_samples_post_metric_relabeling and scrape_series_added (its samples are rolled
  back and the scrape is down);
- Prometheus keeps a per-target scrape cache of exposition series text. A series is
  "added" when its text is not in that cache; the cache survives failed and empty scrapes
  and forgets a series text only after a successful non-empty scrape that did not have it;
- staleness: the series of the previous scrape that the current one did not append get a
  StaleNaN. A failed scrape still counts the series it appended before failing, an empty
  or failed scrape resets the reference set, samples with an explicit timestamp are not
  tracked (nor marked stale);
- sample_limit counts appended samples (after metric relabeling), label limits apply to a
  series before external labels, a sample more than 10 minutes ahead is dropped, and a
  sample older than the newest one of its series (explicit timestamps) is dropped as out
  of order, as is a staleness marker older than that.

One difference is deliberate: a series exposed twice in one scrape is written once (the
first value), as a Prometheus server stores it. Prometheus' agent forwards both, and a
Prometheus remote-write receiver answers such a request with 400, losing the whole batch.
Both count the second sample in scrape_samples_post_metric_relabeling.

This is the hot path. A per-target `SeriesCache` maps an exposition series text to its
final, sorted label tuple (or to None when metric relabeling drops it), so an unchanged
series line costs one dict lookup instead of a parse and a relabel. The cache lives in
the worker's memory; a miss recomputes, so correctness never depends on which worker
runs a scrape. What must carry over from one scrape to the next is a `ScrapeState`,
passed in as `previous` and out as `ScrapeOutcome.series`: a dict of the series a
target's next scrape compares with for staleness (also what end-of-run staleness marks
stale), which also carries Prometheus' scrape-cache contents and the newest explicit
timestamps. `encode_state` / `decode_state` store it; a plain dict of series (no cache
contents) is accepted and then taken as the cache too.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from clymene import relabel
from clymene.scrape import STALE_NAN, STALE_NAN_BITS
from clymene.scrape.parser import (
    ParseError,
    TextShape,
    parse,
    parse_series,
    picker,
    text_shape,
    values_in_shape,
)

Labels = tuple[tuple[str, str], ...]
Sample = tuple[Labels, float, int]

REPORT_NAMES = (
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
)

_CACHE_LIMIT = 200_000
MAX_AHEAD_MS = 10 * 60 * 1000  # Prometheus refuses samples further in the future
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_SURROGATE = re.compile("[\udc80-\udcff]")


class ScrapeFailure(Exception):
    """The scrape as a whole fails (up 0); the message is the target's lastError."""


def fingerprint(labels: Labels) -> int:
    """A stable 64-bit hash of a label set, the same in every process."""
    h = hashlib.blake2b(digest_size=8)
    for name, value in labels:
        h.update(name.encode())
        h.update(b"\xff")
        h.update(value.encode())
        h.update(b"\xfe")
    return int.from_bytes(h.digest(), "little")


class ScrapeState(dict):
    """What a target's next scrape needs from the previous ones.

    The dict maps the series of Prometheus' staleness reference set (the series the
    previous scrape appended) to their fingerprints. `cache` maps the exposition series
    texts in Prometheus' scrape cache to True when they were seen since the cache was
    last cleaned (they survive the next cleaning); `last_ts` holds the newest timestamp
    appended for series that had an explicit timestamp."""

    __slots__ = ("cache", "last_ts", "_extra_fp", "_fp")

    def __init__(self, series: dict[Labels, int] | None = None,
                 cache: dict[str, bool] | None = None,
                 last_ts: dict[Labels, int] | None = None) -> None:
        super().__init__(series or {})
        self.cache: dict[str, bool] | None = cache  # None: unknown, taken as the series
        self.last_ts: dict[Labels, int] = last_ts or {}
        self._extra_fp = ""
        self._fp = ""  # set_fingerprint's result: a state is not changed once built


def set_fingerprint(fps: dict[Labels, int]) -> str:
    """Order-free fingerprint of a state: the sum of its series' fingerprints, and (for a
    ScrapeState) of its cache and timestamps."""
    state = fps if isinstance(fps, ScrapeState) else None
    if state is not None and state._fp:
        return state._fp  # a steady target hands the same state over at every scrape
    base = format(sum(fps.values()) & 0xFFFFFFFFFFFFFFFF, "016x") + format(len(fps), "x")
    if state is not None and (state.cache or state.last_ts):
        if not state._extra_fp:
            h = hashlib.blake2b(digest_size=8)
            for key in sorted(state.cache or ()):
                h.update(b"%s\xff%d\xfe" % (key.encode("utf-8", "surrogateescape"),
                                             state.cache[key]))  # type: ignore[index]
            for labels, ts in sorted(state.last_ts.items()):
                h.update(repr((labels, ts)).encode("utf-8", "surrogateescape"))
            state._extra_fp = h.hexdigest()
        base += "-" + state._extra_fp
    if state is not None:
        state._fp = base
    return base


def encode_state(state: dict[Labels, int]) -> bytes:
    """A state as compressed JSON: {"series": [[[name, value], ...], ...], "cache":
    {series text: seen}, "last_ts": [[labels, ts], ...]}."""
    doc: dict[str, Any] = {"series": [list(map(list, s)) for s in state]}
    if isinstance(state, ScrapeState):
        if state.cache is not None:
            doc["cache"] = {k: int(v) for k, v in state.cache.items()}
        if state.last_ts:
            doc["last_ts"] = [[list(map(list, lb)), ts] for lb, ts in state.last_ts.items()]
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return zlib.compress(text.encode("utf-8", "surrogateescape"), 1)


def decode_state(raw: bytes) -> ScrapeState:
    """The inverse of encode_state (also reads a bare JSON list of series)."""
    doc = json.loads(zlib.decompress(raw).decode("utf-8", "surrogateescape"))
    if isinstance(doc, list):
        doc = {"series": doc}
    series = {}
    for item in doc.get("series", []):
        labels = tuple((n, v) for n, v in item)
        series[labels] = fingerprint(labels)
    cache = doc.get("cache")
    return ScrapeState(series,
                       {k: bool(v) for k, v in cache.items()} if cache is not None else None,
                       {tuple((n, v) for n, v in lb): ts for lb, ts in doc.get("last_ts", [])})


@dataclass
class ScrapeSettings:
    """What a scrape needs from its job's configuration."""

    honor_labels: bool = False
    honor_timestamps: bool = True
    metric_relabel: list[Any] = field(default_factory=list)
    sample_limit: int = 0
    label_limit: int = 0
    label_name_length_limit: int = 0
    label_value_length_limit: int = 0
    external_labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Steady:
    """A target's steady state: the document layout of its last scrape and what a scrape
    of the same layout gives, given that it starts from `state`. Such a scrape appends
    the same series in the same order with new values: no series added, none stale,
    Prometheus' scrape cache unchanged, so its outcome is the labels zipped with the
    values, and its state is `state` again."""

    shape: TextShape
    labels: list[Labels]  # final labels of the kept samples, in document order
    kept: Callable[[list[float]], Any] | None  # picks their values (None: all are kept)
    state: ScrapeState
    scraped: int
    post_relabel: int


@dataclass
class SeriesCache:
    """Per-target memo: exposition series text -> (final labels, fingerprint), None when
    metric relabeling drops it, or the error message when the series fails the scrape;
    and the target's steady state, when it has one."""

    entries: dict[str, tuple[Labels, int] | str | None] = field(default_factory=dict)
    config_key: str = ""
    steady: Steady | None = None


@dataclass
class ScrapeOutcome:
    samples: list[Sample]
    series: ScrapeState  # the state the target's next scrape starts from
    up: bool
    error: str
    scraped: int
    post_relabel: int
    series_added: int
    stale_markers: int


# ---------------------------------------------------------------- labels of a sample


def _go_quote(s: str) -> str:
    """Go's strconv.Quote, close enough for error messages."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _labels_string(labels: Labels) -> str:
    """Prometheus' labels.String(): {a="b", c="d"}."""
    return "{" + ", ".join(f"{n}={_go_quote(v)}" for n, v in labels) + "}"


def _mutated(exposed: Any, target_labels: dict[str, str], s: ScrapeSettings
             ) -> dict[str, str] | None:
    """Prometheus' mutateSampleLabels: target labels (honor_labels, exported_*), then
    metric relabeling. None when the series is dropped."""
    present = {name for name, _ in exposed}
    lset = {name: value for name, value in exposed if value != ""}
    if s.honor_labels:
        for name, value in target_labels.items():
            if name not in present:  # an exposed empty value counts as present
                lset[name] = value
    else:
        conflicts = sorted(((name, lset[name]) for name in target_labels if lset.get(name)),
                           key=lambda nv: (len(nv[0]), nv[0]))
        lset.update(target_labels)
        taken: set[str] = set()
        for name, value in conflicts:
            new = name
            while True:
                new = "exported_" + new
                if new not in present and new not in target_labels and new not in taken:
                    break
            taken.add(new)
            lset[new] = value
        lset = {k: v for k, v in lset.items() if v != ""}
    if s.metric_relabel:
        result = relabel.relabel(lset, s.metric_relabel)
        if not result:
            return None
        lset = result
    return lset


def _limit_error(labels: Labels, s: ScrapeSettings) -> str:
    """Prometheus' verifyLabelLimits on the sorted labels (external labels not included)."""
    name = dict(labels).get("__name__", "")[:50]
    if s.label_limit and len(labels) > s.label_limit:
        return (f"label_limit exceeded (metric: {name}, number of labels: {len(labels)}, "
                f"limit: {s.label_limit})")
    for lname, value in labels:
        nlen = len(lname.encode("utf-8", "surrogateescape"))
        if s.label_name_length_limit and nlen > s.label_name_length_limit:
            return (f"label_name_length_limit exceeded (metric: {name}, label name: "
                    f"{lname[:50]}, length: {nlen}, limit: {s.label_name_length_limit})")
        vlen = len(value.encode("utf-8", "surrogateescape"))
        if s.label_value_length_limit and vlen > s.label_value_length_limit:
            return (f"label_value_length_limit exceeded (metric: {name}, label name: "
                    f"{lname[:50]}, value: {_go_quote(value[:50])}, length: {vlen}, "
                    f"limit: {s.label_value_length_limit})")
    return ""


def _resolve(exposed: Any, target_labels: dict[str, str], s: ScrapeSettings
             ) -> tuple[Labels, int] | str | None:
    """The final labels of an exposed series with their fingerprint, None when metric
    relabeling drops it, or the error that fails the scrape (Prometheus' checks, in its
    order: metric name present, names and values valid, label limits)."""
    lset = _mutated(exposed, target_labels, s)
    if lset is None:
        return None
    if "__name__" not in lset:
        return "missing metric name (__name__ label)"
    labels = tuple(sorted(lset.items()))
    for name, value in labels:
        if ((name == "__name__" and _METRIC_NAME.fullmatch(value) is None)
                or _LABEL_NAME.fullmatch(name) is None or _SURROGATE.search(value)):
            return "invalid metric name or label names: " + _labels_string(labels)
    if s.label_limit or s.label_name_length_limit or s.label_value_length_limit:
        error = _limit_error(labels, s)
        if error:
            return error
    if s.external_labels:
        extra = [(k, v) for k, v in s.external_labels.items() if k not in lset]
        if extra:
            labels = tuple(sorted(labels + tuple(extra)))
    return labels, fingerprint(labels)


# ---------------------------------------------------------------- the scrape


def process(body: bytes | None, content_type: str, error: str, ts: int,
            target_labels: dict[str, str], settings: ScrapeSettings, cache: SeriesCache,
            previous: dict[Labels, int] | None) -> ScrapeOutcome:
    """The samples of one scrape (without the report series, see `report_samples`).

    `body` is None when the fetch failed with `error` (or the scrape is failed without a
    fetch: target_limit). `previous` is the state the previous scrape returned (None for
    a target never scraped). Nothing passed in is modified (but the cache)."""
    steady = cache.steady
    if (steady is not None and previous is steady.state and body and not error
            and (not settings.sample_limit or steady.post_relabel <= settings.sample_limit)):
        values = values_in_shape(body, content_type, steady.shape)
        if values is not None:
            if steady.kept is not None:
                values = steady.kept(values)
            return ScrapeOutcome(samples=list(zip(steady.labels, values, repeat(ts))),
                                 series=steady.state, up=True, error="",
                                 scraped=steady.scraped, post_relabel=steady.post_relabel,
                                 series_added=0, stale_markers=0)
    cache.steady = None
    pcache: dict[str, bool] | None
    if isinstance(previous, ScrapeState):
        pcache, last_ts = previous.cache, previous.last_ts
    elif previous is None:
        pcache, last_ts = {}, {}  # a new target: Prometheus' cache starts empty
    else:
        pcache, last_ts = None, {}  # series only (stored without the cache)
    prev: dict[Labels, int] = previous or {}
    run = _Append(ts, target_labels, settings, cache, prev, pcache, last_ts)
    entries: list[tuple[str, float, int | None]] = []
    if body is not None and not error:
        try:
            entries = parse(body, content_type)
            perr = None
        except ParseError as exc:
            entries, perr = exc.entries, exc
        error = run.append(entries)
        # Prometheus keeps parsing past the sample limit; any other error wins over it.
        if not error and perr is not None:
            error = run.parse_failure(perr)
        if not error and run.limited:
            error = "sample limit exceeded"
    up = not error
    samples = run.samples if up else []  # a failed append is rolled back
    # Staleness: what the previous scrape had and this one did not append.
    stale = 0
    cur = run.cur
    if len(cur) != len(prev) or stale_candidates(prev, cur):
        for labels in prev:
            if labels not in cur:
                newest = last_ts.get(labels)
                if newest is None or ts >= newest:  # else refused as out of order
                    samples.append((labels, STALE_NAN, ts))
                    stale += 1
    new_cache = run.next_cache(entries, up, bool(body))
    new_last = last_ts
    if run.appended_ts or last_ts:
        new_last = dict(last_ts)
        if up:
            for labels, t in run.appended_ts.items():
                if t > new_last.get(labels, t - 1):
                    new_last[labels] = t
        new_last = {lb: t for lb, t in new_last.items() if t > ts or lb in run.appended_ts}
    state = ScrapeState(cur, new_cache, new_last)
    if (isinstance(previous, ScrapeState) and previous._extra_fp
            and new_cache == previous.cache and new_last == previous.last_ts):
        state._extra_fp = previous._extra_fp
    if up and body and not run.dups and not new_last and new_cache is not None:
        cache.steady = _steady(body, content_type, entries, run, state)
    return ScrapeOutcome(samples=samples, series=state, up=up, error=error,
                         scraped=run.total, post_relabel=run.added,
                         series_added=run.series_added, stale_markers=stale)


def _steady(body: bytes, content_type: str, entries: list[tuple[str, float, int | None]],
            run: _Append, state: ScrapeState) -> Steady | None:
    """The steady state after a successful scrape, when the next scrape of the same
    layout would give exactly what `Steady` says: every sample of the document appended
    or dropped by metric relabeling (no error, timestamp or series twice), and
    Prometheus' scrape cache holding just the appended series, none marked."""
    shape = text_shape(body, content_type)
    if shape is None or shape.keys != [key for key, _, _ in entries]:
        return None
    lookup = run.memo.entries
    resolved = [lookup.get(key) for key in shape.keys]
    kept = [i for i, r in enumerate(resolved) if r is not None]
    labels = [resolved[i][0] for i in kept]  # type: ignore[index]
    cached = state.cache
    if (len(labels) != len(run.cur) or labels != [s[0] for s in run.samples[:len(labels)]]
            or cached is None or True in cached.values()
            or cached.keys() != {shape.keys[i] for i in kept}):
        return None
    # Metric relabeling may drop some (or all) of the samples: pick the kept values.
    kept_values = None if len(kept) == len(resolved) else picker(kept)
    return Steady(shape, labels, kept_values, state, run.total, run.added)


def stale_candidates(prev: dict[Labels, int], cur: dict[Labels, int]) -> bool:
    """Whether some series of `prev` is not in `cur` (both the same size)."""
    return not prev.keys() <= cur.keys()


class _Append:
    """Prometheus' append of one document's samples.

    The common case (no explicit timestamp, no sample limit, cache contents known, no
    series with an explicit timestamp) is a few dict operations per sample; everything
    else goes through `_append_one`, which follows the appender chain step by step."""

    def __init__(self, ts: int, target_labels: dict[str, str], s: ScrapeSettings,
                 cache: SeriesCache, prev: dict[Labels, int], pcache: dict[str, bool] | None,
                 last_ts: dict[Labels, int]) -> None:
        self.ts = ts
        self.target_labels = target_labels
        self.s = s
        self.memo = cache
        self.prev = prev
        self.fallback = pcache is None  # cache contents unknown: take the series for it
        self.pcache: dict[str, bool] = {} if pcache is None else pcache
        self.last_ts = last_ts
        self.samples: list[Sample] = []
        self.cur: dict[Labels, int] = {}
        self.appended_ts: dict[Labels, int] = {}  # newest explicit timestamp appended
        self.new_keys: dict[str, None] = {}  # series texts added to Prometheus' cache
        self.not_cached: set[str] = set()  # new series texts whose append failed
        self.hits = 0  # samples whose series text was in the cache
        self.dups = 0  # samples of a series already written in this scrape
        self.total = self.added = self.series_added = 0
        self.appended = 0  # samples the sample limit counted
        self.limited = False
        self.emitted: set[Any] = set()  # what _append_one wrote: labels or (labels, ts)

    def append(self, entries: list[tuple[str, float, int | None]]) -> str:
        """Append the samples; returns the error that stopped the append, or "" (the
        sample limit does not stop it: see `limited`)."""
        s = self.s
        ts = self.ts
        lookup = self.memo.entries
        if len(lookup) > _CACHE_LIMIT:
            lookup.clear()
        pcache = self.pcache
        cur = self.cur
        samples = self.samples
        new_keys = self.new_keys
        honor_ts = s.honor_timestamps
        special = bool(s.sample_limit or self.fallback or self.last_ts)
        hits = dups = dropped = 0
        error = ""
        total = len(entries)
        for i, (key, value, explicit_ts) in enumerate(entries):
            hit = lookup.get(key, _MISS)
            if hit.__class__ is not tuple:
                if hit is _MISS:
                    try:
                        exposed = parse_series(key)
                    except ParseError as exc:
                        error, total = str(exc), i + 1
                        break
                    hit = _resolve(exposed, self.target_labels, s)
                    lookup[key] = hit
                if hit is None:
                    dropped += 1  # dropped by metric relabeling
                    continue
                if hit.__class__ is str:
                    error, total = hit, i + 1  # type: ignore[assignment]
                    break
            labels, fp = hit  # type: ignore[misc]
            if special or (explicit_ts is not None and honor_ts):
                self._append_one(key, labels, fp, value,
                                 explicit_ts if honor_ts else None)
            elif key in pcache or key in new_keys:
                hits += 1
                if labels in cur:
                    dups += 1  # a series twice in one scrape: the first value
                else:
                    cur[labels] = fp
                    samples.append((labels, value, ts))
            else:
                new_keys[key] = None
                if labels in cur:
                    dups += 1
                else:
                    cur[labels] = fp
                    samples.append((labels, value, ts))
        self.total = total
        self.added = total - dropped - (1 if error else 0)
        self.hits += hits
        self.dups += dups
        self.series_added += len(new_keys) - self.special_keys
        return error

    special_keys = 0  # entries of new_keys that _append_one added (and counted)

    def _append_one(self, key: str, labels: Labels, fp: int, value: float,
                    tp: int | None) -> None:
        """One sample through Prometheus' appender chain (the sample limit, at most 10
        minutes ahead, not older than its series' newest sample), then the scrape cache
        and staleness tracking."""
        ts = self.ts
        t = ts if tp is None else tp
        committed = True
        if self.s.sample_limit and struct.pack("<d", value) != _STALE_BYTES:
            self.appended += 1
            if self.appended > self.s.sample_limit:
                self.limited = True
                committed = False
        if committed:
            newest = self.last_ts.get(labels)
            committed = t <= ts + MAX_AHEAD_MS and (newest is None or t >= newest)
        cached = (key in self.pcache or key in self.new_keys
                  or (self.fallback and labels in self.prev))
        if committed:
            mark = labels if tp is None else (labels, t)
            if mark in self.emitted:
                self.dups += 1  # a series twice in one scrape: the first value
            else:
                self.emitted.add(mark)
                self.samples.append((labels, value, t))
            if tp is not None or labels in self.last_ts:
                if t > self.appended_ts.get(labels, t - 1):
                    self.appended_ts[labels] = t
        if cached:
            self.hits += 1
            if committed and tp is None:
                self.cur[labels] = fp
        else:
            if tp is None:
                self.cur[labels] = fp  # a new series is tracked even when refused
            if committed:
                self.new_keys[key] = None
                self.special_keys += 1
                if not self.limited:
                    self.series_added += 1
            else:
                self.not_cached.add(key)

    def parse_failure(self, exc: ParseError) -> str:
        """The error of a document that failed at `exc` after its `entries` appended."""
        if not exc.counted:
            return str(exc)
        self.total += 1  # Prometheus parsed the sample; appending it failed
        if exc.labels is not None and exc.reason.startswith("invalid metric name"):
            lset = _mutated(exc.labels, self.target_labels, self.s)
            if lset is not None:
                return (f"line {exc.line}: invalid metric name or label names: "
                        + _labels_string(tuple(sorted(lset.items()))))
        return str(exc)

    def next_cache(self, entries: list[tuple[str, float, int | None]], up: bool,
                   nonempty: bool) -> dict[str, bool] | None:
        """Prometheus' scrape cache after this scrape: the series texts seen since it was
        last cleaned are marked; a successful non-empty scrape cleans it (keeps only those,
        unmarked)."""
        pcache = self.pcache
        if self.fallback and not (up and nonempty):
            return None  # still unknown: the next scrape takes its series for it
        if up and nonempty and not self.new_keys and not self.dups \
                and self.hits == len(pcache) and not self.fallback \
                and True not in pcache.values():
            return pcache  # the same series as last time: nothing changes
        lookup = self.memo.entries
        touched = [key for key, _, _ in entries[:self.total]
                   if lookup.get(key).__class__ is tuple and key not in self.not_cached]
        if up and nonempty:
            out = {key: False for key, seen in pcache.items() if seen and not self.fallback}
            out.update(dict.fromkeys(touched, False))
            return out
        out = dict(pcache)
        out.update(dict.fromkeys(touched, True))
        return out


_MISS = object()
_STALE_BYTES = struct.pack("<Q", STALE_NAN_BITS)


def end_of_run(state: dict[Labels, int] | None, report: list[Labels], ts: int
               ) -> list[Sample]:
    """Prometheus' end-of-run staleness for a target that left discovery: a StaleNaN at
    `ts` (when its next scrape would have been) for the series of its last scrape and for
    its report series."""
    out: list[Sample] = []
    last_ts = state.last_ts if isinstance(state, ScrapeState) else {}
    for labels in state or ():
        newest = last_ts.get(labels)
        if newest is None or ts >= newest:
            out.append((labels, STALE_NAN, ts))
    out.extend((labels, STALE_NAN, ts) for labels in report)
    return out


def report_labels(target_labels: dict[str, str], external_labels: dict[str, str]
                  ) -> list[Labels]:
    """The label sets of the five report series of a target, in REPORT_NAMES order."""
    out = []
    for name in REPORT_NAMES:
        lset = dict(target_labels)
        lset["__name__"] = name
        for k, v in external_labels.items():
            lset.setdefault(k, v)
        out.append(tuple(sorted((k, v) for k, v in lset.items() if v != "")))
    return out


def report_samples(report: list[Labels], outcome: ScrapeOutcome, duration: float,
                   ts: int) -> list[Sample]:
    values = (1.0 if outcome.up else 0.0, duration, float(outcome.scraped),
              float(outcome.post_relabel), float(outcome.series_added))
    return [(labels, value, ts) for labels, value in zip(report, values, strict=True)]
