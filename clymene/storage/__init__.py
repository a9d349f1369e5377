"""Storage backends: where batches of samples end up.

A batch is a `list[Sample]`, `Sample = (labels, value, timestamp_ms)` with `labels` a
tuple of `(name, value)` pairs sorted by name, `__name__` included (docs/internals.md).
Each backend lives in its own module; `clymene.storage.factory.open_storages` builds
the ones named by `STORAGE_TYPE`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

Labels = tuple[tuple[str, str], ...]
Sample = tuple[Labels, float, int]


class WriteError(Exception):
    """A batch could not be written.

    `retryable` is True when a later attempt with the same batch could succeed (the
    server was down, overloaded, or the deadline came first), False when it never will
    (the server rejected the data, e.g. HTTP 400).
    """

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@runtime_checkable
class Storage(Protocol):
    """What every backend provides."""

    name: str

    def write(self, batch: list[Sample], deadline: float) -> None:
        """Write the batch, retrying transient failures with backoff until `deadline`
        (a `time.monotonic()` value); raise `WriteError` when it could not be written."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


__all__ = ["Labels", "Sample", "Storage", "WriteError"]


def storage_names(settings: Any) -> list[str]:
    """The names STORAGE_TYPE lists, lower-cased, in order, each once. One STORAGE_TYPE
    serves metrics and logs: each side picks the names it knows."""
    return list(dict.fromkeys(name.strip().lower() for name in settings.storage_type or []
                              if name.strip()))
