"""The scheduler: one periodic entry per live target, plus static housekeeping entries.

Celery beat runs `TargetScheduler` (set as `beat_scheduler` in clymene.app). Each tick it

- holds or waits for the Redis lock `clymene:beat:lock`, so with several beat processes
  exactly one schedules and the others stand by; the lock expires 20 s after its holder
  stops renewing it, so a standby takes over within 30 s when the active one dies;
- re-reads the target registry when its version changed (discovery bumps it), keeping the
  due times of targets that stay and scheduling new ones;
- sends a scrape task for every target that is due, at that target's interval, spread over
  the interval by a per-target offset the way Prometheus spreads its scrapes. Each task
  expires at the target's next due time, so late work is dropped, not piled up. The tasks
  of a tick go to the broker in one Redis pipeline (`ScrapePublisher`).
"""

from __future__ import annotations

import base64
import heapq
import json
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import redis
from celery import Celery
from celery.beat import Scheduler
from celery.utils.nodenames import anon_nodename

from clymene import registry
from clymene.app import SCRAPE_QUEUE
from clymene.app import settings as app_settings

log = logging.getLogger(__name__)

LOCK_TTL = 20.0  # seconds; a standby beat takes over at most this long after a crash
LOCK_RENEW_EVERY = 5.0
STANDBY_POLL = 2.0

_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

_RENEW_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


def target_offset(target_id: str, interval: float) -> float:
    """Where in its interval a target is scraped: stable per target, spread over targets."""
    interval_ms = max(1, int(interval * 1000))
    return (int(target_id[:15], 16) % interval_ms) / 1000.0


def next_due(now: float, interval: float, offset: float) -> float:
    """The first time >= now that is `offset` past a multiple of `interval`."""
    k = -((offset - now) // interval)  # ceil((now - offset) / interval)
    return offset + k * interval


class TargetPlan:
    """The due times of the live targets (pure logic, no Redis, no Celery)."""

    def __init__(self) -> None:
        self.targets: dict[str, registry.Target] = {}
        self.heap: list[tuple[float, str]] = []
        self.due: dict[str, float] = {}

    def update(self, targets: dict[str, registry.Target], now: float) -> None:
        old = self.targets
        self.targets = targets
        for tid, t in targets.items():
            prev = old.get(tid)
            if prev is not None and prev.interval == t.interval and tid in self.due:
                continue
            due = next_due(now, t.interval, target_offset(tid, t.interval))
            self.due[tid] = due
            heapq.heappush(self.heap, (due, tid))
        for tid in list(self.due):
            if tid not in targets:
                del self.due[tid]

    def pop_due(self, now: float) -> list[tuple[float, registry.Target]]:
        """Targets due at `now`, each with its due time; their next due time is queued."""
        out = []
        heap = self.heap
        while heap and heap[0][0] <= now:
            due, tid = heapq.heappop(heap)
            if self.due.get(tid) != due:
                continue  # removed or rescheduled
            t = self.targets[tid]
            out.append((due, t))
            nxt = due + t.interval
            if nxt <= now:  # beat was stalled: skip the missed slots, don't burst
                nxt = next_due(now, t.interval, target_offset(tid, t.interval))
                if nxt <= now:
                    nxt += t.interval
            self.due[tid] = nxt
            heapq.heappush(heap, (nxt, tid))
        return out

    def seconds_to_next(self, now: float) -> float | None:
        while self.heap and self.due.get(self.heap[0][1]) != self.heap[0][0]:
            heapq.heappop(self.heap)
        return self.heap[0][0] - now if self.heap else None


class ScrapePublisher:
    """Puts scrape tasks on the broker's Redis list, all the tasks of a tick in one pipeline.

    Each message is the one `app.send_task` sends (Celery's message protocol 2 inside
    kombu's Redis envelope; tests/test_beat_schedule.py compares the two field by field but
    for the random ids), with the parts that never change made once. At the two tasks a
    tick of a 200-target farm has, `send_task` in a kombu batch spends about 0.3 ms of CPU
    per task (a Redis client per batch, retry wrappers, header building), this 0.075 ms
    (bench/RESULTS.md). A broker that is not plain Redis, or kombu options that change
    the key layout or the body encoding, make `usable` false: beat then uses send_task.
    """

    # Transport options that change what a message looks like or where it goes.
    _LAYOUT_OPTIONS = frozenset(("global_keyprefix", "priority_steps", "sep",
                                 "queue_order_strategy", "body_encoding"))

    def __init__(self, app: Celery, client: redis.Redis, queue: str = SCRAPE_QUEUE) -> None:
        self.redis = client
        self.queue = queue
        self._origin = anon_nodename()
        self._reply_to = app.thread_oid
        self._embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

    @classmethod
    def usable(cls, app: Celery) -> bool:
        scheme = urlsplit(app.conf.broker_url or "").scheme
        options = app.conf.broker_transport_options or {}
        return scheme in ("redis", "rediss") and not cls._LAYOUT_OPTIONS & set(options)

    def message(self, task_id: str, args: list[Any], expires: float) -> bytes:
        """The kombu envelope of one `clymene.scrape` task, as JSON bytes."""
        body = json.dumps([args, {}, self._embed])
        headers = {
            "lang": "py", "task": "clymene.scrape", "id": task_id, "shadow": None,
            "eta": None, "expires": datetime.fromtimestamp(expires, tz=UTC).isoformat(),
            "group": None, "group_index": None, "retries": 0, "timelimit": [None, None],
            "root_id": task_id, "parent_id": None, "argsrepr": repr(args),
            "kwargsrepr": "{}", "origin": self._origin, "ignore_result": None,
            "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
        }
        properties = {
            "correlation_id": task_id, "reply_to": self._reply_to, "delivery_mode": 2,
            "expiration": str(int(max(0.0, expires - time.time()) * 1000)),
            "delivery_info": {"exchange": "", "routing_key": self.queue}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
        }
        envelope = {"body": base64.b64encode(body.encode()).decode(),
                    "content-encoding": "utf-8", "content-type": "application/json",
                    "headers": headers, "properties": properties}
        return json.dumps(envelope).encode()

    def publish(self, due: list[tuple[float, registry.Target]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for due_at, t in due:
            args = [t.id, t.rev, t.job, t.instance, due_at]
            pipe.lpush(self.queue, self.message(str(uuid.uuid4()), args, due_at + t.interval))
        pipe.execute()


class TargetScheduler(Scheduler):
    """Celery beat scheduler that scrapes every target in the registry."""

    def setup_schedule(self) -> None:
        super().setup_schedule()
        self.redis = redis.Redis.from_url(self.app.conf.broker_url)
        self._renew = self.redis.register_script(_RENEW_LOCK)
        self._token = uuid.uuid4().hex
        self._holding = False
        self._last_renew = 0.0
        self._version = -1
        self._last_version_check = 0.0
        self.plan = TargetPlan()
        self.tick_interval = max(0.001, app_settings.beat_tick)  # --beat.tick
        self.publisher = (ScrapePublisher(self.app, self.redis)
                          if ScrapePublisher.usable(self.app) else None)

    def _hold_lock(self, now: float) -> bool:
        try:
            if self._holding:
                if now - self._last_renew < LOCK_RENEW_EVERY:
                    return True
                if self._renew(keys=[registry.BEAT_LOCK_KEY],
                               args=[self._token, int(LOCK_TTL * 1000)]):
                    self._last_renew = now
                    return True
                log.warning("beat: lost the scheduler lock; standing by")
                self._holding = False
                return False
            if self.redis.set(registry.BEAT_LOCK_KEY, self._token, nx=True,
                              px=int(LOCK_TTL * 1000)):
                log.info("beat: acquired the scheduler lock; scheduling targets")
                self._holding = True
                self._last_renew = now
                self._version = -1  # reload the registry afresh
                self.plan = TargetPlan()
                return True
        except redis.RedisError as exc:
            log.error("beat: Redis error while holding the lock: %s", exc)
            self._holding = False
        return False

    def _refresh(self, now: float) -> None:
        if now - self._last_version_check < 1.0:
            return
        self._last_version_check = now
        version = registry.registry_version(self.redis)
        if version != self._version:
            self._version = version
            targets = registry.load_targets(self.redis)
            self.plan.update(targets, time.time())
            log.info("beat: registry version %d, %d targets", version, len(targets))

    def tick(self, *args, **kwargs) -> float:
        mono = time.monotonic()
        if not self._hold_lock(mono):
            return STANDBY_POLL
        try:
            self._refresh(mono)
        except redis.RedisError as exc:
            log.error("beat: cannot read the target registry: %s", exc)
            return 1.0
        now = time.time()
        due = self.plan.pop_due(now)
        if due:
            self._send(due)
        # Static housekeeping entries (app.conf.beat_schedule) run through Celery's own logic.
        static_wait = super().tick(*args, **kwargs) if self.schedule else self.max_interval
        wait = self.plan.seconds_to_next(time.time())
        wait = self.max_interval if wait is None else wait
        # Ticks at least --beat.tick apart, so each tick publishes the tasks that fell due
        # together in one batch instead of one tick (and one round trip) per task, and
        # the workers run them back to back.
        return max(self.tick_interval, min(wait, static_wait, self.max_interval))

    def close(self) -> None:
        # Hand the lock over at once on a clean stop instead of letting it expire.
        if getattr(self, "_holding", False):
            try:
                self.redis.eval(_RELEASE_LOCK, 1, registry.BEAT_LOCK_KEY, self._token)
            except redis.RedisError:
                pass
            self._holding = False
        super().close()

    def _send(self, due: list[tuple[float, registry.Target]]) -> None:
        if self.publisher is not None:
            try:
                self.publisher.publish(due)
            except redis.RedisError as exc:  # a failed publish must not stop beat
                log.error("beat: cannot publish %d scrape tasks: %s", len(due), exc)
            return
        producer = self.producer
        try:
            # One Redis pipeline for all the tasks due in this tick (kombu's batch
            # publishing): about a third of the CPU of publishing them one by one.
            with producer.batch():
                for due_at, t in due:
                    expires = datetime.fromtimestamp(due_at + t.interval, tz=UTC)
                    self.app.send_task(
                        "clymene.scrape", args=[t.id, t.rev, t.job, t.instance, due_at],
                        queue=SCRAPE_QUEUE, expires=expires, producer=producer)
        except Exception as exc:  # noqa: BLE001 - a failed publish must not stop beat
            log.error("beat: cannot publish %d scrape tasks: %s", len(due), exc)
