"""Flags of the storage backends, with the original Clymene's names.

Each flag is also an environment variable (`--es.server-urls` = `ES_SERVER_URLS`). The
core `--storage.*` and `--prometheus.remote.{url,timeout,user-agent,max-samples-per-send}`
flags are in clymene/settings.py; these add what the other backends need and what the
remote write storage offers beyond the original (tenant, auth, TLS, headers).
"""

from __future__ import annotations

from clymene.flags import Flag, parse_bool, parse_bytes, parse_duration, parse_list


def _tls_flags(prefix: str, attr: str, what: str) -> tuple[Flag, ...]:
    """Jaeger-style TLS client flags (`--es.tls.enabled`, `--es.tls.ca`, ...)."""
    return (
        Flag(f"--{prefix}.tls.enabled", f"{attr}_tls_enabled", "false",
             f"Use TLS towards {what} (https:// URLs always do).", parse_bool),
        Flag(f"--{prefix}.tls.ca", f"{attr}_tls_ca", "",
             f"CA file that verifies {what}'s certificate (default: the system CAs)."),
        Flag(f"--{prefix}.tls.cert", f"{attr}_tls_cert", "",
             f"Client certificate file presented to {what}."),
        Flag(f"--{prefix}.tls.key", f"{attr}_tls_key", "", f"Key of --{prefix}.tls.cert."),
        Flag(f"--{prefix}.tls.server-name", f"{attr}_tls_server_name", "",
             f"Server name expected in {what}'s certificate (and sent as SNI)."),
        Flag(f"--{prefix}.tls.skip-host-verify", f"{attr}_tls_skip_host_verify", "false",
             f"Do not verify {what}'s certificate (insecure).", parse_bool),
    )


def parse_headers(text: str) -> dict[str, str]:
    """`Name=value,Other=value` -> dict (for --prometheus.remote.headers)."""
    out: dict[str, str] = {}
    for part in parse_list(text):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"invalid header {part!r} (use Name=value,Other=value)")
        out[name.strip()] = value.strip()
    return out


FLAGS: tuple[Flag, ...] = (
    # -- gateway: agents send to a clymene gateway (the original used gRPC on :15610)
    Flag("--gateway.http.url", "gateway_http_url", "http://localhost:15611",
         "Base URL of the clymene gateway for STORAGE_TYPE=gateway: metrics go to "
         "<url>/api/v1/write, logs to <url>/loki/api/v1/push."),
    # -- prometheus / cortex remote write: what the original lacks
    Flag("--prometheus.remote.user.agent", "prometheus_remote_user_agent_dotted", "",
         "The original Clymene's spelling of --prometheus.remote.user-agent."),
    Flag("--prometheus.remote.tenant", "prometheus_remote_tenant", "",
         "Tenant sent as X-Scope-OrgID (Cortex, Mimir, Thanos Receive)."),
    Flag("--prometheus.remote.username", "prometheus_remote_username", "",
         "Basic auth user of remote write requests."),
    Flag("--prometheus.remote.password", "prometheus_remote_password", "",
         "Basic auth password of remote write requests."),
    Flag("--prometheus.remote.password-file", "prometheus_remote_password_file", "",
         "File holding the basic auth password."),
    Flag("--prometheus.remote.bearer-token", "prometheus_remote_bearer_token", "",
         "Bearer token of remote write requests."),
    Flag("--prometheus.remote.bearer-token-file", "prometheus_remote_bearer_token_file", "",
         "File holding the bearer token."),
    Flag("--prometheus.remote.headers", "prometheus_remote_headers", "",
         "Extra request headers, Name=value,Other=value.", parse_headers),
    *_tls_flags("prometheus.remote", "prometheus_remote", "the remote write endpoint"),
    Flag("--cortex.distributor.url", "cortex_distributor_url", "",
         "Cortex distributor push URL (storage type cortex), e.g. "
         "http://cortex-distributor/api/v1/push; tenant, auth and TLS flags of "
         "--prometheus.remote.* apply."),
    Flag("--cortex.distributor.timeout", "cortex_distributor_timeout", "10s",
         "Timeout of one push request to Cortex.", parse_duration),
    Flag("--cortex.distributor.user.agent", "cortex_distributor_user_agent", "",
         "User-Agent of push requests to Cortex (default clymene/<version>)."),
    # -- elasticsearch
    Flag("--es.server-urls", "es_server_urls", "http://127.0.0.1:9200",
         "Comma list of Elasticsearch URLs, e.g. http://es1:9200,http://es2:9200.", parse_list),
    Flag("--es.username", "es_username", "", "Basic auth user for Elasticsearch."),
    Flag("--es.password", "es_password", "", "Basic auth password for Elasticsearch."),
    Flag("--es.token-file", "es_token_file", "", "File holding a bearer token for Elasticsearch."),
    Flag("--es.timeout", "es_timeout", "30s", "Timeout of one bulk request.", parse_duration),
    Flag("--es.bulk.size", "es_bulk_size", "5000000",
         "Most bytes in one bulk request.", parse_bytes),
    Flag("--es.bulk.actions", "es_bulk_actions", "1000",
         "Most documents in one bulk request.", int),
    Flag("--es.bulk.flush-interval", "es_bulk_flush_interval", "200ms",
         "Accepted for compatibility; each batch is flushed when written.", parse_duration),
    Flag("--es.bulk.workers", "es_bulk_workers", "1",
         "Bulk requests of one batch sent at once.", int),
    Flag("--es.index-prefix", "es_index_prefix", "",
         "Prefix of the index names: 'prod' gives prod-clymene-metrics-YYYY.MM.DD."),
    Flag("--es.index-date-pattern", "es_index_date_pattern", "YYYY.MM.DD",
         "Date suffix of the indices: YYYY, MM and DD are the UTC date of the sample "
         "(YYYY.MM gives monthly indices); empty means one index without a date."),
    Flag("--es.num-shards", "es_num_shards", "1", "Shards of each index (template).", int),
    Flag("--es.num-replicas", "es_num_replicas", "1", "Replicas of each index (template).", int),
    Flag("--es.total-fields-limit", "es_total_fields_limit", "1000",
         "index.mapping.total_fields.limit of the template: documents adding labels past "
         "it are rejected and counted, the index stays usable.", int),
    Flag("--es.create-index-templates", "es_create_index_templates", "true",
         "Install the index template at start.", parse_bool),
    Flag("--es.clymene-agent.index.name", "es_clymene_agent_index_name", "clymene-metrics",
         "Base name of the metrics indices."),
    Flag("--es.clymene-promtail.index.name", "es_clymene_promtail_index_name", "clymene-logs",
         "Base name of the log indices (used by the log pipeline)."),
    *_tls_flags("es", "es", "Elasticsearch"),
    # -- opentsdb
    Flag("--opentsdb.host", "opentsdb_host", "localhost", "OpenTSDB host."),
    Flag("--opentsdb.port", "opentsdb_port", "4242", "OpenTSDB port.", int),
    Flag("--opentsdb.hosts", "opentsdb_hosts", "",
         "Comma list of host:port (overrides host/port; the next is tried when one fails).",
         parse_list),
    Flag("--opentsdb.http", "opentsdb_http", "false",
         "Send through HTTP /api/put instead of the telnet put protocol.", parse_bool),
    Flag("--opentsdb.http-api-path", "opentsdb_http_api_path", "api/put",
         "Path of the HTTP put API."),
    Flag("--opentsdb.ssl", "opentsdb_ssl", "false", "Use https with --opentsdb.http.",
         parse_bool),
    Flag("--opentsdb.http-username", "opentsdb_http_username", "", "HTTP basic auth user."),
    Flag("--opentsdb.http-password", "opentsdb_http_password", "", "HTTP basic auth password."),
    Flag("--opentsdb.max-chunk", "opentsdb_max_chunk", "512",
         "Most data points in one HTTP request.", int),
    Flag("--opentsdb.max-tags", "opentsdb_max_tags", "8",
         "Most tags per data point (OpenTSDB's tsd.storage.max_tags); series with more "
         "labels are dropped and counted.", int),
    Flag("--opentsdb.timestamp-seconds", "opentsdb_timestamp_seconds", "false",
         "Send timestamps in whole seconds (for servers whose telnet listener takes no "
         "milliseconds, e.g. VictoriaMetrics).", parse_bool),
    Flag("--opentsdb.timeout", "opentsdb_timeout", "10s", "Timeout of one request.",
         parse_duration),
    *_tls_flags("opentsdb", "opentsdb", "OpenTSDB"),
    # -- influxdb
    Flag("--influxdb.url", "influxdb_url", "http://localhost:8086", "InfluxDB URL."),
    Flag("--influxdb.token", "influxdb_token", "", "v2 API token (Authorization: Token ...)."),
    Flag("--influxdb.org", "influxdb_org", "", "v2 API organization."),
    Flag("--influxdb.bucket", "influxdb_bucket", "", "v2 API bucket."),
    Flag("--influxdb.database", "influxdb_database", "",
         "v1 API database; when set, /write?db= is used instead of /api/v2/write."),
    Flag("--influxdb.username", "influxdb_username", "", "v1 API user."),
    Flag("--influxdb.password", "influxdb_password", "", "v1 API password."),
    Flag("--influxdb.precision", "influxdb_precision", "ms",
         "Timestamp precision of the lines: ns, us, ms or s.", str),
    Flag("--influxdb.use-gzip", "influxdb_use_gzip", "false", "Gzip the request bodies.",
         parse_bool),
    Flag("--influxdb.timeout", "influxdb_timeout", "10s", "Timeout of one write request.",
         parse_duration),
    Flag("--influxdb.batch-size", "influxdb_batch_size", "5000",
         "Most points in one write request.", int),
    *_tls_flags("influxdb", "influxdb", "InfluxDB"),
)
