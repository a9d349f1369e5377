"""librdkafka configuration from the settings, and topic creation."""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)
# librdkafka's own log lines (connection refused, ...) go through Python logging.
client_log = logging.getLogger("clymene.kafka.librdkafka")

ACKS = {"noack": "0", "local": "1", "all": "all"}
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def auth_config(settings: Any, side: str) -> dict[str, object]:
    """security.protocol, TLS and SASL settings of one side (producer or consumer)."""
    p = f"kafka_{side}_"
    flag = f"--kafka.{side}"

    def get(name: str) -> Any:
        return getattr(settings, p + name)

    kind = str(get("authentication")).strip().lower() or "none"
    if kind not in ("none", "tls", "plaintext"):
        raise ValueError(f"{flag}.authentication: unknown type {kind!r}; use none, tls or "
                         "plaintext (kerberos is not supported)")
    if get("tls_server_name"):
        raise ValueError(f"{flag}.tls.server-name is not supported by this client")
    tls = kind == "tls" or bool(get("tls_enabled"))
    conf: dict[str, object] = {}
    if tls:
        if get("tls_ca"):
            conf["ssl.ca.location"] = get("tls_ca")
        if get("tls_cert"):
            conf["ssl.certificate.location"] = get("tls_cert")
        if get("tls_key"):
            conf["ssl.key.location"] = get("tls_key")
        if get("tls_skip_host_verify"):
            conf["ssl.endpoint.identification.algorithm"] = "none"
            conf["enable.ssl.certificate.verification"] = False
    if kind == "plaintext":
        mechanism = str(get("plaintext_mechanism")).strip().upper()
        if mechanism not in MECHANISMS:
            raise ValueError(f"{flag}.plaintext.mechanism: unknown mechanism {mechanism!r}; "
                             f"use {', '.join(MECHANISMS)}")
        conf.update({"security.protocol": "SASL_SSL" if tls else "SASL_PLAINTEXT",
                     "sasl.mechanism": mechanism,
                     "sasl.username": get("plaintext_username"),
                     "sasl.password": get("plaintext_password")})
    else:
        conf["security.protocol"] = "SSL" if tls else "PLAINTEXT"
    return conf


def producer_config(settings: Any) -> dict[str, object]:
    brokers = list(settings.kafka_producer_brokers)
    if not brokers:
        raise ValueError("--kafka.producer.brokers: no broker given")
    acks = str(settings.kafka_producer_required_acks).strip().lower()
    if acks not in ACKS:
        raise ValueError(f"--kafka.producer.required-acks: unknown value {acks!r}; "
                         "use noack, local or all")
    compression = str(settings.kafka_producer_compression).strip().lower()
    if compression not in COMPRESSIONS:
        raise ValueError(f"--kafka.producer.compression: unknown codec {compression!r}; "
                         f"use {', '.join(COMPRESSIONS)}")
    conf: dict[str, object] = {
        "bootstrap.servers": ",".join(brokers),
        "client.id": "clymene",
        "acks": ACKS[acks],
        "compression.type": compression,
        "message.timeout.ms": max(1000, int(settings.kafka_producer_delivery_timeout * 1000)),
        "retry.backoff.ms": 100,
        "retry.backoff.max.ms": 2000,
        "reconnect.backoff.max.ms": 2000,
        "socket.keepalive.enable": True,
        "logger": client_log,
    }
    # Idempotence keeps per-partition order through the client's own retries; it needs
    # acks=all.
    if acks == "all":
        conf["enable.idempotence"] = True
    else:
        conf["max.in.flight.requests.per.connection"] = 1
    if settings.kafka_producer_compression_level:
        conf["compression.level"] = settings.kafka_producer_compression_level
    if settings.kafka_producer_batch_linger:
        conf["linger.ms"] = settings.kafka_producer_batch_linger * 1000
    if settings.kafka_producer_batch_size:
        conf["batch.size"] = settings.kafka_producer_batch_size
    if settings.kafka_producer_batch_max_messages:
        conf["batch.num.messages"] = settings.kafka_producer_batch_max_messages
    conf.update(auth_config(settings, "producer"))
    return conf


def consumer_config(settings: Any, group_id: str) -> dict[str, object]:
    brokers = list(settings.kafka_consumer_brokers)
    if not brokers:
        raise ValueError("--kafka.consumer.brokers: no broker given")
    conf: dict[str, object] = {
        "bootstrap.servers": ",".join(brokers),
        "group.id": group_id,
        "client.id": settings.kafka_consumer_client_id or "clymene",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": int(settings.kafka_consumer_session_timeout * 1000),
        "heartbeat.interval.ms": max(100, int(settings.kafka_consumer_session_timeout * 250)),
        # A failing backend stops the loop from polling for as long as the outage lasts;
        # the group must not evict it meanwhile (heartbeats go on in the background).
        "max.poll.interval.ms": 86_400_000,
        # The prefetch queue stays small: the data waits in Kafka, not in memory.
        "queued.max.messages.kbytes": 16384,
        # Fetch answers as soon as there is data, at the latest after 100 ms.
        "fetch.wait.max.ms": 100,
        "topic.metadata.refresh.interval.ms": 5000,
        "reconnect.backoff.max.ms": 2000,
        "logger": client_log,
    }
    conf.update(auth_config(settings, "consumer"))
    return conf


def admin_config(conf: dict[str, object]) -> dict[str, object]:
    """The connection part of a producer or consumer configuration."""
    keep = ("bootstrap.servers", "security.protocol", "client.id", "logger")
    return {k: v for k, v in conf.items() if k in keep or k.startswith(("ssl.", "sasl."))}


def ensure_topic(conf: dict[str, object], topic: str, partitions: int,
                 timeout: float = 10.0) -> bool:
    """Create `topic` unless it exists; True when it exists afterwards. Never raises
    for a broker that does not answer (False then)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(admin_config(conf))
    try:
        meta = admin.list_topics(timeout=timeout)
        found = meta.topics.get(topic)
        if found is not None and found.error is None and found.partitions:
            return True
        future = admin.create_topics([NewTopic(topic, max(1, partitions), 1)],
                                     operation_timeout=timeout, request_timeout=timeout)[topic]
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        log.info("created topic %s with %d partitions", topic, partitions)
        return True
    except KafkaException as exc:
        log.warning("could not check or create topic %s: %s", topic, exc)
        return False


def wait_topic(conf: dict[str, object], topic: str, partitions: int, stop: Any,
               interval: float = 1.0) -> bool:
    """ensure_topic until it succeeds or `stop` (a threading.Event) is set."""
    while not stop.is_set():
        if ensure_topic(conf, topic, partitions, timeout=5.0):
            return True
        stop.wait(interval)
        time.sleep(0)
    return False
