"""Build the storages named by `STORAGE_TYPE` (`--storage.type`), like Clymene's factory.

Each known type maps to a function that opens it from the settings; a new backend adds
one entry to `OPENERS`. Besides those, every entry of the YAML config's `remote_write:`
section becomes one more remote write storage (named `remote_write/<name or index>`),
with its url, headers, basic_auth, authorization, tls_config, write_relabel_configs and
queue_config.max_samples_per_send, as Prometheus users expect. With no STORAGE_TYPE the
default is `file`, unless the config has `remote_write:` entries: then they alone are
the storages.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from clymene.storage import Storage, storage_names
from clymene.storage.prometheus import TLSOptions


def _get(settings: Any, attr: str, default: Any = None) -> Any:
    value = getattr(settings, attr, default)
    return default if value is None else value


def _read_secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {path}: {exc.strerror}") from None


def _tls(settings: Any, prefix: str) -> TLSOptions | None:
    ca = _get(settings, f"{prefix}_tls_ca", "")
    cert = _get(settings, f"{prefix}_tls_cert", "")
    key = _get(settings, f"{prefix}_tls_key", "")
    server_name = _get(settings, f"{prefix}_tls_server_name", "")
    skip = bool(_get(settings, f"{prefix}_tls_skip_host_verify", False))
    if bool(cert) != bool(key):
        raise ValueError(f"--{prefix.replace('_', '.')}.tls.cert and .tls.key go together")
    if not (ca or cert or server_name or skip or _get(settings, f"{prefix}_tls_enabled", False)):
        return None
    return TLSOptions(ca, cert, key, server_name, skip)


def _open_file(settings: Any) -> Storage:
    from clymene.storage.file import FileStorage

    return FileStorage(settings.data_dir, max_bytes=settings.file_max_bytes)


def _remote_auth(settings: Any) -> dict[str, Any]:
    """Tenant, basic auth, bearer token, TLS and headers of --prometheus.remote.*."""
    user = _get(settings, "prometheus_remote_username", "")
    password = _get(settings, "prometheus_remote_password", "")
    password_file = _get(settings, "prometheus_remote_password_file", "")
    if password_file:
        password = _read_secret(password_file, "--prometheus.remote.password-file")
    token = _get(settings, "prometheus_remote_bearer_token", "")
    token_file = _get(settings, "prometheus_remote_bearer_token_file", "")
    if token_file:
        token = _read_secret(token_file, "--prometheus.remote.bearer-token-file")
    if user and token:
        raise ValueError("--prometheus.remote.username and --prometheus.remote.bearer-token "
                         "exclude each other")
    return {
        "tenant": _get(settings, "prometheus_remote_tenant", ""),
        "basic_auth": (user, password) if user else None,
        "bearer_token": token or None,
        "tls": _tls(settings, "prometheus_remote"),
        "headers": dict(_get(settings, "prometheus_remote_headers", {}) or {}),
    }


def _open_prometheus(settings: Any) -> Storage:
    from clymene.storage.prometheus import RemoteWriteStorage

    url = getattr(settings, "prometheus_remote_url", "") or ""
    if not url:
        raise ValueError(
            "storage type 'prometheus' needs a remote write URL: set "
            "--prometheus.remote.url or PROMETHEUS_REMOTE_URL"
        )
    agent = (getattr(settings, "prometheus_remote_user_agent", None)
             or getattr(settings, "prometheus_remote_user_agent_dotted", None) or None)
    return RemoteWriteStorage(
        url,
        timeout=settings.prometheus_remote_timeout,
        user_agent=agent,
        max_samples_per_send=getattr(settings, "prometheus_remote_max_samples_per_send", 2000),
        **_remote_auth(settings),
    )


def _open_gateway(settings: Any) -> Storage:
    from clymene.storage.prometheus import RemoteWriteStorage

    storage = RemoteWriteStorage(
        _get(settings, "gateway_http_url", "http://localhost:15611").rstrip("/") + "/api/v1/write",
        timeout=settings.prometheus_remote_timeout,
        max_samples_per_send=getattr(settings, "prometheus_remote_max_samples_per_send", 2000),
        name="gateway",
    )
    # The gateway answers 2xx only once the data is safe (in Kafka or written): like
    # Kafka, it is always waited for, so a target's batches keep their order.
    storage.always_wait = True  # type: ignore[attr-defined]
    return storage


def _open_cortex(settings: Any) -> Storage:
    from clymene.storage.prometheus import RemoteWriteStorage

    url = _get(settings, "cortex_distributor_url", "")
    if not url:
        raise ValueError("storage type 'cortex' needs --cortex.distributor.url "
                         "(CORTEX_DISTRIBUTOR_URL), e.g. http://distributor/api/v1/push")
    return RemoteWriteStorage(
        url,
        timeout=_get(settings, "cortex_distributor_timeout", 10.0),
        user_agent=_get(settings, "cortex_distributor_user_agent", "") or None,
        max_samples_per_send=getattr(settings, "prometheus_remote_max_samples_per_send", 2000),
        name="cortex",
        **_remote_auth(settings),
    )


def _open_elasticsearch(settings: Any) -> Storage:
    from clymene.storage.elasticsearch import ElasticsearchStorage

    token_file = _get(settings, "es_token_file", "")
    token = _read_secret(token_file, "--es.token-file") if token_file else ""
    return ElasticsearchStorage(
        list(_get(settings, "es_server_urls", ["http://127.0.0.1:9200"])),
        username=_get(settings, "es_username", ""),
        password=_get(settings, "es_password", ""),
        token=token,
        timeout=_get(settings, "es_timeout", 30.0),
        bulk_actions=_get(settings, "es_bulk_actions", 1000),
        bulk_size=_get(settings, "es_bulk_size", 5_000_000),
        bulk_workers=_get(settings, "es_bulk_workers", 1),
        index_prefix=_get(settings, "es_index_prefix", ""),
        index_name=_get(settings, "es_clymene_agent_index_name", "clymene-metrics"),
        date_pattern=_get(settings, "es_index_date_pattern", "YYYY.MM.DD"),
        num_shards=_get(settings, "es_num_shards", 1),
        num_replicas=_get(settings, "es_num_replicas", 1),
        total_fields_limit=_get(settings, "es_total_fields_limit", 1000),
        create_template=_get(settings, "es_create_index_templates", True),
        tls=_tls(settings, "es"),
    )


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ValueError(f"--opentsdb.hosts: invalid host:port {text!r}") from None


def _open_opentsdb(settings: Any) -> Storage:
    from clymene.storage.opentsdb import OpenTSDBStorage

    port = int(_get(settings, "opentsdb_port", 4242))
    listed = _get(settings, "opentsdb_hosts", []) or []
    hosts = ([_host_port(h, port) for h in listed] if listed
             else [(_get(settings, "opentsdb_host", "localhost"), port)])
    return OpenTSDBStorage(
        hosts,
        http=bool(_get(settings, "opentsdb_http", False)),
        api_path=_get(settings, "opentsdb_http_api_path", "api/put"),
        ssl=bool(_get(settings, "opentsdb_ssl", False)),
        username=_get(settings, "opentsdb_http_username", ""),
        password=_get(settings, "opentsdb_http_password", ""),
        max_chunk=_get(settings, "opentsdb_max_chunk", 512),
        max_tags=_get(settings, "opentsdb_max_tags", 8),
        timeout=_get(settings, "opentsdb_timeout", 10.0),
        tls=_tls(settings, "opentsdb"),
        seconds=bool(_get(settings, "opentsdb_timestamp_seconds", False)),
    )


def _open_influxdb(settings: Any) -> Storage:
    from clymene.storage.influxdb import InfluxDBStorage

    return InfluxDBStorage(
        _get(settings, "influxdb_url", "http://localhost:8086"),
        database=_get(settings, "influxdb_database", ""),
        username=_get(settings, "influxdb_username", ""),
        password=_get(settings, "influxdb_password", ""),
        token=_get(settings, "influxdb_token", ""),
        org=_get(settings, "influxdb_org", ""),
        bucket=_get(settings, "influxdb_bucket", ""),
        precision=_get(settings, "influxdb_precision", "ms"),
        use_gzip=bool(_get(settings, "influxdb_use_gzip", False)),
        timeout=_get(settings, "influxdb_timeout", 10.0),
        batch_size=_get(settings, "influxdb_batch_size", 5000),
        tls=_tls(settings, "influxdb"),
    )


def _open_kafka(settings: Any) -> Storage:
    from clymene.storage.kafka import open_kafka

    return open_kafka(settings)


OPENERS: dict[str, Callable[[Any], Storage]] = {
    "kafka": _open_kafka,
    "file": _open_file,
    "prometheus": _open_prometheus,
    "cortex": _open_cortex,
    "gateway": _open_gateway,
    "elasticsearch": _open_elasticsearch,
    "opentsdb": _open_opentsdb,
    "influxdb": _open_influxdb,
}


def remote_write_storages(config: Any) -> list[Storage]:
    """One RemoteWriteStorage per entry of a loaded config's `remote_write:` section."""
    from clymene.storage.prometheus import RemoteWriteStorage

    out: list[Storage] = []
    for i, rw in enumerate(getattr(config, "remote_write", ()) or ()):
        where = f"remote_write[{i}]"
        basic = None
        if rw.basic_auth is not None:
            password = rw.basic_auth.password
            if rw.basic_auth.password_file:
                password = _read_secret(rw.basic_auth.password_file, f"{where}.basic_auth")
            basic = (rw.basic_auth.username, password)
        token, scheme = None, "Bearer"
        if rw.authorization is not None:
            token = rw.authorization.credentials
            if rw.authorization.credentials_file:
                token = _read_secret(rw.authorization.credentials_file, f"{where}.authorization")
            scheme = rw.authorization.type or "Bearer"
        t = rw.tls_config
        tls = TLSOptions(t.ca_file, t.cert_file, t.key_file, t.server_name,
                         t.insecure_skip_verify)
        out.append(RemoteWriteStorage(
            rw.url, timeout=rw.remote_timeout, headers=dict(rw.headers), basic_auth=basic,
            bearer_token=token or None, auth_scheme=scheme,
            max_samples_per_send=rw.queue_config.max_samples_per_send,
            name=f"remote_write/{rw.name or i}", tls=tls,
            write_relabel=list(rw.write_relabel_configs)))
    return out


def _load_config(settings: Any) -> Any:
    path = getattr(settings, "config_file", "") or ""
    if not path or not os.path.exists(path):
        return None
    from clymene import config as config_module

    return config_module.load_file(path)


LOG_ONLY_TYPES = ("loki",)


def open_storages(settings: Any, config: Any = None) -> list[Storage]:
    """One storage per name in `settings.storage_type` (in that order, repeats ignored),
    then one per `remote_write:` entry of `config` (loaded from `settings.config_file`
    when not given); no name and no entry means `file`. Raises ValueError for an unknown
    name or a missing setting, having closed whatever it had opened."""
    # Log-only outputs are the log side's business (e.g. `clymene run` with a log agent).
    names = [name for name in storage_names(settings) if name not in LOG_ONLY_TYPES]
    for name in names:
        if name not in OPENERS:
            known = ", ".join(sorted(OPENERS))
            raise ValueError(f"unknown storage type {name!r} in STORAGE_TYPE; known types: {known}")
    if config is None:
        config = _load_config(settings)
    storages: list[Storage] = []
    try:
        for name in names:
            storages.append(OPENERS[name](settings))
        storages.extend(remote_write_storages(config))
        if not storages:
            storages.append(OPENERS["file"](settings))
    except BaseException:
        for storage in storages:
            storage.close()
        raise
    return storages
