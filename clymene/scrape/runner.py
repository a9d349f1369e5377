"""One scheduled scrape of one target, start to finish, with its state in Redis.

lock the target -> fetch -> samples (scrape cache, relabeling, staleness) -> write to
every storage -> save state and counters -> unlock. The lock makes scrapes of a target
never overlap, and because it is released only after the write, a target's batches
reach storage in order. The previous series set (for staleness markers) is kept in Redis,
so consecutive scrapes may run on different workers or hosts; each worker keeps a copy
and only reads Redis's when another worker scraped the target last.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from clymene import config as config_module
from clymene import registry, stats
from clymene.lua import LuaScript
from clymene.registry import Target
from clymene.scrape import loop
from clymene.scrape.http import Fetcher, ScrapeError
from clymene.storage import Storage
from clymene.storage.fanout import Fanout, soft_deadline_for

log = logging.getLogger(__name__)

# Take the target's lock; return [locked, target JSON or "", series fingerprint or ""].
_BEGIN = """
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0, '', ''} end
local target = redis.call('hget', KEYS[2], ARGV[3]) or ''
local fp = redis.call('hget', KEYS[3], 'series_fp') or ''
return {1, target, fp}
"""

# Save the scrape state (field/value pairs after the token), then release the lock.
_FINISH = """
redis.call('hset', KEYS[1], unpack(ARGV, 2))
if redis.call('get', KEYS[2]) == ARGV[1] then redis.call('del', KEYS[2]) end
return 1
"""

_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


STATS_FLUSH_INTERVAL = 1.0  # seconds
DEFAULT_LOCK_MS = 120_000  # until the target's own lifetime is known


def end_of_run_delay(interval: float) -> float:
    """How long after a target left discovery its series are ended: Prometheus waits just
    over two intervals, in case the target comes back (e.g. a config reload)."""
    return 2.1 * interval


class JobGone(RuntimeError):
    """The target's job is no longer in the configuration."""


def write_budget(target: Target) -> float:
    """Seconds a scrape may spend writing before it gives the batch up."""
    return max(2 * target.interval, 30.0)


@dataclass
class _TargetMemory:
    cache: loop.SeriesCache
    series: dict[loop.Labels, int] | None
    series_fp: str
    # The report series' labels, built once per target revision: the same tuples every
    # scrape, so the encoder's per-tuple caches hit instead of growing.
    report: list[loop.Labels]


class Runner:
    """Runs scrapes; one per worker process (it holds that process' caches)."""

    def __init__(self, client: redis.Redis, storages: list[Storage]):
        self.redis = client
        self.storages = storages
        self._fanout = Fanout(storages)
        self._release = client.register_script(_RELEASE_LOCK)
        self._begin = LuaScript(client, _BEGIN)  # the two calls of every scrape
        self._finish = LuaScript(client, _FINISH)
        self._targets: dict[str, Target] = {}
        self._config: tuple[str, Any] | None = None  # (rev, Config)
        self._jobs: dict[tuple[str, str], tuple[Fetcher, loop.ScrapeSettings]] = {}
        self._memory: dict[str, _TargetMemory] = {}
        self._lock_ms: dict[str, int] = {}
        self._last_flush = 0.0  # lock lifetime per target: timeout + write budget

    # -- lookups, cached per process ------------------------------------------------
    def _parse_target(self, raw: bytes) -> Target:
        rev = registry.content_rev(raw)
        t = self._targets.get(rev)
        if t is None:
            t = Target.from_json(raw)
            if len(self._targets) > 100_000:
                self._targets.clear()
            self._targets[rev] = t
        return t

    def _job(self, target: Target) -> tuple[Fetcher, loop.ScrapeSettings]:
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
            raise JobGone(f"job {target.job!r} is not in the configuration")
        external = dict(cfg.global_config.external_labels or {})
        settings = loop.ScrapeSettings(
            honor_labels=sc.honor_labels, honor_timestamps=sc.honor_timestamps,
            metric_relabel=list(sc.metric_relabel_configs),
            sample_limit=sc.sample_limit or 0, label_limit=sc.label_limit or 0,
            label_name_length_limit=sc.label_name_length_limit or 0,
            label_value_length_limit=sc.label_value_length_limit or 0,
            external_labels=external)
        job = (Fetcher(sc), settings)
        self._jobs[key] = job
        return job

    def _memory_for(self, target: Target, settings: loop.ScrapeSettings) -> _TargetMemory:
        memory = self._memory.get(target.id)
        if memory is None or memory.cache.config_key != target.rev:
            report = loop.report_labels(target.labels, settings.external_labels)
            memory = _TargetMemory(loop.SeriesCache(config_key=target.rev), None, "", report)
            self._memory[target.id] = memory
        return memory

    # -- the scrape -------------------------------------------------------------
    def run(self, target_id: str, rev: str, due: float | None = None) -> str:
        """Scrape the target once. Returns the outcome: up, down, skipped or unknown."""
        start_wall = time.time()
        if due is not None:
            stats.inc("clymene_scheduling_lag_seconds_sum", max(0.0, start_wall - due))
            stats.inc("clymene_scheduling_lag_seconds_count")
        token = uuid.uuid4().hex
        lock = registry.lock_key(target_id)
        state_key = registry.state_key(target_id)
        # One round trip: take the lock, read the target as the registry has it now (it
        # may have been removed since beat sent this task) and the state's fingerprint.
        locked, raw, stored_fp = self._begin(
            keys=[lock, registry.TARGETS_KEY, state_key],
            args=[token, self._lock_ms.get(target_id, DEFAULT_LOCK_MS), target_id])
        if not locked:
            # The previous scrape of this target is still running or writing.
            stats.inc("clymene_scrapes_skipped_total", reason="overlap")
            self._flush_stats()
            return "skipped"
        if not raw:
            stats.inc("clymene_scrapes_skipped_total", reason="unknown_target")
            self._release(keys=[lock], args=[token])
            self._flush_stats()
            return "unknown"
        target = self._parse_target(raw)
        budget = write_budget(target)
        try:
            # The scrape's timestamp is taken under the lock: a task that stalled before
            # locking must not stamp its samples older than the scrape before it.
            return self._scrape_locked(target, time.time(), budget, lock, token,
                                       stored_fp.decode() if stored_fp else "")
        except BaseException:
            self._release(keys=[lock], args=[token])
            raise

    def _scrape_locked(self, target: Target, start_wall: float, budget: float, lock: str,
                       token: str, stored_fp: str) -> str:
        fetcher, settings = self._job(target)
        state_key = registry.state_key(target.id)
        lock_ms = int((target.timeout + budget + 5) * 1000)
        if self._lock_ms.get(target.id) != lock_ms:
            self._lock_ms[target.id] = lock_ms
            self.redis.pexpire(lock, lock_ms)
        memory = self._memory_for(target, settings)
        if stored_fp != memory.series_fp or memory.series is None:
            memory.series = self._load_series(state_key) if stored_fp else None
            memory.series_fp = stored_fp

        ts = int(start_wall * 1000)
        t0 = time.perf_counter()
        body: bytes | None = None
        content_type = ""
        error = target.forced_error
        if not error:
            try:
                body, content_type = fetcher.fetch(target.scrape_url, target.timeout)
            except ScrapeError as exc:
                error = str(exc)
            except OSError as exc:
                error = str(exc)
        outcome = loop.process(body, content_type, error, ts, target.labels, settings,
                               memory.cache, memory.series)
        duration = time.perf_counter() - t0
        batch = outcome.samples + loop.report_samples(memory.report, outcome, duration, ts)
        self._write(batch, budget, target)

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
            "interval": repr(target.interval),
        }
        fields: list[Any] = [token]
        for key, value in state.items():
            fields += (key, value)
        if new_fp != memory.series_fp:
            fields += ("series", loop.encode_state(outcome.series))
        # One round trip: save the state and release the lock (if still ours).
        self._finish(keys=[state_key, lock], args=fields)
        self._flush_stats()
        memory.series = outcome.series
        memory.series_fp = new_fp
        return "up" if outcome.up else "down"

    def _write(self, batch: list[loop.Sample], budget: float, target: Target) -> None:
        # Every storage at once, each with its own retry budget (clymene.storage.fanout);
        # returns when all finished or gave up, so the lock still orders the batches.
        now = time.monotonic()
        failures = self._fanout.write(batch, now + budget, soft_deadline_for(target.interval, now))
        for name, exc in failures:
            log.warning("target %s (%s): write to %s failed: %s",
                        target.instance, target.job, name, exc)

    def end_target(self, target_json: str) -> str:
        """Staleness markers for every series of a target that left the registry.

        Like Prometheus' end-of-run staleness: the markers carry the time the next scrape
        would have had, and nothing is written if the target came back meanwhile.
        """
        target = Target.from_json(target_json)
        if self.redis.hexists(registry.TARGETS_KEY, target.id):
            return "revived"
        lock = registry.lock_key(target.id)
        token = uuid.uuid4().hex
        budget = write_budget(target)
        deadline = time.monotonic() + target.timeout + budget + 5
        # Wait for a scrape still in flight: its batch must land before the markers.
        while not self.redis.set(lock, token, nx=True, px=int((budget + 5) * 1000)):
            if time.monotonic() > deadline:
                stats.inc("clymene_stale_targets_skipped_total", reason="locked")
                self._flush_stats()
                return "locked"
            time.sleep(0.1)
        try:
            state_key = registry.state_key(target.id)
            last = self.redis.hget(state_key, "last_scrape")
            if last is None:
                return "never scraped"
            series = self._load_series(state_key) or {}
            try:
                _, settings = self._job(target)
            except JobGone:
                # Prometheus writes no end-of-run markers when a whole scrape pool is
                # stopped by a config reload, only when targets leave a pool.
                self.redis.delete(state_key)
                self._memory.pop(target.id, None)
                return "job removed"
            ts = int(float(last) * 1000 + target.interval * 1000)
            report = loop.report_labels(target.labels, settings.external_labels)
            batch = loop.end_of_run(series, report, ts)
            self._write(batch, budget, target)
            stats.inc("clymene_stale_markers_total", len(batch), job=target.job)
            self.redis.delete(state_key)
            self._flush_stats(force=True)
            self._memory.pop(target.id, None)
            return "ended"
        finally:
            self._release(keys=[lock], args=[token])

    def _load_series(self, state_key: str) -> loop.ScrapeState | None:
        raw = self.redis.hget(state_key, "series")
        if not raw:
            return None
        return loop.decode_state(raw)

    def _flush_stats(self, force: bool = False) -> None:
        """Add this process' counters to Redis; at most once a second unless forced, so
        that counting costs a few Redis commands per second, not per scrape."""
        now = time.monotonic()
        if not force and now - self._last_flush < STATS_FLUSH_INTERVAL:
            return
        self._last_flush = now
        registry.add_stats(self.redis, stats.drain())

    def close(self) -> None:
        """Flush what is left (the worker process is stopping)."""
        try:
            self._flush_stats(force=True)
        except redis.RedisError as exc:
            log.warning("could not flush counters at exit: %s", exc)
        self._fanout.close()
        for storage in self.storages:
            storage.close()
        self._begin.close()
        self._finish.close()
