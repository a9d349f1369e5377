"""The gateway's HTTP contract: 204 only when the data is safe, 503 when not, 400, 411,
413, auth, TLS with client certificates, health and /metrics; and against a real broker:
503 while the broker is unreachable, the sender's retry succeeding once it is back."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from clymene import settings as settings_module
from clymene import stats
from clymene.gateway.server import Gateway, make_server, tls_context
from clymene.kafka.ingester import Ingester
from clymene.storage import WriteError
from clymene.storage.kafka import open_kafka
from clymene.storage.prometheus import RemoteWriteStorage
from clymene.storage.remote_write_pb import compress, encode_write_request
from tests.servers import free_port, start_tansu, start_victoria_metrics, vm_export, wait_until

NOW_MS = int(time.time() * 1000) - 60_000


class _Recorder:
    """A storage that keeps what it is given, or fails as told."""

    name = "recorder"

    def __init__(self) -> None:
        self.samples: list = []
        self.error: WriteError | None = None

    def write(self, batch, deadline):
        if self.error is not None:
            raise self.error
        self.samples.extend(batch)

    def close(self):
        pass


def _serve(gw: Gateway, tls: ssl.SSLContext | None = None):
    server = make_server(f"127.0.0.1:{free_port()}", gw, tls)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def _post(port: int, path: str, body: bytes, headers: dict[str, str] | None = None,
          context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
    hdrs = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0"}
    hdrs.update(headers or {})
    try:
        conn.request("POST", path, body=body, headers=hdrs)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _samples(n: int, job: str = "gw") -> list:
    return [((("__name__", "gw_m"), ("i", str(i)), ("instance", "h:1"), ("job", job)),
             float(i), NOW_MS + i) for i in range(n)]


def _body(samples: list) -> bytes:
    return compress(encode_write_request(samples))


@pytest.fixture
def gateway():
    rec = _Recorder()
    gw = Gateway([rec], write_timeout=2.0, max_body_size=128 * 1024)
    server, port = _serve(gw)
    yield gw, rec, port
    server.shutdown()
    server.server_close()


def test_write_paths_answer_204_with_the_samples_written(gateway):
    gw, rec, port = gateway
    batch = _samples(1000)
    assert _post(port, "/api/v1/write", _body(batch)) == (204, b"")
    assert rec.samples == batch
    assert _post(port, "/api/metrics", _body(batch[:3])) == (204, b"")
    doc = {"timeseries": [{"labels": [{"name": "__name__", "value": "j"}],
                           "samples": [{"value": 2, "timestamp": "5"}]}]}
    status, _ = _post(port, "/api/metrics", json.dumps(doc).encode(),
                      {"Content-Type": "application/json", "Content-Encoding": "identity"})
    assert status == 204
    assert rec.samples[1003:] == [((("__name__", "j"),), 2.0, 5)]


def test_bad_bodies_and_sizes(gateway):
    gw, rec, port = gateway
    status, body = _post(port, "/api/v1/write", b"\x10\xff\xff\xffnot snappy")
    assert status == 400 and body.startswith(b"snappy:")
    status, body = _post(port, "/api/v1/write", compress(b"\x0a\x09\x0a\x01"))
    assert status == 400 and body.startswith(b"protobuf:")
    status, body = _post(port, "/api/v1/write", b"x" * (128 * 1024 + 1))
    assert status == 413 and b"over the limit of 131072" in body
    # Small on the wire, too large once uncompressed (snappy's length header says so).
    big = compress(encode_write_request(_samples(4000)))
    assert len(big) < 128 * 1024
    status, body = _post(port, "/api/v1/write", big)
    assert status == 413 and body.startswith(b"uncompressed body of")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.putrequest("POST", "/api/v1/write")
    conn.endheaders()
    assert conn.getresponse().status == 411
    conn.close()
    assert _post(port, "/api/v2/whatever", b"")[0] == 404
    assert rec.samples == []


def test_answers_follow_the_storage(gateway):
    gw, rec, port = gateway
    stats.drain()  # counters are per process: only this test's requests
    rec.error = WriteError("kafka: broker did not acknowledge", retryable=True)
    status, body = _post(port, "/api/v1/write", _body(_samples(5)))
    assert status == 503 and b"recorder: kafka: broker did not acknowledge" in body
    rec.error = WriteError("db: HTTP 400 out of order", retryable=False)
    assert _post(port, "/api/v1/write", _body(_samples(5)))[0] == 400
    rec.error = None
    assert _post(port, "/api/v1/write", _body(_samples(5)))[0] == 204
    assert _get(port, "/-/healthy") == (200, b"OK\n")
    assert _get(port, "/-/ready") == (200, b"OK\n")
    status, text = _get(port, "/metrics")
    assert status == 200
    lines = set(text.decode().splitlines())
    for code in ("204", "400", "503"):
        assert f'clymene_gateway_requests_total{{code="{code}",handler="/api/v1/write"}} 1' \
            in lines
    assert "clymene_gateway_samples_received_total 5" in lines


def test_bearer_and_basic_auth():
    rec = _Recorder()
    gw = Gateway([rec], auth=("bearer", "s3cret"))
    server, port = _serve(gw)
    try:
        body = _body(_samples(2))
        assert _post(port, "/api/v1/write", body)[0] == 401
        assert _post(port, "/api/v1/write", body, {"Authorization": "Bearer nope"})[0] == 401
        assert _post(port, "/api/v1/write", body, {"Authorization": "Bearer s3cret"})[0] == 204
        gw.auth = ("basic", "u:pw")
        good = "Basic " + base64.b64encode(b"u:pw").decode()
        bad = "Basic " + base64.b64encode(b"u:nope").decode()
        assert _post(port, "/api/v1/write", body, {"Authorization": bad})[0] == 401
        assert _post(port, "/api/v1/write", body, {"Authorization": good})[0] == 204
        assert len(rec.samples) == 4
    finally:
        server.shutdown()
        server.server_close()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def test_tls_with_client_certificates(tmp_path):
    d = tmp_path
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "1", "-extfile", "ext", "-out", f"{name}.crt",
                 cwd=d)
    rec = _Recorder()
    gw = Gateway([rec])
    server, port = _serve(gw, tls_context(str(d / "server.crt"), str(d / "server.key"),
                                          str(d / "ca.crt")))
    try:
        client = ssl.create_default_context(cafile=str(d / "ca.crt"))
        client.load_cert_chain(str(d / "client.crt"), str(d / "client.key"))
        assert _post(port, "/api/v1/write", _body(_samples(3)), context=client)[0] == 204
        anonymous = ssl.create_default_context(cafile=str(d / "ca.crt"))
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            _post(port, "/api/v1/write", _body(_samples(3)), context=anonymous)
        assert len(rec.samples) == 3
    finally:
        server.shutdown()
        server.server_close()


def test_503_while_the_broker_is_unreachable_then_the_senders_retry_succeeds(tmp_path):
    port = free_port()
    env = {"KAFKA_PRODUCER_BROKERS": f"127.0.0.1:{port}", "KAFKA_CONSUMER_BROKERS":
           f"127.0.0.1:{port}", "KAFKA_PRODUCER_TOPIC": "gw", "KAFKA_CONSUMER_TOPIC": "gw",
           "KAFKA_PRODUCER_REQUIRED_ACKS": "all", "KAFKA_PRODUCER_DELIVERY_TIMEOUT": "1s",
           "KAFKA_CONSUMER_SESSION_TIMEOUT": "6s", "KAFKA_CONSUMER_PARTITIONS": "2"}
    s = settings_module.load(env)
    gw = Gateway([open_kafka(s)], write_timeout=2.0)
    server, gw_port = _serve(gw)
    vm = start_victoria_metrics(tmp_path)
    broker = None
    ingester = None
    try:
        batch = _samples(1000)
        t0 = time.monotonic()
        status, body = _post(gw_port, "/api/v1/write", _body(batch))
        assert status == 503 and b"kafka:" in body
        assert 1.9 <= time.monotonic() - t0 < 8
        # The sender (clymene's own remote write client: 5xx is retried with backoff)
        # keeps trying; the broker comes up meanwhile.
        sender = RemoteWriteStorage(f"http://127.0.0.1:{gw_port}/api/v1/write", timeout=5)
        holder: dict = {}

        def late_broker() -> None:
            time.sleep(2)
            holder["broker"] = start_tansu(tmp_path, port=port)

        t = threading.Thread(target=late_broker)
        t.start()
        sender.write(batch, time.monotonic() + 40)  # raises if it never got a 2xx
        t.join()
        broker = holder["broker"]
        ingester = Ingester(s, [RemoteWriteStorage(vm.write_url, name="vm")])
        ingester.start()
        expected = {(labels, ts, value) for labels, value, ts in batch}

        def stored() -> set:
            rows = vm_export(vm, '{__name__="gw_m"}')
            return {(tuple(sorted(r["metric"].items())), ts, v) for r in rows
                    for v, ts in zip(r["values"], r["timestamps"], strict=True)}

        wait_until(lambda: stored() >= expected, timeout=30, interval=0.5)
        assert stored() == expected
    finally:
        if ingester is not None:
            ingester.close()
        server.shutdown()
        server.server_close()
        gw.close()
        vm.stop()
        if broker is not None:
            broker.stop()
        elif "holder" in locals() and "broker" in holder:
            holder["broker"].stop()
