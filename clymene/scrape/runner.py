"""One scheduled scrape of one target, start to finish, with its state in Redis.

lock the target -> fetch -> samples (scrape cache, relabeling, staleness) -> write to
every storage -> save state and counters -> unlock. The lock makes scrapes of a target
never overlap, and because it is released only after the write, a target's batches
reach storage in order. The previous series set (for staleness markers) is kept in Redis,
so consecutive scrapes may run on different workers or hosts; each worker keeps a copy
and only reads Redis's when another worker scraped the target last.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

import redis

from clymene import config as config_module
from clymene import registry, stats
from clymene.registry import Target
from clymene.scrape import loop
from clymene.scrape.http import Fetcher, ScrapeError
from clymene.storage import Storage, WriteError

log = logging.getLogger(__name__)

_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def write_budget(target: Target) -> float:
    """Seconds a scrape may spend writing before it gives the batch up."""
    return max(2 * target.interval, 30.0)


@dataclass
class _TargetMemory:
    cache: loop.SeriesCache
    series: dict[loop.Labels, int] | None
    series_fp: str


class Runner:
    """Runs scrapes; one per worker process (it holds that process' caches)."""

    def __init__(self, client: redis.Redis, storages: list[Storage]):
        self.redis = client
        self.storages = storages
        self._release = client.register_script(_RELEASE_LOCK)
        self._targets: dict[str, Target] = {}
        self._config: tuple[str, Any] | None = None  # (rev, Config)
        self._jobs: dict[tuple[str, str], tuple[Fetcher, loop.ScrapeSettings, list]] = {}
        self._memory: dict[str, _TargetMemory] = {}

    # -- lookups, cached per process ------------------------------------------------
    def _target(self, target_id: str, rev: str) -> Target | None:
        t = self._targets.get(target_id)
        if t is None or t.rev != rev:
            t = registry.get_target(self.redis, target_id)
            if t is None:
                self._targets.pop(target_id, None)
                return None
            self._targets[target_id] = t
        return t

    def _job(self, target: Target) -> tuple[Fetcher, loop.ScrapeSettings, list]:
        key = (target.job, target.config_rev)
        job = self._jobs.get(key)
        if job is not None:
            return job
        if self._config is None or self._config[0] != target.config_rev:
            loaded = registry.load_config_text(self.redis)
            if loaded is None:
                raise RuntimeError("no configuration in Redis (is discovery running?)")
            text, source, rev = loaded
            self._config = (rev, config_module.load_string(text, source, None))
            self._jobs = {}
        cfg = self._config[1]
        sc = next((j for j in cfg.scrape_configs if j.job_name == target.job), None)
        if sc is None:
            raise RuntimeError(f"job {target.job!r} is not in the configuration")
        external = dict(cfg.global_config.external_labels or {})
        settings = loop.ScrapeSettings(
            honor_labels=sc.honor_labels, honor_timestamps=sc.honor_timestamps,
            metric_relabel=list(sc.metric_relabel_configs),
            sample_limit=sc.sample_limit or 0, label_limit=sc.label_limit or 0,
            label_name_length_limit=sc.label_name_length_limit or 0,
            label_value_length_limit=sc.label_value_length_limit or 0,
            external_labels=external)
        job = (Fetcher(sc), settings, [])
        self._jobs[key] = job
        return job

    # -- the scrape -------------------------------------------------------------
    def run(self, target_id: str, rev: str, due: float | None = None) -> str:
        """Scrape the target once. Returns the outcome: up, down, skipped or unknown."""
        start_wall = time.time()
        if due is not None:
            stats.inc("clymene_scheduling_lag_seconds_sum", max(0.0, start_wall - due))
            stats.inc("clymene_scheduling_lag_seconds_count")
        target = self._target(target_id, rev)
        if target is None:
            stats.inc("clymene_scrapes_skipped_total", reason="unknown_target")
            self._flush_stats()
            return "unknown"
        budget = write_budget(target)
        lock_ttl_ms = int((target.timeout + budget + 5) * 1000)
        token = uuid.uuid4().hex
        lock = registry.lock_key(target_id)
        if not self.redis.set(lock, token, nx=True, px=lock_ttl_ms):
            # The previous scrape of this target is still running or writing.
            stats.inc("clymene_scrapes_skipped_total", job=target.job, reason="overlap")
            self._flush_stats()
            return "skipped"
        try:
            return self._scrape_locked(target, start_wall, budget)
        finally:
            self._release(keys=[lock], args=[token])

    def _scrape_locked(self, target: Target, start_wall: float, budget: float) -> str:
        fetcher, settings, _ = self._job(target)
        state_key = registry.state_key(target.id)
        memory = self._memory.get(target.id)
        if memory is None or memory.cache.config_key != target.rev:
            memory = _TargetMemory(loop.SeriesCache(config_key=target.rev), None, "")
            self._memory[target.id] = memory
        stored_fp = self.redis.hget(state_key, "series_fp")
        stored_fp = stored_fp.decode() if stored_fp else ""
        if stored_fp != memory.series_fp or memory.series is None:
            memory.series = self._load_series(state_key) if stored_fp else None
            memory.series_fp = stored_fp

        ts = int(start_wall * 1000)
        t0 = time.perf_counter()
        body: bytes | None = None
        content_type = ""
        error = ""
        try:
            body, content_type = fetcher.fetch(target.scrape_url, target.timeout)
        except ScrapeError as exc:
            error = str(exc)
        except OSError as exc:
            error = str(exc)
        outcome = loop.process(body, content_type, error, ts, target.labels, settings,
                               memory.cache, memory.series)
        duration = time.perf_counter() - t0
        report = loop.report_labels(target.labels, settings.external_labels)
        batch = outcome.samples + loop.report_samples(report, outcome, duration, ts)

        deadline = time.monotonic() + budget
        for storage in self.storages:
            try:
                storage.write(batch, deadline)
            except WriteError as exc:
                log.warning("target %s (%s): write to %s failed: %s",
                            target.instance, target.job, storage.name, exc)
                stats.inc("clymene_write_failures_total", storage=storage.name)

        job = target.job
        stats.inc("clymene_scrapes_total", job=job)
        if not outcome.up:
            stats.inc("clymene_scrape_failures_total", job=job)
        stats.inc("clymene_scrape_samples_total", outcome.scraped, job=job)
        stats.inc("clymene_stale_markers_total", outcome.stale_markers, job=job)
        if body is not None:
            stats.inc("clymene_scrape_bytes_total", len(body), job=job)

        new_fp = loop.set_fingerprint(outcome.series)
        state = {
            "health": "up" if outcome.up else "down",
            "last_error": outcome.error,
            "last_scrape": repr(start_wall),
            "duration": repr(duration),
            "samples": outcome.post_relabel,
            "series_fp": new_fp,
        }
        pipe = self.redis.pipeline(transaction=False)
        if new_fp != memory.series_fp:
            pipe.hset(state_key, "series", _encode_series(outcome.series))
        pipe.hset(state_key, mapping=state)
        self._flush_stats(pipe)
        pipe.execute()
        memory.series = outcome.series
        memory.series_fp = new_fp
        return "up" if outcome.up else "down"

    def _load_series(self, state_key: str) -> dict[loop.Labels, int] | None:
        raw = self.redis.hget(state_key, "series")
        if not raw:
            return None
        series = json.loads(zlib.decompress(raw))
        out: dict[loop.Labels, int] = {}
        for item in series:
            labels = tuple((n, v) for n, v in item)
            out[labels] = loop.fingerprint(labels)
        return out

    def _flush_stats(self, pipe: Any = None) -> None:
        counts = stats.drain()
        if not counts:
            return
        own = pipe is None
        if own:
            pipe = self.redis.pipeline(transaction=False)
        for key, value in counts.items():
            pipe.hincrbyfloat(registry.STATS_KEY, key, value)
        if own:
            pipe.execute()


def _encode_series(series: dict[loop.Labels, int]) -> bytes:
    return zlib.compress(json.dumps([list(map(list, s)) for s in series],
                                    separators=(",", ":")).encode(), 1)
