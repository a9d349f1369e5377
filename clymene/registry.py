"""The shared state in Redis: configuration, target registry, per-target scrape state.

Discovery writes the configuration and the target registry; beat reads the registry to
schedule; workers read a target and its job's configuration, and write the target's
scrape state; the web server reads all of it. Key names are listed in docs/internals.md
and the README so that an operator can inspect them with redis-cli.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
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

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("rev")
        body = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return body

    @classmethod
    def from_json(cls, text: str | bytes) -> Target:
        data = json.loads(text)
        return cls(**data, rev=content_rev(text))

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


def publish_targets(r: redis.Redis, active: list[Target], dropped: list[dict[str, Any]]
                    ) -> tuple[bool, list[Target]]:
    """Replace the registry with these targets if it differs.

    Returns whether it changed, and the targets that left it (to end their series).
    """
    new_active = {t.id: t.to_json() for t in active}
    new_dropped = {
        content_rev(json.dumps(d, sort_keys=True)): json.dumps(d, sort_keys=True) for d in dropped
    }
    old_active = {k.decode(): v.decode() for k, v in r.hgetall(TARGETS_KEY).items()}
    old_dropped = {k.decode(): v.decode() for k, v in r.hgetall(DROPPED_KEY).items()}
    if new_active == old_active and new_dropped == old_dropped:
        return False, []
    pipe = r.pipeline(transaction=True)
    pipe.delete(TARGETS_KEY, DROPPED_KEY)
    if new_active:
        pipe.hset(TARGETS_KEY, mapping=new_active)
    if new_dropped:
        pipe.hset(DROPPED_KEY, mapping=new_dropped)
    pipe.incr(VERSION_KEY)
    pipe.execute()
    removed = [Target.from_json(v) for k, v in old_active.items() if k not in new_active]
    return True, removed


def registry_version(r: redis.Redis) -> int:
    return int(r.get(VERSION_KEY) or 0)


def load_targets(r: redis.Redis) -> dict[str, Target]:
    return {k.decode(): Target.from_json(v) for k, v in r.hgetall(TARGETS_KEY).items()}


def load_dropped(r: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(v) for v in r.hvals(DROPPED_KEY)]


def get_target(r: redis.Redis, target_id: str) -> Target | None:
    raw = r.hget(TARGETS_KEY, target_id)
    return Target.from_json(raw) if raw is not None else None
