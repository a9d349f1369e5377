"""Write one batch to several storages at once (`STORAGE_TYPE=a,b,c`).

Each storage gets the batch in its own thread with its own retry budget, so a slow or
failing backend never holds back the data of the others: every backend's write starts
at once and retries (or gives up) on its own. `write` returns only when every backend
has finished or given up, so a scrape's lock, released after it, still keeps each
target's batches in order in every backend.

With several storages, a backend that has not proven healthy, i.e. one that has not
written yet or whose last write gave up on a transient failure (down, overloaded), may
retry a batch only until `soft_deadline` (the runner passes half a scrape interval from
the write's start): a dead backend cannot hold back the next scrape of the target, and
with it the other backends' data, while the healthy ones keep the whole hard deadline
(a slow but working backend, e.g. Kafka under load, is waited for, as with a single
storage). A write that succeeds, or that the server answered with a permanent
rejection, makes a backend healthy; a transient failure makes it unproven again, so a
backend that goes down while healthy costs one full budget once, then half an interval
per batch. A single storage always keeps the whole hard deadline: there is nobody else
to hold back; so does Kafka (`kafka`, or any storage with a true `always_wait`
attribute): it is the durable pipeline, whose batch must be acknowledged before the
target's next scrape (docs/internals.md), so it is always waited for. Failures are returned, not raised; each is counted in
`clymene_write_failures_total{storage}`.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from clymene import stats
from clymene.storage import Sample, Storage, WriteError


class Fanout:
    """Concurrent writes of a batch to every storage."""

    def __init__(self, storages: list[Storage], max_threads: int = 64) -> None:
        self.storages = list(storages)
        self._max_threads = max_threads
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        # Indexes of the storages whose last write succeeded or was answered.
        self._healthy: set[int] = set()

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._max_threads,
                                                    thread_name_prefix="storage-write")
        return self._pool

    @staticmethod
    def _write_one(storage: Storage, batch: list[Sample], deadline: float) -> WriteError | None:
        try:
            storage.write(batch, deadline)
        except WriteError as exc:
            return exc
        except Exception as exc:  # a backend bug must not cost the other backends' data
            return WriteError(f"{storage.name}: unexpected {type(exc).__name__}: {exc}",
                              retryable=False)
        return None

    def write(self, batch: list[Sample], deadline: float,
              soft_deadline: float | None = None) -> list[tuple[str, WriteError]]:
        """Write `batch` to every storage; [(storage name, error)] for those that failed."""
        storages = self.storages
        if not storages:
            return []
        if len(storages) == 1:
            error = self._write_one(storages[0], batch, deadline)
            failures = [(storages[0].name, error)] if error else []
        else:
            soft = deadline if soft_deadline is None else min(deadline, soft_deadline)
            healthy = self._healthy
            budgets = [deadline if i in healthy or _always_wait(s) else soft
                       for i, s in enumerate(storages)]
            pool = self._executor()
            futures: list[Future] = [pool.submit(self._write_one, s, batch, budgets[i])
                                     for i, s in enumerate(storages) if i]
            first = self._write_one(storages[0], batch, budgets[0])
            results = [first] + [f.result() for f in futures]
            for i, error in enumerate(results):
                if error is None or not error.retryable:
                    healthy.add(i)
                else:
                    healthy.discard(i)
            failures = [(s.name, e) for s, e in zip(storages, results, strict=True) if e]
        for name, _ in failures:
            stats.inc("clymene_write_failures_total", storage=name)
        return failures

    def close(self) -> None:
        """Stop the threads (the storages are closed by their owner)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _always_wait(storage: Storage) -> bool:
    return bool(getattr(storage, "always_wait", storage.name == "kafka"))


def soft_deadline_for(interval: float, now: float | None = None) -> float:
    """When a failing backend must give a batch up so that the target's next scrape,
    `interval` seconds on, is not held back: half an interval from now."""
    return (time.monotonic() if now is None else now) + interval / 2
