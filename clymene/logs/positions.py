"""The positions file: how far each log file was delivered, with the file's identity.

One entry per path: byte offset plus the (device, inode) the offset belongs to, so a
restart can tell the file it left from a new file at the same path (rotation by
rename-and-create) and finish the old one first. The file is YAML (JSON is YAML), written
to a temporary file, fsynced and renamed over the old one, so a crash leaves either the
old or the new positions, never half of one:

    {"positions": {"/var/log/pods/ns_pod_uid/c/0.log": {"offset": 1234, "dev": 2049,
                                                        "ino": 393222}}}

Offsets only move here once the output acknowledged the lines before them.
"""

from __future__ import annotations

import json
import os
import threading

import yaml

Position = tuple[int, int, int]  # (offset, dev, ino)


class PositionsError(ValueError):
    pass


class Positions:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self._lock = threading.Lock()
        # Saves come from the reader and the sender threads: one at a time, so they never
        # share the temporary file and an older snapshot never lands after a newer one.
        self._save_lock = threading.Lock()
        self._data: dict[str, Position] = {}
        self._dirty = False
        if filename and os.path.exists(filename):
            self._data = read_positions(filename)

    def get(self, path: str) -> Position | None:
        with self._lock:
            return self._data.get(path)

    def all(self) -> dict[str, Position]:
        with self._lock:
            return dict(self._data)

    def update(self, values: dict[str, Position | None]) -> None:
        """Record acknowledged offsets (kept in memory until `save`); None forgets a path."""
        if not values:
            return
        with self._lock:
            for path, pos in values.items():
                if pos is None:
                    self._data.pop(path, None)
                else:
                    self._data[path] = pos
            self._dirty = True

    def remove(self, path: str) -> None:
        with self._lock:
            if self._data.pop(path, None) is not None:
                self._dirty = True

    def save(self) -> None:
        """Write atomically when something changed since the last save."""
        with self._save_lock:
            with self._lock:
                if not self._dirty or not self.filename:
                    return
                data = dict(self._data)
                self._dirty = False
            try:
                write_positions(self.filename, data)
            except OSError:
                with self._lock:
                    self._dirty = True  # try again at the next save
                raise


def read_positions(filename: str) -> dict[str, Position]:
    try:
        with open(filename, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise PositionsError(f"{filename}: not a positions file: {exc}") from None
    if doc is None:
        return {}
    raw = doc.get("positions") if isinstance(doc, dict) else None
    if not isinstance(raw, dict):
        raise PositionsError(f"{filename}: missing 'positions' mapping")
    out: dict[str, Position] = {}
    for path, value in raw.items():
        if isinstance(value, dict):  # ours
            out[str(path)] = (int(value.get("offset", 0)), int(value.get("dev", 0)),
                              int(value.get("ino", 0)))
        else:  # promtail's own format: path: "offset"
            out[str(path)] = (int(value), 0, 0)
    return out


def write_positions(filename: str, data: dict[str, Position]) -> None:
    doc = {"positions": {p: {"offset": o, "dev": d, "ino": i}
                         for p, (o, d, i) in sorted(data.items())}}
    directory = os.path.dirname(os.path.abspath(filename))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{filename}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, filename)
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
