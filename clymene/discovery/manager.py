"""The discovery process: config file + service discovery -> target registry in Redis.

It reloads the configuration when the file changes (a broken file is refused with its
location and the previous configuration stays in force), asks every job's discovery
mechanisms for target groups, builds the targets and publishes the registry when it
differs from what is there. Beat and the workers pick up a new registry version within a
second.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from clymene import config as config_module
from clymene import registry, stats
from clymene.discovery.file_sd import FileSD
from clymene.discovery.kubernetes import KubernetesSD
from clymene.discovery.targets import TargetGroup, populate
from clymene.registry import Target

log = logging.getLogger(__name__)


class Job:
    """One scrape config's discovery mechanisms."""

    def __init__(self, scrape_config: Any):
        self.config = scrape_config
        self.static = [
            TargetGroup(source=f"{scrape_config.job_name}/static/{i}",
                        targets=[{"__address__": t} for t in sc.targets],
                        labels=dict(sc.labels))
            for i, sc in enumerate(scrape_config.static_configs)
        ]
        self.file_sd = [FileSD(list(fc.files), float(fc.refresh_interval))
                        for fc in scrape_config.file_sd_configs]
        self.kubernetes = [KubernetesSD(kc, f"{scrape_config.job_name}/kubernetes/{i}")
                           for i, kc in enumerate(scrape_config.kubernetes_sd_configs)]
        self._key: tuple | None = None
        self._groups: list[TargetGroup] = []
        # populate() results per group object: a watch changes one group at a time, so
        # the other thousands are not relabelled again (the group is kept to pin its id).
        self._populated: dict[int, tuple[TargetGroup, str, tuple]] = {}

    def populate(self, group: TargetGroup, config_rev: str
                 ) -> tuple[list[Target], list[dict[str, str]], list[str]]:
        cached = self._populated.get(id(group))
        if cached is not None and cached[0] is group and cached[1] == config_rev:
            return cached[2]
        result = populate(self.config, group, config_rev)
        self._populated[id(group)] = (group, config_rev, result)
        return result

    def close(self) -> None:
        """Stop the watches of the kubernetes discoverers (on reload and exit)."""
        for k in self.kubernetes:
            k.close()

    def groups(self) -> list[TargetGroup]:
        lists = [fsd.groups() for fsd in self.file_sd] + [k.groups() for k in self.kubernetes]
        key = tuple(id(x) for x in lists)
        if key != self._key:  # same list objects: nothing changed, same answer
            self._key = key
            self._groups = list(self.static) + [g for x in lists for g in x]
            live = {id(g) for g in self._groups}
            self._populated = {k: v for k, v in self._populated.items() if k in live}
        return self._groups


class Discovery:
    def __init__(self, config_file: str, client: redis.Redis,
                 on_removed: Callable[[list[Target]], None] | None = None):
        self.config_file = config_file
        self.redis = client
        self.on_removed = on_removed
        self.config: Any = None
        self.config_rev = ""
        self.jobs: list[Job] = []
        self._config_ident: tuple[float, int] | None = None
        self._errors_seen: set[str] = set()
        self._last_inputs: tuple = ()
        self._last_version = -1
        self._writer = registry.RegistryWriter(client)

    def reload_if_changed(self) -> bool:
        """Load the config file when it changed. Raises ConfigError only for the first load."""
        st = os.stat(self.config_file)
        ident = (st.st_mtime, st.st_size)
        if ident == self._config_ident:
            return False
        self._config_ident = ident
        with open(self.config_file, encoding="utf-8") as f:
            text = f.read()
        try:
            cfg = config_module.load_string(text, self.config_file,
                                            os.path.dirname(os.path.abspath(self.config_file)))
        except config_module.ConfigError as exc:
            if self.config is None:
                raise
            log.error("config reload refused, keeping the previous configuration: %s", exc)
            return False
        for warning in getattr(cfg, "warnings", []) or []:
            log.warning("config: %s", warning)
        self.config = cfg
        self.config_rev = registry.publish_config(self.redis, text, self.config_file)
        for job in self.jobs:
            job.close()
        self.jobs = [Job(sc) for sc in cfg.scrape_configs]
        log.info("configuration loaded from %s: %d jobs", self.config_file, len(self.jobs))
        return True

    def compute(self, groups: list[list[TargetGroup]] | None = None
                ) -> tuple[list[Target], list[dict[str, str]]]:
        if groups is None:
            groups = [job.groups() for job in self.jobs]
        active: dict[str, Target] = {}
        dropped: list[dict[str, str]] = []
        for job, job_groups in zip(self.jobs, groups, strict=True):
            job_active: dict[str, Target] = {}
            for group in job_groups:
                targets, dropped_labels, errors = job.populate(group, self.config_rev)
                for t in targets:
                    # Same labels and URL: one target, showing the discovered labels of
                    # the last duplicate (Prometheus' SetDiscoveredLabels in sync).
                    job_active[t.id] = t
                dropped.extend(dropped_labels)
                for err in errors:
                    if err not in self._errors_seen:
                        self._errors_seen.add(err)
                        log.error("discovery: %s", err)
            limit = job.config.target_limit
            if limit and len(job_active) > limit:
                # Prometheus keeps the targets but fails every scrape of the pool.
                error = f"target_limit exceeded (number of targets: {len(job_active)}, limit: {limit})"
                job_active = {tid: dataclasses.replace(t, forced_error=error).sealed()
                              for tid, t in job_active.items()}
            active.update(job_active)
        return list(active.values()), dropped

    def step(self) -> bool:
        self.reload_if_changed()
        groups = [job.groups() for job in self.jobs]
        # Rebuild only when a source changed (FileSD hands back the same list object
        # while its files are unchanged) or the registry was changed behind our back.
        inputs = (self.config_rev, tuple(id(g) for g in groups), len(groups))
        version = registry.registry_version(self.redis)
        if inputs == self._last_inputs and version == self._last_version:
            self._flush_stats()
            return False
        active, dropped = self.compute(groups)
        changed, removed = self._writer.publish(active, dropped)
        if changed:
            log.info("target registry updated: %d active, %d dropped", len(active), len(dropped))
        if removed and self.on_removed is not None:
            self.on_removed(removed)
        self._last_inputs = inputs
        self._last_version = registry.registry_version(self.redis)
        self._flush_stats()
        return changed

    def _flush_stats(self) -> None:
        registry.add_stats(self.redis, stats.drain())


def run(config_file: str, client: redis.Redis, refresh_interval: float,
        stop: threading.Event | None = None,
        on_removed: Callable[[list[Target]], None] | None = None) -> None:
    """Run discovery until `stop` is set (or forever).

    `on_removed` is called with the targets that left the registry, so that their series
    get staleness markers.
    """
    stop = stop or threading.Event()
    discovery = Discovery(config_file, client, on_removed)
    discovery.step()  # the first load raises on a bad config: refuse to start
    while not stop.wait(refresh_interval):
        try:
            discovery.step()
        except (OSError, redis.RedisError) as exc:
            log.error("discovery step failed, retrying: %s", exc)
            time.sleep(min(refresh_interval, 1.0))
