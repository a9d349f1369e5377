"""Build the storages named by `STORAGE_TYPE` (`--storage.type`), like Clymene's factory.

Each known type maps to a function that opens it from the settings; a new backend adds
one entry to `OPENERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clymene.storage import Storage


def _open_file(settings: Any) -> Storage:
    from clymene.storage.file import FileStorage

    return FileStorage(settings.data_dir, max_bytes=settings.file_max_bytes)


def _open_prometheus(settings: Any) -> Storage:
    from clymene.storage.prometheus import RemoteWriteStorage

    url = getattr(settings, "prometheus_remote_url", "") or ""
    if not url:
        raise ValueError(
            "storage type 'prometheus' needs a remote write URL: set "
            "--prometheus.remote.url or PROMETHEUS_REMOTE_URL"
        )
    return RemoteWriteStorage(
        url,
        timeout=settings.prometheus_remote_timeout,
        user_agent=getattr(settings, "prometheus_remote_user_agent", None) or None,
        max_samples_per_send=getattr(settings, "prometheus_remote_max_samples_per_send", 2000),
    )


OPENERS: dict[str, Callable[[Any], Storage]] = {
    "file": _open_file,
    "prometheus": _open_prometheus,
}


def open_storages(settings: Any) -> list[Storage]:
    """One storage per name in `settings.storage_type` (in that order, repeats ignored);
    no name at all means `file`. Raises ValueError for an unknown name or a missing
    setting, having closed whatever it had opened."""
    names: list[str] = []
    for raw in settings.storage_type or []:
        name = raw.strip().lower()
        if name and name not in names:
            names.append(name)
    if not names:
        names = ["file"]
    for name in names:
        if name not in OPENERS:
            known = ", ".join(sorted(OPENERS))
            raise ValueError(f"unknown storage type {name!r} in STORAGE_TYPE; known types: {known}")
    storages: list[Storage] = []
    try:
        for name in names:
            storages.append(OPENERS[name](settings))
    except BaseException:
        for storage in storages:
            storage.close()
        raise
    return storages
