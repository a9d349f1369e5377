"""Counters of a long-running process (ingester, gateway) for its own `/metrics`, and
their delivery to the farm's Redis hash `clymene:stats`.

clymene.stats counts in the process; `Exporter.flush` drains those counts once a second
into a running total (served at the process' own /metrics) and, when a Redis client is
given, adds them to `clymene:stats` too, which the web process serves for the farm.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from clymene import registry, stats

log = logging.getLogger(__name__)

Gauges = Callable[[], list[tuple[str, str, float]]]  # (family, series text, value)


class Exporter:
    def __init__(self, redis_client: object | None = None) -> None:
        self.redis = redis_client
        self._totals: dict[str, float] = {}
        self._lock = threading.Lock()
        self._gauges: list[Gauges] = []

    def add_gauges(self, source: Gauges) -> None:
        self._gauges.append(source)

    def flush(self) -> None:
        counts = stats.drain()
        if not counts:
            return
        with self._lock:
            for key, value in counts.items():
                self._totals[key] = self._totals.get(key, 0.0) + value
        if self.redis is not None:
            try:
                registry.add_stats(self.redis, counts)  # type: ignore[arg-type]
            except Exception as exc:  # Redis down: the process' own /metrics still counts
                log.warning("could not add counters to Redis: %s", exc)

    def totals(self) -> dict[str, float]:
        """Every counter since the start (what /metrics shows)."""
        self.flush()
        with self._lock:
            return dict(self._totals)

    def render(self) -> bytes:
        """Prometheus text format: the counters, then the gauges."""
        lines: list[str] = []
        families: dict[str, list[str]] = {}
        for key, value in sorted(self.totals().items()):
            families.setdefault(key.split("{", 1)[0], []).append(f"{key} {_fmt(value)}")
        for family, samples in families.items():
            kind = "counter" if family.endswith("_total") else "untyped"
            lines.append(f"# TYPE {family} {kind}")
            lines.extend(samples)
        gauges: dict[str, list[str]] = {}
        for source in self._gauges:
            for family, series, value in source():
                gauges.setdefault(family, []).append(f"{series} {_fmt(value)}")
        for family, samples in gauges.items():
            lines.append(f"# TYPE {family} gauge")
            lines.extend(samples)
        return ("\n".join(lines) + "\n").encode()


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def run_flusher(exporter: Exporter, stop: threading.Event, interval: float = 1.0) -> None:
    while not stop.wait(interval):
        exporter.flush()
    exporter.flush()
