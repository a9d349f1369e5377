"""Kafka flags, with the original Clymene's names (`--kafka.producer.*`,
`--kafka.consumer.*`, `--metric.split.length`) and the ingester's own."""

from __future__ import annotations

from clymene.flags import Flag, parse_bool, parse_bytes, parse_duration, parse_list


def _auth_flags(side: str) -> tuple[Flag, ...]:
    """Authentication flags of one side (producer or consumer), as the original's
    pkg/kafka/auth declares them (Kerberos is not supported here)."""
    p = f"--kafka.{side}"
    a = f"kafka_{side}"
    return (
        Flag(f"{p}.authentication", f"{a}_authentication", "none",
             "Authentication with the Kafka cluster: none, tls or plaintext (SASL)."),
        Flag(f"{p}.tls.enabled", f"{a}_tls_enabled", "false",
             "Use TLS to the brokers (implied by --authentication=tls).", parse_bool),
        Flag(f"{p}.tls.ca", f"{a}_tls_ca", "", "CA file to verify the brokers."),
        Flag(f"{p}.tls.cert", f"{a}_tls_cert", "", "Client certificate file."),
        Flag(f"{p}.tls.key", f"{a}_tls_key", "", "Client key file."),
        Flag(f"{p}.tls.server-name", f"{a}_tls_server_name", "",
             "Not supported by librdkafka; must be empty."),
        Flag(f"{p}.tls.skip-host-verify", f"{a}_tls_skip_host_verify", "false",
             "Do not verify the brokers' host names.", parse_bool),
        Flag(f"{p}.plaintext.username", f"{a}_plaintext_username", "", "SASL username."),
        Flag(f"{p}.plaintext.password", f"{a}_plaintext_password", "", "SASL password."),
        Flag(f"{p}.plaintext.mechanism", f"{a}_plaintext_mechanism", "PLAIN",
             "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."),
    )


FLAGS: tuple[Flag, ...] = (
    Flag("--kafka.producer.brokers", "kafka_producer_brokers", "127.0.0.1:9092",
         "Comma list of Kafka brokers.", parse_list),
    Flag("--kafka.producer.topic", "kafka_producer_topic", "clymene",
         "Topic the metric batches are published to."),
    Flag("--kafka.producer.encoding", "kafka_producer_encoding", "protobuf",
         "Message encoding: protobuf (snappy remote-write WriteRequest) or json."),
    Flag("--kafka.producer.required-acks", "kafka_producer_required_acks", "local",
         "Broker acknowledgement a publish waits for: noack, local or all."),
    Flag("--kafka.producer.compression", "kafka_producer_compression", "none",
         "Compression of message sets: none, gzip, snappy, lz4 or zstd."),
    Flag("--kafka.producer.compression-level", "kafka_producer_compression_level", "0",
         "Compression level (0 = the codec's default).", int),
    Flag("--kafka.producer.batch-linger", "kafka_producer_batch_linger", "0s",
         "Time to wait for more messages before sending a request (0 = 5 ms).",
         parse_duration),
    Flag("--kafka.producer.batch-size", "kafka_producer_batch_size", "0",
         "Bytes per partition batch (0 = client default, 1 MB).", parse_bytes),
    Flag("--kafka.producer.batch-min-messages", "kafka_producer_batch_min_messages", "0",
         "Accepted for compatibility; librdkafka batches by linger and size.", int),
    Flag("--kafka.producer.batch-max-messages", "kafka_producer_batch_max_messages", "0",
         "Most messages in one batch (0 = client default).", int),
    Flag("--kafka.producer.protocol-version", "kafka_producer_protocol_version", "",
         "Accepted for compatibility; the client negotiates the version."),
    Flag("--kafka.producer.delivery-timeout", "kafka_producer_delivery_timeout", "10s",
         "How long the client retries one message before giving it back to clymene, "
         "which retries again until the scrape's (or request's) deadline.", parse_duration),
    *_auth_flags("producer"),
    Flag("--kafka.consumer.brokers", "kafka_consumer_brokers", "127.0.0.1:9092",
         "Comma list of Kafka brokers.", parse_list),
    Flag("--kafka.consumer.topic", "kafka_consumer_topic", "clymene",
         "Topic the ingester drains."),
    Flag("--kafka.consumer.group-id", "kafka_consumer_group_id", "clymene",
         "Consumer group prefix; each backend uses <group-id>-<backend>."),
    Flag("--kafka.consumer.client-id", "kafka_consumer_client_id", "clymene",
         "Client id of the consumers."),
    Flag("--kafka.consumer.encoding", "kafka_consumer_encoding", "protobuf",
         "Message encoding: protobuf or json."),
    Flag("--kafka.consumer.session-timeout", "kafka_consumer_session_timeout", "6s",
         "Group session timeout: a dead ingester's partitions move after this long.",
         parse_duration),
    Flag("--kafka.consumer.partitions", "kafka_consumer_partitions", "6",
         "Partitions of the topic when the ingester has to create it.", int),
    *_auth_flags("consumer"),
    Flag("--metric.split.length", "metric_split_length", "1024",
         "Most series in one Kafka message.", int),
    Flag("--ingester.listen-address", "ingester_listen_address", "0.0.0.0:15694",
         "Address of the ingester's /metrics and health endpoints (empty: none)."),
    Flag("--ingester.batch-messages", "ingester_batch_messages", "500",
         "Most messages the ingester writes to a backend in one batch.", int),
    Flag("--ingester.write-timeout", "ingester_write_timeout", "30s",
         "Deadline of one backend write attempt; a failed attempt is retried (with "
         "backoff) until it succeeds.", parse_duration),
    Flag("--ingester.max-backoff", "ingester_max_backoff", "5s",
         "Longest wait between retries of a failing backend.", parse_duration),
)
