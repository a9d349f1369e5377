"""Kafka messages: split, keys, protobuf and JSON encodings, client configuration."""

from __future__ import annotations

import json
import math
import struct

import pytest

from clymene import settings as settings_module
from clymene.kafka import encoding as enc
from clymene.kafka.client import consumer_config, producer_config
from clymene.scrape import STALE_NAN
from clymene.storage.kafka import KafkaStorage
from clymene.storage.remote_write_pb import compress, decompress, encode_write_request


def _labels(i: int, job: str = "node", instance: str = "a:1", **extra: str):
    pairs = {"__name__": "m", "i": str(i), "job": job, "instance": instance, **extra}
    return tuple(sorted(pairs.items()))


def test_split_keeps_every_series_once_at_the_boundaries():
    batch = [(_labels(i), float(i), 1000 + i) for i in range(2500)]
    chunks = enc.split_by_target(batch, 1024)
    assert [len(c) for _, c in chunks] == [1024, 1024, 452]
    assert {k for k, _ in chunks} == {b"/node/a:1"}
    assert [s for _, c in chunks for s in c] == batch
    # A series with several samples is never cut between two messages.
    repeated = [(_labels(i % 3), float(i), 1000 + i) for i in range(9)]
    chunks = enc.split_by_target(repeated, 2)
    assert [len(c) for _, c in chunks] == [6, 3]
    assert sorted(s for _, c in chunks for s in c) == sorted(repeated)
    with pytest.raises(ValueError, match="--metric.split.length must be at least 1, got 0"):
        enc.split_by_target(batch, 0)


def test_messages_are_keyed_by_cluster_job_instance_in_order():
    batch = [(_labels(0, instance="x:1"), 1.0, 5), (_labels(1, instance="y:1"), 2.0, 5),
             (_labels(2, instance="x:1", cluster="east"), 3.0, 5),
             (_labels(3, instance="x:1"), 4.0, 5)]
    chunks = enc.split_by_target(batch, 100)
    assert [(k, [s[1] for s in c]) for k, c in chunks] == [
        (b"/node/x:1", [1.0, 4.0]), (b"/node/y:1", [2.0]), (b"east/node/x:1", [3.0])]


def test_protobuf_message_is_a_remote_write_body():
    batch = [(_labels(0), 1.5, 1700000000000), (_labels(1), STALE_NAN, 1700000000000),
             (_labels(2), -0.0, 1700000000001)]
    body = enc.encode(batch, "protobuf")
    assert body == compress(encode_write_request(batch))
    back = enc.decode(body, "protobuf")
    assert [(lb, struct.pack("<d", v), t) for lb, v, t in back] == \
        [(lb, struct.pack("<d", v), t) for lb, v, t in batch]
    assert decompress(body) == encode_write_request(batch)


def test_json_message_is_the_jsonpb_write_request():
    batch = [((("__name__", "up"), ("job", "j")), 1.0, 1700000000000),
             ((("__name__", "up"), ("job", "j")), 0.0, 1700000001000),
             ((("__name__", "x"), ("job", "j")), math.inf, 0),
             ((("__name__", "y"), ("job", "j")), math.nan, 7),
             ((("__name__", "z"), ("job", "j")), 0.25, 8)]
    doc = json.loads(enc.encode(batch, "json"))
    assert doc == {"timeseries": [
        {"labels": [{"name": "__name__", "value": "up"}, {"name": "job", "value": "j"}],
         "samples": [{"value": 1, "timestamp": "1700000000000"},
                     {"timestamp": "1700000001000"}]},
        {"labels": [{"name": "__name__", "value": "x"}, {"name": "job", "value": "j"}],
         "samples": [{"value": "Infinity"}]},
        {"labels": [{"name": "__name__", "value": "y"}, {"name": "job", "value": "j"}],
         "samples": [{"value": "NaN", "timestamp": "7"}]},
        {"labels": [{"name": "__name__", "value": "z"}, {"name": "job", "value": "j"}],
         "samples": [{"value": 0.25, "timestamp": "8"}]}]}
    back = enc.decode(enc.encode(batch, "json"), "json")
    assert [(lb, t) for lb, _, t in back] == [(lb, t) for lb, _, t in batch]
    assert [v for _, v, _ in back][:3] == [1.0, 0.0, math.inf]
    assert math.isnan(back[3][1]) and back[4][1] == 0.25


@pytest.mark.parametrize("body, message", [
    (b"{", "not valid JSON"),
    (b"[]", "not a WriteRequest"),
    (b'{"timeseries":[{"labels":[{"name":1}]}]}',
     "timeseries[0].labels[0]: name and value must be strings"),
    (b'{"timeseries":[{"labels":[],"samples":[{"value":"x"}]}]}',
     "timeseries[0].samples[0]: value must be a number, got 'x'"),
    (b'{"timeseries":[{},{"samples":[{"timestamp":"t"}]}]}',
     "timeseries[1].samples[0]: timestamp must be an integer, got 't'"),
])
def test_bad_json_names_the_place(body, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        enc.decode(body, "json")


def test_bad_protobuf_is_a_value_error():
    with pytest.raises(ValueError, match="not snappy-compressed"):
        enc.decode(b"\xff\xff\xff\xff\xff garbage", "protobuf")
    with pytest.raises(ValueError):
        enc.decode(compress(b"\x0a\x05\x0a"), "protobuf")


def _settings(**env: str):
    return settings_module.load(env)


def test_producer_config_maps_the_original_flags():
    conf = producer_config(_settings(
        KAFKA_PRODUCER_BROKERS="k1:9092, k2:9092", KAFKA_PRODUCER_REQUIRED_ACKS="all",
        KAFKA_PRODUCER_COMPRESSION="zstd", KAFKA_PRODUCER_BATCH_LINGER="20ms",
        KAFKA_PRODUCER_BATCH_SIZE="64KiB", KAFKA_PRODUCER_AUTHENTICATION="plaintext",
        KAFKA_PRODUCER_PLAINTEXT_USERNAME="u", KAFKA_PRODUCER_PLAINTEXT_PASSWORD="p",
        KAFKA_PRODUCER_PLAINTEXT_MECHANISM="scram-sha-512", KAFKA_PRODUCER_TLS_ENABLED="true",
        KAFKA_PRODUCER_TLS_CA="/ca.pem"))
    assert conf["bootstrap.servers"] == "k1:9092,k2:9092"
    assert conf["acks"] == "all" and conf["enable.idempotence"] is True
    assert conf["compression.type"] == "zstd"
    assert conf["linger.ms"] == 20.0 and conf["batch.size"] == 65536
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (conf["sasl.username"], conf["sasl.password"]) == ("u", "p")
    assert conf["ssl.ca.location"] == "/ca.pem"
    local = producer_config(_settings())
    assert local["acks"] == "1" and "enable.idempotence" not in local
    assert local["security.protocol"] == "PLAINTEXT" and local["compression.type"] == "none"
    noack = producer_config(_settings(KAFKA_PRODUCER_REQUIRED_ACKS="noack",
                                      KAFKA_PRODUCER_AUTHENTICATION="tls"))
    assert noack["acks"] == "0" and noack["security.protocol"] == "SSL"


@pytest.mark.parametrize("env, message", [
    ({"KAFKA_PRODUCER_REQUIRED_ACKS": "some"}, "--kafka.producer.required-acks: unknown value"),
    ({"KAFKA_PRODUCER_COMPRESSION": "brotli"}, "--kafka.producer.compression: unknown codec"),
    ({"KAFKA_PRODUCER_AUTHENTICATION": "kerberos"}, "--kafka.producer.authentication: unknown"),
    ({"KAFKA_PRODUCER_AUTHENTICATION": "plaintext", "KAFKA_PRODUCER_PLAINTEXT_MECHANISM": "X"},
     "--kafka.producer.plaintext.mechanism: unknown mechanism 'X'"),
])
def test_bad_producer_flags_are_named(env, message):
    with pytest.raises(ValueError, match=message):
        producer_config(_settings(**env))


def test_consumer_config_commits_only_by_hand():
    conf = consumer_config(_settings(KAFKA_CONSUMER_BROKERS="k:1",
                                     KAFKA_CONSUMER_SESSION_TIMEOUT="6s"), "clymene-vm")
    assert conf["group.id"] == "clymene-vm" and conf["bootstrap.servers"] == "k:1"
    assert conf["enable.auto.commit"] is False and conf["enable.auto.offset.store"] is False
    assert conf["session.timeout.ms"] == 6000 and conf["auto.offset.reset"] == "earliest"


def test_storage_rejects_an_unknown_encoding():
    with pytest.raises(ValueError, match="--kafka.producer.encoding: unknown encoding 'avro'"):
        KafkaStorage(publisher=None, encoding="avro")  # type: ignore[arg-type]
