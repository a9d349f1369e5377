"""Flags of the log agent and its Loki output, with the original Clymene's names.

Each flag is also an environment variable (`--loki.client.url` = `LOKI_CLIENT_URL`).
"""

from __future__ import annotations

from clymene.flags import Flag, parse_bytes, parse_duration

FLAGS: tuple[Flag, ...] = (
    Flag("--promtail.config.file", "promtail_config_file", "",
         "promtail-style configuration of `clymene promtail` (empty: --config.file)."),
    Flag("--loki.client.url", "loki_client_url", "",
         "Loki push URL, e.g. http://loki:3100/loki/api/v1/push (default: the config's "
         "clients[0].url)."),
    Flag("--loki.client.timeout", "loki_client_timeout", "10s",
         "Timeout of one push request.", parse_duration),
    Flag("--loki.client.tenant-id", "loki_client_tenant_id", "",
         "Tenant sent as X-Scope-OrgID (a tenant stage overrides it per entry)."),
    Flag("--loki.client.encoding", "loki_client_encoding", "protobuf",
         "Push body: protobuf (snappy-compressed logproto.PushRequest) or json."),
    Flag("--loki.client.batch-wait", "loki_client_batch_wait", "1s",
         "Longest time a batch waits before it is sent.", parse_duration),
    Flag("--loki.client.batch-size-bytes", "loki_client_batch_size_bytes", "1MiB",
         "Log line bytes at which a batch is sent at once.", parse_bytes),
    Flag("--loki.client.min-backoff", "loki_client_min_backoff", "500ms",
         "First wait before retrying a push that failed with 429, 5xx or a network error.",
         parse_duration),
    Flag("--loki.client.max-backoff", "loki_client_max_backoff", "5m",
         "Longest wait between retries.", parse_duration),
    Flag("--kafka.producer.promtail.topic", "kafka_producer_promtail_topic", "clymene-logs",
         "Topic the log agent publishes to (STORAGE_TYPE=kafka)."),
    Flag("--kafka.consumer.promtail.topic", "kafka_consumer_promtail_topic", "clymene-logs",
         "Topic the log ingester drains."),
    Flag("--loki.client.max-retries", "loki_client_max_retries", "0",
         "Retries of one batch before it is dropped; 0 retries until it is accepted "
         "(reading stops meanwhile, so nothing is lost).", int),
)
