"""The gateway's log side: Loki push API and /api/logs (snappy protobuf, JSON, gzip) to
Loki directly or through Kafka (Tansu) and `clymene promtail-ingester`; 204 only when
the entries are safe, 503 otherwise, 400 undecodable, 413 too large, 415 unknown type."""

from __future__ import annotations

import gzip
import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from clymene import settings as settings_module
from clymene.gateway import server as gateway_server
from clymene.logs import ingester as log_ingester
from clymene.logs import loki_pb
from clymene.logs.loki import LokiClient
from tests.loki_receiver import LokiReceiver
from tests.servers import free_port, http_get, start_tansu, wait_until


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _ready(port: int) -> bool:
    try:
        return http_get(f"http://127.0.0.1:{port}/-/ready", 1)[0] == 200
    except OSError:
        return False


class _Running:
    """`run(settings, stop)` of a command in a thread."""

    def __init__(self, run, env: dict[str, str]) -> None:
        self.settings = settings_module.load(env)
        self.stop = threading.Event()
        self.result: list[int] = []
        self.thread = threading.Thread(
            target=lambda: self.result.append(run(self.settings, self.stop)), daemon=True)
        self.thread.start()

    def close(self) -> int:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        return self.result[0]


@pytest.fixture
def loki_gateway():
    rx = LokiReceiver()
    port = free_port()
    gw = _Running(gateway_server.run, {
        "STORAGE_TYPE": "loki", "LOKI_CLIENT_URL": rx.url,
        "GATEWAY_HTTP_SERVER_HOST_PORT": f"127.0.0.1:{port}",
        "GATEWAY_WRITE_TIMEOUT": "700ms", "GATEWAY_MAX_BODY_SIZE": "64KiB"})
    wait_until(lambda: _ready(port), 10)
    yield rx, f"http://127.0.0.1:{port}"
    assert gw.close() == 0
    rx.stop()


def test_push_protobuf_json_gzip_to_loki(loki_gateway):
    rx, base = loki_gateway
    # the agent's own encoder (snappy protobuf), tenant passed through
    client = LokiClient(f"{base}/loki/api/v1/push", tenant="team-a")
    assert client.push([('{job="a"}', [(1, "one"), (2, "two")])], None) is True
    json_client = LokiClient(f"{base}/loki/api/v1/push", encoding="json")
    assert json_client.push([('{job="b"}', [(3, "three")])], None) is True
    body = gzip.compress(loki_pb.encode_push_json([('{job="b"}', [(4, "four ✓")])]))
    assert _post(f"{base}/loki/api/v1/push", body,
                 {"Content-Type": "application/json", "Content-Encoding": "gzip"}) == (204, "")
    # the original's /api/logs: the same bodies
    body = gzip.compress(loki_pb.compress(loki_pb.encode_push_request(
        [('{job="b"}', [(5, "five")])])))
    assert _post(f"{base}/api/logs", body, {"Content-Type": "application/x-protobuf",
                                            "Content-Encoding": "gzip"}) == (204, "")
    assert rx.lines("team-a") == {'{job="a"}': [(1, "one"), (2, "two")]}
    assert rx.lines("") == {'{job="b"}': [(3, "three"), (4, "four ✓"), (5, "five")]}
    assert rx.rejected == 0 and rx.duplicates == 0


def test_bad_bodies_and_sizes(loki_gateway):
    rx, base = loki_gateway
    url = f"{base}/loki/api/v1/push"
    code, text = _post(url, b"\x05garbage", {"Content-Type": "application/x-protobuf"})
    assert code == 400 and "cannot decode" in text
    code, text = _post(url, b"{not json", {"Content-Type": "application/json"})
    assert code == 400
    code, text = _post(url, b"x", {"Content-Type": "text/plain"})
    assert code == 415
    code, text = _post(url, b"x", {"Content-Type": "application/json",
                                   "Content-Encoding": "br"})
    assert code == 415
    code, text = _post(url, b"not gzip", {"Content-Type": "application/json",
                                          "Content-Encoding": "gzip"})
    assert code == 400
    # over 64 KiB: on the wire, announced by snappy, and once gunzipped
    code, _ = _post(url, b"x" * (65 << 10), {"Content-Type": "application/x-protobuf"})
    assert code == 413
    big = loki_pb.compress(loki_pb.encode_push_request([('{job="a"}', [(1, "y" * 70000)])]))
    assert len(big) < 64 << 10
    code, text = _post(url, big, {"Content-Type": "application/x-protobuf"})
    assert code == 413 and "limit" in text
    bomb = gzip.compress(loki_pb.encode_push_json([('{job="a"}', [(1, "z" * 70000)])]))
    code, _ = _post(url, bomb, {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert code == 413
    # no metrics storage when STORAGE_TYPE names only loki
    code, text = _post(f"{base}/api/v1/write", b"", {"Content-Type": "application/x-protobuf"})
    assert code == 404 and "no metrics storage" in text
    assert rx.count() == 0
    status, metrics = http_get(f"{base}/metrics")
    assert 'clymene_gateway_requests_total{code="413",handler="/loki/api/v1/push"}' in \
        metrics.decode()


def test_loki_down_is_503_then_the_retry_passes(loki_gateway):
    rx, base = loki_gateway
    body = loki_pb.compress(loki_pb.encode_push_request([('{job="a"}', [(7, "seven")])]))
    headers = {"Content-Type": "application/x-protobuf"}
    rx.down = True
    started = time.monotonic()
    code, text = _post(f"{base}/loki/api/v1/push", body, headers)
    assert code == 503 and "loki" in text
    assert 0.6 < time.monotonic() - started < 3
    rx.down = False
    assert _post(f"{base}/loki/api/v1/push", body, headers) == (204, "")
    # Loki refusing for good (400) is the sender's 400 too
    rx.responses = [400]
    code, text = _post(f"{base}/loki/api/v1/push", body, headers)
    assert code == 400 and "refused" in text
    assert rx.lines("") == {'{job="a"}': [(7, "seven")]}


def test_promtail_pushes_through_gateway_kafka_ingester_to_loki(tmp_path):
    broker = start_tansu(tmp_path / "tansu")
    rx = LokiReceiver()
    topic = "clymene-logs-gw"
    port, admin = free_port(), free_port()
    kafka_env = {"KAFKA_PRODUCER_BROKERS": broker.url, "KAFKA_CONSUMER_BROKERS": broker.url,
                 "KAFKA_PRODUCER_REQUIRED_ACKS": "all", "KAFKA_CONSUMER_PARTITIONS": "3",
                 "KAFKA_CONSUMER_SESSION_TIMEOUT": "6s",
                 "KAFKA_PRODUCER_PROMTAIL_TOPIC": topic,
                 "KAFKA_CONSUMER_PROMTAIL_TOPIC": topic}
    gw = _Running(gateway_server.run, {
        **kafka_env, "STORAGE_TYPE": "kafka",
        "GATEWAY_HTTP_SERVER_HOST_PORT": f"127.0.0.1:{port}", "GATEWAY_WRITE_TIMEOUT": "10s"})
    ing = None
    try:
        wait_until(lambda: _ready(port), 10)
        # Three promtail-like senders, one stream each plus a shared tenant stream,
        # each sending its batches one after the other.
        def sender(n: int) -> None:
            client = LokiClient(f"http://127.0.0.1:{port}/loki/api/v1/push",
                                tenant="team-a" if n == 0 else "", min_backoff=0.05)
            for b in range(20):
                batch = [(f'{{job="s{n}", pod="p{n}"}}',
                          [(1_000_000 * (b * 10 + i), f"s{n} line {b * 10 + i}")
                           for i in range(10)])]
                assert client.push(batch, None) is True
        threads = [threading.Thread(target=sender, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        ing = _Running(log_ingester.run, {
            **kafka_env, "STORAGE_TYPE": "loki", "LOKI_CLIENT_URL": rx.url,
            "KAFKA_CONSUMER_GROUP_ID": "gw-test",
            "INGESTER_LISTEN_ADDRESS": f"127.0.0.1:{admin}"})
        wait_until(lambda: rx.count() >= 600, 60, 0.1)
        time.sleep(0.5)  # nothing more may arrive
    finally:
        if ing is not None:
            assert ing.close() == 0
        assert gw.close() == 0
        broker.stop()
        rx.stop()
    expected = {n: [(1_000_000 * i, f"s{n} line {i}") for i in range(200)] for n in range(3)}
    assert rx.lines("team-a") == {'{job="s0", pod="p0"}': expected[0]}
    assert rx.lines("") == {'{job="s1", pod="p1"}': expected[1],
                            '{job="s2", pod="p2"}': expected[2]}
    assert rx.rejected == 0 and rx.duplicates == 0 and rx.violations == []



def test_broker_unreachable_is_503_then_the_retry_passes(tmp_path):
    kafka_port, port = free_port(), free_port()
    topic = "clymene-logs-down"
    gw = _Running(gateway_server.run, {
        "STORAGE_TYPE": "kafka", "KAFKA_PRODUCER_BROKERS": f"127.0.0.1:{kafka_port}",
        "KAFKA_PRODUCER_REQUIRED_ACKS": "all", "KAFKA_PRODUCER_PROMTAIL_TOPIC": topic,
        "KAFKA_CONSUMER_PARTITIONS": "1",
        "GATEWAY_HTTP_SERVER_HOST_PORT": f"127.0.0.1:{port}", "GATEWAY_WRITE_TIMEOUT": "1s"})
    broker = None
    try:
        wait_until(lambda: _ready(port), 10)
        url = f"http://127.0.0.1:{port}/loki/api/v1/push"
        body = loki_pb.compress(loki_pb.encode_push_request([('{job="a"}', [(1, "one")])]))
        headers = {"Content-Type": "application/x-protobuf", "X-Scope-OrgID": "t"}
        started = time.monotonic()
        code, text = _post(url, body, headers)
        assert code == 503 and "kafka" in text
        assert time.monotonic() - started < 3
        broker = start_tansu(tmp_path / "tansu", kafka_port)
        # the sender's retry (promtail backs off the same way) passes once it is back
        wait_until(lambda: _post(url, body, headers)[0] == 204, 30, 0.5)
        from confluent_kafka import Consumer

        consumer = Consumer({"bootstrap.servers": broker.url, "group.id": "check",
                             "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
        consumer.subscribe([topic])
        got = []
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            got = [m for m in consumer.consume(10, 0.5) if m.error() is None]
        consumer.close()
    finally:
        assert gw.close() == 0
        if broker is not None:
            broker.stop()
    # one message per stream keyed by tenant and stream, the tenant in its header
    assert got[0].key() == b't\x00{job="a"}'
    assert got[0].headers() == [("X-Scope-OrgID", b"t")]
    assert loki_pb.decode_push_request(loki_pb.decompress(got[0].value())) == \
        [('{job="a"}', [(1, "one")])]


def test_api_logs_takes_the_original_producer_batch(loki_gateway):
    rx, base = loki_gateway
    batch = {"batch": {"streams": {
        '{job="orig"}': {"labels": '{job="orig"}', "entries": [
            {"ts": "2024-01-01T00:00:00Z", "line": "a"},
            {"ts": "2024-01-01T09:00:00.5+09:00", "line": "b"},
            {"ts": "2024-01-01T00:00:01.123456789Z", "line": "c"}]}},
        "bytes": 3, "createdAt": "2024-01-01T00:00:02Z"}, "tenantID": "team-o"}
    body = json.dumps(batch).encode()
    assert _post(f"{base}/api/logs", body, {"Content-Type": "application/json"}) == (204, "")
    ns = 1704067200 * 1_000_000_000
    assert rx.lines("team-o") == {'{job="orig"}': [
        (ns, "a"), (ns + 500_000_000, "b"), (ns + 1_123_456_789, "c")]}
    batch["batch"]["streams"]['{job="orig"}']["entries"][1]["ts"] = "yesterday"
    code, text = _post(f"{base}/api/logs", json.dumps(batch).encode(),
                       {"Content-Type": "application/json"})
    assert code == 400
    assert "batch.streams['{job=\"orig\"}'].entries[1]: timestamp 'yesterday'" in text
