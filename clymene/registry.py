"""The shared state in Redis: configuration, target registry, per-target scrape state.

Discovery writes the configuration and the target registry; beat reads the registry to
schedule; workers read a target and its job's configuration, and write the target's
scrape state; the web server reads all of it. Key names are listed in docs/internals.md
and the README so that an operator can inspect them with redis-cli.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import redis

CONFIG_KEY = "clymene:config"
TARGETS_KEY = "clymene:targets"
DROPPED_KEY = "clymene:targets:dropped"
VERSION_KEY = "clymene:targets:version"
STATS_KEY = "clymene:stats"
BEAT_LOCK_KEY = "clymene:beat:lock"


def state_key(target_id: str) -> str:
    return f"clymene:target:{target_id}"


def lock_key(target_id: str) -> str:
    return f"clymene:lock:{target_id}"


@dataclass(frozen=True)
class Target:
    """One scrape target after target relabeling."""

    id: str
    job: str
    scrape_url: str
    labels: dict[str, str]  # final labels: job, instance, and the rest; no "__" labels
    discovered_labels: dict[str, str]  # before relabeling, as Prometheus reports them
    interval: float  # seconds
    timeout: float  # seconds
    config_rev: str  # the configuration this target was built from
    forced_error: str = ""  # scrape fails with this error without fetching (target_limit)
    rev: str = field(default="", compare=False)
    _json: str = field(default="", compare=False, repr=False)

    def to_json(self) -> str:
        return self._json or self._dump()

    def sealed(self) -> Target:
        """This target with its JSON and revision computed once, from its fields."""
        text = self._dump()
        return dataclasses.replace(self, rev=content_rev(text), _json=text)

    def _dump(self) -> str:
        return json.dumps({
            "config_rev": self.config_rev, "discovered_labels": self.discovered_labels,
            "forced_error": self.forced_error, "id": self.id, "interval": self.interval,
            "job": self.job, "labels": self.labels, "scrape_url": self.scrape_url,
            "timeout": self.timeout,
        }, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Target:
        data = json.loads(text)
        if isinstance(text, bytes):
            text = text.decode()
        return cls(**data, rev=content_rev(text), _json=text)

    @property
    def instance(self) -> str:
        return self.labels.get("instance", "")


def content_rev(text: str | bytes) -> str:
    if isinstance(text, str):
        text = text.encode()
    return hashlib.sha1(text).hexdigest()[:12]


def target_id(job: str, scrape_url: str, labels: dict[str, str]) -> str:
    """Identity of a target: its job, URL and final labels (what Prometheus hashes)."""
    h = hashlib.sha1()
    h.update(job.encode())
    h.update(b"\xff")
    h.update(scrape_url.encode())
    for name in sorted(labels):
        h.update(b"\xff" + name.encode() + b"\xfe" + labels[name].encode())
    return h.hexdigest()[:16]


def publish_config(r: redis.Redis, text: str, source: str) -> str:
    rev = content_rev(text + "\0" + source)
    r.hset(CONFIG_KEY, mapping={"text": text, "source": source, "rev": rev})
    return rev


def load_config_text(r: redis.Redis) -> tuple[str, str, str] | None:
    """(text, source, rev) of the configuration discovery loaded, or None."""
    data = r.hgetall(CONFIG_KEY)
    if not data:
        return None
    return data[b"text"].decode(), data[b"source"].decode(), data[b"rev"].decode()


class RegistryWriter:
    """Publishes the target registry, writing only the entries that changed since its
    own last write (re-reading Redis when someone else changed the registry)."""

    def __init__(self, r: redis.Redis):
        self.redis = r
        self._active: dict[str, str] | None = None
        self._dropped: dict[str, str] = {}
        self._version = -1

    def publish(self, active: list[Target], dropped: list[dict[str, Any]]
                ) -> tuple[bool, list[Target]]:
        """Make the registry hold these targets. Returns whether it changed, and the
        targets that left it (to end their series)."""
        r = self.redis
        new_active = {t.id: t.to_json() for t in active}
        new_dropped = {}
        for d in dropped:
            text = json.dumps(d, sort_keys=True)
            new_dropped[content_rev(text)] = text
        if self._active is None or registry_version(r) != self._version:
            self._active = {k.decode(): v.decode() for k, v in r.hgetall(TARGETS_KEY).items()}
            self._dropped = {k.decode(): v.decode() for k, v in r.hgetall(DROPPED_KEY).items()}
        old_active, old_dropped = self._active, self._dropped
        if new_active == old_active and new_dropped == old_dropped:
            return False, []
        pipe = r.pipeline(transaction=True)
        for key, new, old in ((TARGETS_KEY, new_active, old_active),
                              (DROPPED_KEY, new_dropped, old_dropped)):
            gone = [k for k in old if k not in new]
            changed = {k: v for k, v in new.items() if old.get(k) != v}
            if gone:
                pipe.hdel(key, *gone)
            if changed:
                pipe.hset(key, mapping=changed)
        pipe.incr(VERSION_KEY)
        self._version = pipe.execute()[-1]
        removed = [Target.from_json(v) for k, v in old_active.items() if k not in new_active]
        self._active, self._dropped = new_active, new_dropped
        return True, removed


def publish_targets(r: redis.Redis, active: list[Target], dropped: list[dict[str, Any]]
                    ) -> tuple[bool, list[Target]]:
    """One-off publish (see RegistryWriter for a process that publishes repeatedly)."""
    return RegistryWriter(r).publish(active, dropped)


def add_stats(r: redis.Redis, counts: dict[str, float]) -> None:
    """Add a process' drained counters (clymene.stats.drain) to the farm's hash."""
    if counts:
        pipe = r.pipeline(transaction=False)
        for key, value in counts.items():
            pipe.hincrbyfloat(STATS_KEY, key, value)
        pipe.execute()


def registry_version(r: redis.Redis) -> int:
    return int(r.get(VERSION_KEY) or 0)


def load_targets(r: redis.Redis) -> dict[str, Target]:
    return {k.decode(): Target.from_json(v) for k, v in r.hgetall(TARGETS_KEY).items()}


def load_dropped(r: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(v) for v in r.hvals(DROPPED_KEY)]


def get_target(r: redis.Redis, target_id: str) -> Target | None:
    raw = r.hget(TARGETS_KEY, target_id)
    return Target.from_json(raw) if raw is not None else None
