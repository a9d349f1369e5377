"""The `kafka` storage: publish batches to a Kafka topic (`STORAGE_TYPE=kafka`).

A batch is cut into messages of at most `--metric.split.length` series, keyed by the
series' target (`cluster/job/instance`), so a target's messages stay in one partition
in order. `write` returns only when the broker acknowledged every message (per
`--kafka.producer.required-acks`), which makes the scrape task wait for it: the next
scrape of the target cannot overtake. A broker outage is retried with backoff until the
deadline; then the batch is counted as dropped and `WriteError(retryable=True)` raised.

Counters (clymene.stats), labelled `storage="kafka"`:
  clymene_storage_samples_written_total, clymene_storage_samples_dropped_total{reason},
  clymene_kafka_messages_published_total{topic}, clymene_kafka_bytes_published_total{topic},
  clymene_kafka_produce_retries_total{topic}.
"""

from __future__ import annotations

from typing import Any

from clymene import stats
from clymene.kafka import encoding as enc
from clymene.kafka.client import producer_config
from clymene.kafka.producer import Publisher, PublishError
from clymene.storage import Sample, WriteError


class KafkaStorage:
    def __init__(self, publisher: Publisher, encoding: str = "protobuf", split: int = 1024,
                 name: str = "kafka") -> None:
        if split < 1:
            raise ValueError(f"--metric.split.length must be at least 1, got {split}")
        self.publisher = publisher
        self.encoding = enc.check_encoding(encoding, "--kafka.producer.encoding")
        self.split = split
        self.name = name

    def messages(self, batch: list[Sample]) -> list[tuple[bytes, bytes, None]]:
        return [(key, enc.encode(chunk, self.encoding), None)
                for key, chunk in enc.split_by_target(batch, self.split)]

    def write(self, batch: list[Sample], deadline: float) -> None:
        if not batch:
            return
        messages = self.messages(batch)
        try:
            self.publisher.publish(messages, deadline)
        except PublishError as exc:
            stats.inc("clymene_storage_samples_dropped_total", len(batch), storage=self.name,
                      reason="deadline" if exc.retryable else "rejected")
            raise WriteError(str(exc), retryable=exc.retryable) from None
        topic = self.publisher.topic
        stats.inc("clymene_kafka_messages_published_total", len(messages), topic=topic)
        stats.inc("clymene_kafka_bytes_published_total", sum(len(m[1]) for m in messages),
                  topic=topic)
        stats.inc("clymene_storage_samples_written_total", len(batch), storage=self.name)

    def close(self) -> None:
        self.publisher.close()


def open_kafka(settings: Any) -> KafkaStorage:
    """The storage from the --kafka.producer.* flags and --metric.split.length."""
    conf = producer_config(settings)
    encoding = enc.check_encoding(settings.kafka_producer_encoding, "--kafka.producer.encoding")
    publisher = Publisher(conf, settings.kafka_producer_topic,
                          partitions=getattr(settings, "kafka_consumer_partitions", 6))
    return KafkaStorage(publisher, encoding, settings.metric_split_length)
