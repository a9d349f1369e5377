"""Process-local counters.

Every drop, retry and error in clymene is counted here with `inc`. The Celery tasks
`drain` the counts once per task into the Redis hash `clymene:stats`, where the web
process serves them at `/metrics`. Keys are Prometheus text series,
`name{k="v",...}` with the labels sorted by name and the values escaped as in the
text exposition format, so they can be written out as they are.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_counts: dict[str, float] = {}
# (name, labels items) -> series text; bounded because label values may vary a lot.
_keys: dict[tuple, str] = {}
_KEYS_MAX = 10_000


def _escape(value: str) -> str:
    # Text exposition format: backslash, double quote and newline are escaped.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def series_key(name: str, labels: dict[str, str]) -> str:
    """The Prometheus text series of a counter: `name{a="1",b="2"}` (labels sorted)."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(str(labels[k]))}"' for k in sorted(labels))
    return f"{name}{{{inner}}}"


def inc(name: str, value: float = 1, **labels: str) -> None:
    """Add `value` to the counter `name` with these labels."""
    if labels:
        cache_key = (name, *labels.items())
        key = _keys.get(cache_key)
        if key is None:
            key = series_key(name, labels)
            if len(_keys) >= _KEYS_MAX:
                _keys.clear()
            _keys[cache_key] = key
    else:
        key = name
    with _lock:
        _counts[key] = _counts.get(key, 0) + value


def drain() -> dict[str, float]:
    """Return the counts since the last drain and reset them to nothing."""
    global _counts
    with _lock:
        counts, _counts = _counts, {}
    return counts
