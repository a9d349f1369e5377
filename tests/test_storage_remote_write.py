"""Remote write beyond the basics: the shared tricky batch read back exactly from
Prometheus 2.42 and VictoriaMetrics 1.79, tenant/bearer/extra headers, the cortex alias,
and TLS with a client certificate plus basic auth against a real Prometheus."""

from __future__ import annotations

import base64
import crypt
import json
import math
import subprocess
import time
import urllib.parse
import warnings
from pathlib import Path

import pytest
import urllib3

from clymene.storage import WriteError
from clymene.storage.prometheus import RemoteWriteStorage, TLSOptions
from tests.servers import _start, prometheus_config, wait_until
from tests.test_storage_batches import is_stale, many_series, tricky_batch

NAMES = "plain_metric|tricky_metric|special_metric|wide_metric|colon:metric|many_series_metric"


def now_ms() -> int:
    return int(time.time() * 1000)


def key(value: float) -> object:
    return "NaN" if math.isnan(value) else value


def expected(batch) -> set:
    """What a TSDB returns: every sample but the staleness marker (NaN compared as text)."""
    return {(lbls, key(v), ts) for lbls, v, ts in batch if not is_stale(v)}


def prometheus_samples(url: str, at: float, pool: urllib3.PoolManager | None = None,
                       headers: dict | None = None) -> set:
    params = urllib.parse.urlencode({"query": f'{{__name__=~"{NAMES}"}}[10m]', "time": repr(at)})
    pool = pool or urllib3.PoolManager()
    response = pool.request("GET", f"{url}/api/v1/query?{params}", headers=headers or {})
    payload = json.loads(response.data)
    assert payload["status"] == "success", payload
    out = set()
    for item in payload["data"]["result"]:
        lbls = tuple(sorted(item["metric"].items()))
        for ts, text in item["values"]:
            out.add((lbls, key(float(text)), round(ts * 1000)))
    return out


def test_tricky_batch_into_prometheus_reads_back_exactly(prometheus):
    t0 = now_ms() - 5000
    batch = tricky_batch(t0) + many_series(10_000, t0 + 1000)
    storage = RemoteWriteStorage(prometheus.write_url)
    storage.write(batch, time.monotonic() + 10)
    storage.close()
    got = prometheus_samples(prometheus.url, time.time() + 1)
    assert got == expected(batch)


def test_tricky_batch_into_victoria_metrics_reads_back_exactly(vm_listeners):
    vm = vm_listeners
    t0 = now_ms() - 5000
    batch = [((("__name__", "rw_" + dict(lbls)["__name__"]),)
              + tuple(p for p in lbls if p[0] != "__name__"), v, ts)
             for lbls, v, ts in tricky_batch(t0) + many_series(10_000, t0 + 1000)]
    batch = [(tuple(sorted(lbls)), v, ts) for lbls, v, ts in batch]
    storage = RemoteWriteStorage(vm.write_url)
    storage.write(batch, time.monotonic() + 10)
    storage.close()

    def read() -> set:
        out = set()
        for item in vm.export('{__name__=~"rw_.*"}'):
            lbls = tuple(sorted(item["metric"].items()))
            for value, ts in zip(item["values"], item["timestamps"], strict=True):
                if ts >= t0:
                    value = math.nan if value is None or value == "NaN" else float(value)
                    out.add((lbls, key(value), ts))
        return out

    # VictoriaMetrics 1.79 keeps the staleness marker (a NaN sample) and drops ordinary
    # NaN samples itself (docs/storage.md).
    want = {(lbls, key(v), ts) for lbls, v, ts in batch if is_stale(v) or not math.isnan(v)}
    wait_until(lambda: len(read()) >= len(want) - 1, timeout=15, interval=0.3)
    time.sleep(0.5)
    got = read()
    assert got == want, (sorted(want - got, key=repr), sorted(got - want, key=repr))


def test_tenant_bearer_and_extra_headers(receiver):
    storage = RemoteWriteStorage(receiver.url, tenant="team-a", bearer_token="tok-1",
                                 headers={"X-Extra": "yes"})
    storage.write(tricky_batch(1_700_000_000_000)[:1], time.monotonic() + 5)
    headers = receiver.requests[0].headers
    assert headers["X-Scope-OrgID"] == "team-a"
    assert headers["Authorization"] == "Bearer tok-1"
    assert headers["X-Extra"] == "yes"
    assert receiver.violations == []


@pytest.mark.parametrize("status,words", [(401, "authentication refused"),
                                          (403, "access forbidden")])
def test_refused_credentials_name_storage_and_url_only(receiver, status, words):
    receiver.respond((status, {}, b"denied"))
    storage = RemoteWriteStorage(receiver.url, basic_auth=("u", "pa55-word"), name="cortex")
    with pytest.raises(WriteError) as info:
        storage.write(tricky_batch(1_700_000_000_000)[:1], time.monotonic() + 5)
    message = str(info.value)
    assert message.startswith(f"cortex: {receiver.url} rejected the write ({words}")
    assert str(status) in message and "pa55-word" not in message
    assert base64.b64encode(b"u:pa55-word").decode() not in message
    assert not info.value.retryable


def test_cortex_alias_from_settings(receiver):
    from clymene import settings as settings_module
    from clymene.storage.factory import open_storages

    s = settings_module.load({"STORAGE_TYPE": "cortex", "CORTEX_DISTRIBUTOR_URL": receiver.url,
                              "PROMETHEUS_REMOTE_TENANT": "t1",
                              "CORTEX_DISTRIBUTOR_USER_AGENT": "agent/1",
                              "CONFIG_FILE": "/nonexistent.yml"})
    [storage] = open_storages(s)
    storage.write(tricky_batch(1_700_000_000_000)[:1], time.monotonic() + 5)
    storage.close()
    assert storage.name == "cortex"
    assert receiver.requests[0].headers["X-Scope-OrgID"] == "t1"
    assert receiver.requests[0].headers["User-Agent"] == "agent/1"


# ---------------------------------------------------------------- TLS + basic auth


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 / prom.test and a client certificate."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:prom.test"),
                      ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
                 "-out", f"{name}.crt", cwd=d)


def test_tls_client_certificate_and_basic_auth_against_prometheus(tmp_path):
    make_pki(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        hashed = crypt.crypt("right-pw", crypt.mksalt(crypt.METHOD_BLOWFISH))
    web = tmp_path / "web.yml"
    web.write_text(json.dumps({
        "tls_server_config": {"cert_file": str(tmp_path / "server.crt"),
                              "key_file": str(tmp_path / "server.key"),
                              "client_auth_type": "RequireAndVerifyClientCert",
                              "client_ca_file": str(tmp_path / "ca.crt")},
        "basic_auth_users": {"writer": hashed}}))
    (tmp_path / "prometheus.yml").write_text(json.dumps(prometheus_config()))
    tls = TLSOptions(ca_file=str(tmp_path / "ca.crt"), cert_file=str(tmp_path / "client.crt"),
                     key_file=str(tmp_path / "client.key"), server_name="prom.test")
    pool = urllib3.PoolManager(**tls.pool_kwargs())
    auth = {"Authorization": "Basic " + base64.b64encode(b"writer:right-pw").decode()}

    def ready(port: int) -> bool:
        try:
            r = pool.request("GET", f"https://127.0.0.1:{port}/-/ready", headers=auth,
                             timeout=1.0, retries=False)
        except urllib3.exceptions.HTTPError:
            return False
        return r.status == 200

    def argv(port: int) -> list[str]:
        return ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver",
                f"--web.config.file={web}", f"--storage.tsdb.path={tmp_path / 'data'}"]

    server = _start("prometheus-tls", tmp_path, argv, ready)
    try:
        url = f"https://127.0.0.1:{server.port}/api/v1/write"
        batch = tricky_batch(now_ms() - 5000)
        good = RemoteWriteStorage(url, basic_auth=("writer", "right-pw"), tls=tls)
        good.write(batch, time.monotonic() + 10)
        good.close()
        got = prometheus_samples(f"https://127.0.0.1:{server.port}", time.time() + 1, pool, auth)
        assert got == expected(batch)

        wrong = RemoteWriteStorage(url, basic_auth=("writer", "wrong-pw"), tls=tls)
        with pytest.raises(WriteError) as info:
            wrong.write(batch[:1], time.monotonic() + 5)
        assert "authentication refused" in str(info.value) and "wrong-pw" not in str(info.value)
        assert f"prometheus: {url} rejected" in str(info.value)

        no_cert = RemoteWriteStorage(url, basic_auth=("writer", "right-pw"), timeout=1.0,
                                     tls=TLSOptions(ca_file=str(tmp_path / "ca.crt"),
                                                    server_name="prom.test"))
        with pytest.raises(WriteError) as info:
            no_cert.write(batch[:1], time.monotonic() + 1)
        assert info.value.retryable and "right-pw" not in str(info.value)

        untrusted = RemoteWriteStorage(url, basic_auth=("writer", "right-pw"), timeout=1.0)
        with pytest.raises(WriteError, match="CERTIFICATE_VERIFY_FAILED|certificate verify"):
            untrusted.write(batch[:1], time.monotonic() + 1)
    finally:
        server.stop()
