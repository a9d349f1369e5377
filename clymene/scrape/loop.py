"""One scrape's samples, Prometheus' way: labels, metric relabeling, limits, staleness, report.

This is the hot path. A per-target `SeriesCache` maps an exposition series text to its
final, sorted label tuple (or to None when metric relabeling drops it), so an unchanged
series line costs one dict lookup instead of a parse and a relabel. The cache lives in
the worker's memory; a miss recomputes, so correctness never depends on which worker
runs a scrape. What must carry over from one scrape to the next (the previous series set,
for staleness markers and scrape_series_added) is passed in and out explicitly and kept in
Redis by the runner.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from clymene import relabel
from clymene.scrape import STALE_NAN
from clymene.scrape.parser import ParseError, parse, parse_series

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


def set_fingerprint(fps: dict[Labels, int]) -> str:
    """Order-free fingerprint of a series set: the sum of its members' fingerprints."""
    return format(sum(fps.values()) & 0xFFFFFFFFFFFFFFFF, "016x") + format(len(fps), "x")


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
class SeriesCache:
    """Per-target cache: exposition series text -> (final labels, fingerprint) or None."""

    entries: dict[str, tuple[Labels, int] | None] = field(default_factory=dict)
    config_key: str = ""


@dataclass
class ScrapeOutcome:
    samples: list[Sample]
    series: dict[Labels, int]  # series of this scrape that staleness tracks, with fingerprints
    up: bool
    error: str
    scraped: int
    post_relabel: int
    series_added: int
    stale_markers: int


def _final_labels(exposed: tuple[tuple[str, str], ...], target_labels: dict[str, str],
                  s: ScrapeSettings) -> Labels | None:
    """Prometheus' mutateSampleLabels + metric relabeling + external labels, sorted."""
    lset = {name: value for name, value in exposed if value != ""}
    if s.honor_labels:
        for name, value in target_labels.items():
            if name not in lset:
                lset[name] = value
    else:
        conflicts = [(name, lset[name]) for name in target_labels if lset.get(name)]
        lset.update(target_labels)
        if conflicts:
            conflicts.sort(key=lambda nv: len(nv[0]))
            taken: set[str] = set()
            exposed_names = {name for name, _ in exposed}
            for name, value in conflicts:
                new = name
                while True:
                    new = "exported_" + new
                    if new not in exposed_names and new not in target_labels and new not in taken:
                        break
                taken.add(new)
                lset[new] = value
    if s.metric_relabel:
        result = relabel.relabel(lset, s.metric_relabel)
        if not result:
            return None
        lset = result
    if "__name__" not in lset:
        raise ScrapeFailure("__name__ label is mandatory")
    for name, value in s.external_labels.items():
        if name not in lset:
            lset[name] = value
    return tuple(sorted((n, v) for n, v in lset.items() if v != ""))


def _check_label_limits(labels: Labels, s: ScrapeSettings) -> None:
    if s.label_limit and len(labels) - len(s.external_labels) > s.label_limit:
        raise ScrapeFailure(f"label_limit exceeded (metric: {dict(labels).get('__name__')}, "
                            f"number of labels: {len(labels)}, limit: {s.label_limit})")
    for name, value in labels:
        if s.label_name_length_limit and len(name) > s.label_name_length_limit:
            raise ScrapeFailure(f"label_name_length_limit exceeded (metric: "
                                f"{dict(labels).get('__name__')}, label name: {name}, "
                                f"limit: {s.label_name_length_limit})")
        if s.label_value_length_limit and len(value) > s.label_value_length_limit:
            raise ScrapeFailure(f"label_value_length_limit exceeded (metric: "
                                f"{dict(labels).get('__name__')}, label name: {name}, "
                                f"value: {value!r}, limit: {s.label_value_length_limit})")


def _line_of(body: bytes, key: str) -> int:
    idx = body.find(key.encode("utf-8", "replace"))
    return body.count(b"\n", 0, idx) + 1 if idx >= 0 else 0


def process(body: bytes | None, content_type: str, error: str, ts: int,
            target_labels: dict[str, str], settings: ScrapeSettings, cache: SeriesCache,
            previous: dict[Labels, int] | None) -> ScrapeOutcome:
    """The samples of one scrape (without the report series, see `report_samples`).

    `body` is None when the fetch failed with `error`. `previous` is the series set of the
    target's previous scrape (None when unknown: no staleness markers then).
    """
    samples: list[Sample] = []
    series: dict[Labels, int] = {}
    scraped = 0
    if body is not None:
        try:
            samples, series, scraped = _samples(body, content_type, ts, target_labels,
                                                settings, cache)
        except ParseError as exc:
            error = str(exc)
        except ScrapeFailure as exc:
            error = str(exc)
        if error:
            samples, series = [], {}
    up = not error
    stale = 0
    if previous:
        for labels in previous:
            if labels not in series:
                samples.append((labels, STALE_NAN, ts))
                stale += 1
    added = sum(1 for labels in series if not previous or labels not in previous)
    post = len(samples) - stale
    return ScrapeOutcome(samples=samples, series=series, up=up, error=error, scraped=scraped,
                         post_relabel=post if up else 0, series_added=added if up else 0,
                         stale_markers=stale)


def _samples(body: bytes, content_type: str, ts: int, target_labels: dict[str, str],
             s: ScrapeSettings, cache: SeriesCache) -> tuple[list[Sample], dict[Labels, int], int]:
    entries = parse(body, content_type)
    lookup = cache.entries
    if len(lookup) > _CACHE_LIMIT:
        lookup.clear()
    honor_ts = s.honor_timestamps
    check_limits = s.label_limit or s.label_name_length_limit or s.label_value_length_limit
    samples: list[Sample] = []
    series: dict[Labels, int] = {}
    seen: set[Labels] = set()
    for key, value, explicit_ts in entries:
        try:
            hit = lookup[key]
        except KeyError:
            try:
                exposed = parse_series(key)
            except ParseError as exc:
                if not exc.line:
                    exc.line = _line_of(body, key)
                raise
            labels = _final_labels(exposed, target_labels, s)
            if labels is not None:
                if check_limits:
                    _check_label_limits(labels, s)
                hit = (labels, fingerprint(labels))
            else:
                hit = None
            lookup[key] = hit
        if hit is None:
            continue
        labels = hit[0]
        if labels in seen:
            continue  # Prometheus refuses a duplicate sample for the same timestamp
        seen.add(labels)
        if explicit_ts is not None and honor_ts:
            samples.append((labels, value, explicit_ts))
        else:
            samples.append((labels, value, ts))
            series[labels] = hit[1]  # staleness is tracked only without explicit timestamps
    if s.sample_limit and len(samples) > s.sample_limit:
        raise ScrapeFailure("sample limit exceeded")
    return samples, series, len(entries)


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
