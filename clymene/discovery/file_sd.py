"""file_sd_configs: target groups from JSON or YAML files, re-read when they change.

Like Prometheus: each file holds a list of `{targets: [...], labels: {...}}`; every target
gets `__meta_filepath`; a file that cannot be read or parsed keeps the groups it gave last
time (and the error is logged and counted), so a half-written file never drops targets.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import time

import yaml

from clymene import stats
from clymene.discovery.targets import TargetGroup

log = logging.getLogger(__name__)


class FileSDError(ValueError):
    pass


def parse_file(path: str, data: bytes) -> list[TargetGroup]:
    """The target groups of one file's content; FileSDError names the file and the group."""
    try:
        if path.endswith(".json"):
            doc = json.loads(data or b"null")
        else:
            doc = yaml.safe_load(data)
    except (ValueError, yaml.YAMLError) as exc:
        raise FileSDError(f"{path}: {exc}") from None
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise FileSDError(f"{path}: expected a list of target groups, got {type(doc).__name__}")
    groups = []
    for i, item in enumerate(doc):
        where = f"{path}: group {i}"
        if not isinstance(item, dict):
            raise FileSDError(f"{where}: expected a mapping with targets and labels")
        unknown = set(item) - {"targets", "labels"}
        if unknown:
            raise FileSDError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        targets = item.get("targets") or []
        labels = item.get("labels") or {}
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise FileSDError(f"{where}: targets must be a list of strings")
        if not isinstance(labels, dict):
            raise FileSDError(f"{where}: labels must be a mapping")
        clean_labels: dict[str, str] = {}
        for name, value in labels.items():
            if not isinstance(name, str) or not _valid_label_name(name):
                raise FileSDError(f"{where}: invalid label name {name!r}")
            if not isinstance(value, str):
                raise FileSDError(f"{where}: label {name!r} must be a string, got {value!r}")
            clean_labels[name] = value
        for t in targets:
            if "/" in t:
                raise FileSDError(f"{where}: {t!r} is not a valid hostname")
        clean_labels["__meta_filepath"] = path
        groups.append(TargetGroup(source=f"{path}:{i}",
                                  targets=[{"__address__": t} for t in targets],
                                  labels=clean_labels))
    return groups


def _valid_label_name(name: str) -> bool:
    if not name or not (name[0].isascii() and (name[0].isalpha() or name[0] == "_")):
        return False
    return all(c.isascii() and (c.isalnum() or c == "_") for c in name)


class FileSD:
    """One file_sd_configs entry: files matching its globs, re-read when they change."""

    def __init__(self, patterns: list[str], refresh_interval: float):
        self.patterns = patterns
        self.refresh_interval = refresh_interval
        self._cache: dict[str, tuple[tuple[float, int], list[TargetGroup]]] = {}
        self._last_full = 0.0
        self._last: list[TargetGroup] = []

    def groups(self) -> list[TargetGroup]:
        """The groups of all matching files. The same list object is returned for as long
        as nothing changed, so that callers can skip rebuilding targets."""
        now = time.monotonic()
        full = now - self._last_full >= self.refresh_interval
        if full:
            self._last_full = now
        paths = sorted({p for pattern in self.patterns for p in glob.glob(pattern)})
        result: list[TargetGroup] = []
        seen = set()
        for path in paths:
            seen.add(path)
            try:
                st = os.stat(path)
            except OSError:
                continue
            ident = (st.st_mtime, st.st_size)
            cached = self._cache.get(path)
            if cached is None or cached[0] != ident or full:
                try:
                    with open(path, "rb") as f:
                        groups = parse_file(path, f.read())
                except (OSError, FileSDError) as exc:
                    stats.inc("clymene_file_sd_read_errors_total")
                    log.error("file_sd: error reading file, keeping its previous targets: %s", exc)
                    groups = cached[1] if cached else []
                # Remember the version read, so a broken file is reported once, not per tick.
                self._cache[path] = (ident, groups)
            else:
                groups = cached[1]
            result.extend(groups)
        for path in list(self._cache):
            if path not in seen:
                del self._cache[path]
        if result != self._last:
            self._last = result
        return self._last
