"""Flags and environment variables -> one settings object.

Every flag keeps the original Clymene's name, and each can also be given as an
environment variable named like the original's: upper case, dots and dashes as
underscores (`--prometheus.remote.url` = `PROMETHEUS_REMOTE_URL`). A flag wins over
the variable. The command line writes the flags it was given into the environment, so
child processes (Celery workers, beat) see the same settings with no extra plumbing.

The core flags are here; each area adds its own in a `flags.py` module listed in
FLAG_GROUPS (e.g. clymene/storage/flags.py), so areas never edit one shared list.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Mapping
from dataclasses import fields, make_dataclass
from typing import Any

from clymene.flags import Flag, parse_bytes, parse_duration, parse_list

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"

# Modules with a FLAGS tuple of their own; a missing module is skipped.
FLAG_GROUPS = (
    "clymene.storage.flags",
    "clymene.kafka.flags",
    "clymene.gateway.flags",
    "clymene.discovery.flags",
    "clymene.logs.flags",
)

CORE_FLAGS: tuple[Flag, ...] = (
    Flag("--config.file", "config_file", "clymene.yml", "Prometheus-style configuration file."),
    Flag("--broker.url", "broker_url", "",
         f"Celery broker (Redis) URL; empty means {DEFAULT_BROKER_URL} "
         "(`clymene run` starts an embedded Redis when nothing answers there).",
         env_name="CLYMENE_BROKER_URL"),
    Flag("--storage.type", "storage_type", "",
         "Comma list of storage backends (prometheus, cortex, elasticsearch, opentsdb, "
         "influxdb, kafka, gateway, file; for logs loki, elasticsearch, kafka, gateway). "
         "Empty means file.", parse_list),
    Flag("--prometheus.remote.url", "prometheus_remote_url", "",
         "Remote write URL, e.g. http://prometheus:9090/api/v1/write."),
    Flag("--prometheus.remote.timeout", "prometheus_remote_timeout", "30s",
         "Timeout of one remote write request.", parse_duration),
    Flag("--prometheus.remote.user-agent", "prometheus_remote_user_agent", "",
         "User-Agent header of remote write requests (default clymene/<version>)."),
    Flag("--prometheus.remote.max-samples-per-send", "prometheus_remote_max_samples_per_send",
         "2000", "Most samples in one remote write request; a scrape's batch is split "
         "in order, nothing lost at the boundaries.", int),
    Flag("--storage.file.path", "data_dir", "data",
         "Directory of the file storage (one JSON line per sample)."),
    Flag("--storage.file.max-bytes", "file_max_bytes", "100MiB",
         "Size at which the file storage rotates its file.", parse_bytes),
    Flag("--web.listen-address", "web_listen_address", "0.0.0.0:15691",
         "Address of the web server (targets API, /metrics, health)."),
    Flag("--web.auth.username", "web_auth_username", "",
         "Require HTTP basic auth with this user on the web server."),
    Flag("--web.auth.password-file", "web_auth_password_file", "",
         "File holding the basic auth password of the web server."),
    Flag("--web.tls.cert-file", "web_tls_cert_file", "", "Serve the web server over TLS."),
    Flag("--web.tls.key-file", "web_tls_key_file", "", "Key of --web.tls.cert-file."),
    Flag("--worker.concurrency", "worker_concurrency", "0",
         "Concurrent scrapes of the worker started by `clymene run` "
         "(0 = 8 per CPU for threads, 1 per CPU for prefork).", int),
    Flag("--worker.pool", "worker_pool", "threads",
         "Celery pool of the worker started by `clymene run`: threads (scrapes wait on the "
         "network, and threads cost no hand-off between processes) or prefork."),
    Flag("--beat.tick", "beat_tick", "100ms",
         "Least time between two ticks of beat. The scrape tasks due within a tick are "
         "sent together and workers run them back to back, which costs less CPU per "
         "scrape than one at a time (warm caches); a scrape starts at most this late.",
         parse_duration),
    Flag("--discovery.refresh-interval", "discovery_refresh_interval", "1s",
         "How often discovery checks config and file_sd files for changes.", parse_duration),
    Flag("--log-level", "log_level", "info", "debug, info, warn or error."),
)

# STORAGE_TYPE is the original's name for --storage.type; both work.
_ENV_ALIASES = {"storage_type": ("STORAGE_TYPE",)}


def _all_flags() -> tuple[Flag, ...]:
    flags = list(CORE_FLAGS)
    for name in FLAG_GROUPS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise  # a missing group is skipped; a broken import inside one is not
            continue
        flags.extend(module.FLAGS)
    seen: set[str] = set()
    for flag in flags:
        if flag.attr in seen:
            raise RuntimeError(f"flag attribute {flag.attr!r} is declared twice")
        seen.add(flag.attr)
    return tuple(flags)


FLAGS: tuple[Flag, ...] = _all_flags()


def _effective_broker_url(self: Any) -> str:
    return self.broker_url or DEFAULT_BROKER_URL


# One frozen attribute per flag (settings.prometheus_remote_url, ...).
Settings = make_dataclass(
    "Settings", [(f.attr, Any) for f in FLAGS], frozen=True,
    namespace={"effective_broker_url": property(_effective_broker_url),
               "__doc__": "The value of every flag, by its attribute name."})


class SettingsError(ValueError):
    pass


def load(environ: Mapping[str, str] | None = None) -> Any:
    """Settings from the environment (flags were written there by the command line)."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for flag in FLAGS:
        raw = env.get(flag.env)
        source = flag.env
        for alias in _ENV_ALIASES.get(flag.attr, ()):
            if raw is None and alias in env:
                raw, source = env[alias], alias
        if raw is None:
            raw, source = flag.default, flag.name + " default"
        try:
            values[flag.attr] = flag.convert(raw)
        except ValueError as exc:
            raise SettingsError(f"{flag.name} ({source}): {exc}") from None
    assert {f.name for f in fields(Settings)} == set(values)
    return Settings(**values)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add every flag to a parser, with no default so that unset flags fall to the env."""
    for flag in FLAGS:
        parser.add_argument(flag.name, dest=flag.attr, default=None, metavar="VALUE",
                            help=f"{flag.help} [env {flag.env}, default {flag.default!r}]"
                            .replace("%", "%%"))  # argparse formats help with %


def export_flags(args: argparse.Namespace, environ: dict[str, str] | None = None) -> None:
    """Write the flags given on the command line into the environment (a flag wins)."""
    env = os.environ if environ is None else environ
    for flag in FLAGS:
        value = getattr(args, flag.attr, None)
        if value is not None:
            env[flag.env] = value
            for alias in _ENV_ALIASES.get(flag.attr, ()):
                env.pop(alias, None)
