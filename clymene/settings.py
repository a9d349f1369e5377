"""Flags and environment variables -> one typed settings object.

Every flag keeps the original Clymene's name, and each can also be given as an
environment variable named like the original's: upper case, dots and dashes as
underscores (`--prometheus.remote.url` = `PROMETHEUS_REMOTE_URL`). A flag wins over
the variable. The command line writes the flags it was given into the environment, so
child processes (Celery workers, beat) see the same settings with no extra plumbing.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"

_DURATION_RE = re.compile(r"^((\d+)h)?((\d+)m(?!s))?((\d+)s)?((\d+)ms)?$")


def parse_duration(text: str) -> float:
    """Parse a Go/Prometheus-style duration ("30s", "1m30s", "500ms", "2h") into seconds.

    A bare number is taken as seconds, which is what people type in environment variables.
    """
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    m = _DURATION_RE.match(text)
    if not text or not m or not any(m.groups()):
        raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 1m, 500ms)")
    hours, minutes, seconds, millis = (int(m.group(i) or 0) for i in (2, 4, 6, 8))
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def parse_bytes(text: str) -> int:
    """Parse a size such as "100MiB", "64MB", "1GB" or "4096" into bytes (base 2 units)."""
    m = re.match(r"^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"invalid size {text!r} (use e.g. 100MiB, 64MB, 4096)")
    power = " KMGT".index(m.group(2).upper() or " ")
    return int(m.group(1)) * 1024**power


def parse_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"invalid boolean {text!r}")


@dataclass(frozen=True)
class Flag:
    name: str  # "--prometheus.remote.url"
    attr: str  # attribute of Settings
    default: str
    help: str
    convert: Callable[[str], object] = str
    env_name: str = ""  # when the variable is not named after the flag

    @property
    def env(self) -> str:
        return self.env_name or re.sub(r"[.\-]", "_", self.name.lstrip("-")).upper()


FLAGS: tuple[Flag, ...] = (
    Flag("--config.file", "config_file", "clymene.yml", "Prometheus-style configuration file."),
    Flag("--broker.url", "broker_url", "",
         f"Celery broker (Redis) URL; empty means {DEFAULT_BROKER_URL} "
         "(`clymene run` starts an embedded Redis when nothing answers there).",
         env_name="CLYMENE_BROKER_URL"),
    Flag("--storage.type", "storage_type", "",
         "Comma list of storage backends (prometheus, file). Empty means file.", parse_list),
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
    Flag("--discovery.refresh-interval", "discovery_refresh_interval", "1s",
         "How often discovery checks config and file_sd files for changes.", parse_duration),
    Flag("--log-level", "log_level", "info", "debug, info, warn or error."),
)

# STORAGE_TYPE is the original's name for --storage.type; both work.
_ENV_ALIASES = {"storage_type": ("STORAGE_TYPE",)}


@dataclass(frozen=True)
class Settings:
    config_file: str
    broker_url: str
    storage_type: list[str]
    prometheus_remote_url: str
    prometheus_remote_timeout: float
    prometheus_remote_user_agent: str
    prometheus_remote_max_samples_per_send: int
    data_dir: str
    file_max_bytes: int
    web_listen_address: str
    web_auth_username: str
    web_auth_password_file: str
    web_tls_cert_file: str
    web_tls_key_file: str
    worker_concurrency: int
    worker_pool: str
    discovery_refresh_interval: float
    log_level: str

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or DEFAULT_BROKER_URL


class SettingsError(ValueError):
    pass


def load(environ: Mapping[str, str] | None = None) -> Settings:
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
    names = {f.name for f in fields(Settings)}
    assert names == set(values), names ^ set(values)
    return Settings(**values)  # type: ignore[arg-type]


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add every flag to a parser, with no default so that unset flags fall to the env."""
    for flag in FLAGS:
        parser.add_argument(flag.name, dest=flag.attr, default=None, metavar="VALUE",
                            help=f"{flag.help} [env {flag.env}, default {flag.default!r}]")


def export_flags(args: argparse.Namespace, environ: dict[str, str] | None = None) -> None:
    """Write the flags given on the command line into the environment (a flag wins)."""
    env = os.environ if environ is None else environ
    for flag in FLAGS:
        value = getattr(args, flag.attr, None)
        if value is not None:
            env[flag.env] = value
            for alias in _ENV_ALIASES.get(flag.attr, ()):
                env.pop(alias, None)
