"""kubernetes_sd: the watch machinery, authentication and the label builders, in process
against the fake API server (the labels themselves are compared with Prometheus 2.53.3 in
test_kubernetes_sd_diff.py)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from clymene import config as config_module
from clymene.discovery import kubernetes as k8s
from tests import k8s_fake as kf
from tests.servers import wait_until


@pytest.fixture
def api() -> Iterator[kf.FakeKube]:
    server = kf.FakeKube(bookmark_interval=0.2)
    server.start()
    yield server
    server.stop()


def sd_config(text: str) -> config_module.KubernetesSDConfig:
    cfg = config_module.load_string(
        "scrape_configs:\n- job_name: k\n  kubernetes_sd_configs:\n"
        + "".join(f"  {line}\n" for line in text.splitlines()), "test.yml", "/")
    return cfg.scrape_configs[0].kubernetes_sd_configs[0]


def addresses(sd: k8s.KubernetesSD) -> list[str]:
    return sorted(t["__address__"] for g in sd.groups() for t in g.targets)


def test_groups_same_list_until_something_changes(api):
    api.put(kf.pod("a", ip="10.0.0.1"))
    sd = k8s.KubernetesSD(sd_config(f"- role: pod\n  api_server: {api.url}"))
    try:
        wait_until(lambda: addresses(sd) == ["10.0.0.1:8080"], timeout=5)
        first = sd.groups()
        assert sd.groups() is first
        api.put(kf.pod("b", ip="10.0.0.2"))
        wait_until(lambda: sd.groups() is not first, timeout=5)
        assert addresses(sd) == ["10.0.0.1:8080", "10.0.0.2:8080"]
        second = sd.groups()
        # Bookmarks arrive (every 0.2 s) and move the resourceVersion, changing nothing.
        [inf] = sd.informers
        rv = inf.rv
        api.put(kf.service("unrelated"))  # bumps the server's resourceVersion
        wait_until(lambda: inf.rv != rv, timeout=5)
        assert sd.groups() is second
        api.delete("pod", "default", "a")
        wait_until(lambda: addresses(sd) == ["10.0.0.2:8080"], timeout=5)
        # A pod losing its IP (evicted) leaves no target.
        b = api.get("pod", "default", "b")
        del b["status"]["podIP"]
        api.put(b)
        wait_until(lambda: sd.groups() == [], timeout=5)
    finally:
        sd.close()


def test_reconnect_and_410_lose_and_duplicate_nothing(api):
    for i in range(20):
        api.put(kf.pod(f"p{i}", ip=f"10.0.1.{i}"))
    sd = k8s.KubernetesSD(sd_config(f"- role: pod\n  api_server: {api.url}"))
    try:
        wait_until(lambda: len(addresses(sd)) == 20, timeout=5)
        [inf] = sd.informers
        assert inf.lists == 1
        # API server restarts; changes made meanwhile arrive through a new watch from
        # the last resourceVersion, without a re-list.
        api.stop()
        api.delete("pod", "default", "p0")
        api.put(kf.pod("p20", ip="10.0.1.20"))
        api.start()
        wait_until(lambda: "10.0.1.20:8080" in addresses(sd), timeout=10)
        assert len(addresses(sd)) == 20 and "10.0.1.0:8080" not in addresses(sd)
        assert len(set(addresses(sd))) == 20
        assert inf.lists == 1
        # History compacted while away: the watch gets 410 and re-lists.
        api.stop()
        api.delete("pod", "default", "p1")
        api.put(kf.pod("p21", ip="10.0.1.21"))
        api.compact()
        api.start()
        wait_until(lambda: "10.0.1.21:8080" in addresses(sd), timeout=10)
        assert inf.lists == 2
        assert len(addresses(sd)) == 20 and len(set(addresses(sd))) == 20
        assert "10.0.1.1:8080" not in addresses(sd)
        watches = [r for r in api.requests if "watch=true" in r]
        assert all("allowWatchBookmarks=true" in r and "resourceVersion=" in r for r in watches)
    finally:
        sd.close()


def test_namespaces_and_selectors_reach_the_api(api):
    api.put(kf.pod("a", namespace="ns1", ip="10.0.0.1", labels={"app": "x"}))
    api.put(kf.pod("b", namespace="ns1", ip="10.0.0.2", labels={"app": "y"}))
    api.put(kf.pod("c", namespace="ns2", ip="10.0.0.3", labels={"app": "x"}))
    api.put(kf.pod("d", namespace="ns3", ip="10.0.0.4", labels={"app": "x"}))
    sd = k8s.KubernetesSD(sd_config(
        f"- role: pod\n  api_server: {api.url}\n  namespaces: {{names: [ns1, ns2]}}\n"
        "  selectors:\n  - role: pod\n    label: app=x\n    field: status.phase=Running"))
    try:
        wait_until(lambda: addresses(sd) == ["10.0.0.1:8080", "10.0.0.3:8080"], timeout=5)
        lists = sorted(r for r in api.requests if "watch" not in r)
        assert lists == [
            "GET /api/v1/namespaces/ns1/pods?labelSelector=app%3Dx"
            "&fieldSelector=status.phase%3DRunning&limit=500",
            "GET /api/v1/namespaces/ns2/pods?labelSelector=app%3Dx"
            "&fieldSelector=status.phase%3DRunning&limit=500"]
    finally:
        sd.close()


def test_bearer_token_file_is_reread_when_it_rotates(api, tmp_path):
    token = tmp_path / "token"
    token.write_text("one\n")
    api.tokens = {"one"}
    api.put(kf.pod("a", ip="10.0.0.1"))
    sd = k8s.KubernetesSD(sd_config(
        f"- role: pod\n  api_server: {api.url}\n"
        f"  authorization: {{credentials_file: {token}}}"))
    try:
        wait_until(lambda: addresses(sd) == ["10.0.0.1:8080"], timeout=5)
        api.stop()
        api.tokens = {"two"}
        token.write_text("two\n")
        os.utime(token, (1, 1))  # a different mtime even within the same second
        api.put(kf.pod("b", ip="10.0.0.2"))
        api.start()
        wait_until(lambda: len(addresses(sd)) == 2, timeout=10)
    finally:
        sd.close()


def test_basic_auth(api):
    api.basic = ("admin", "s3cret")
    api.put(kf.pod("a", ip="10.0.0.1"))
    sd = k8s.KubernetesSD(sd_config(
        f"- role: pod\n  api_server: {api.url}\n"
        "  basic_auth: {username: admin, password: s3cret}"))
    try:
        wait_until(lambda: addresses(sd) == ["10.0.0.1:8080"], timeout=5)
    finally:
        sd.close()


def test_in_cluster_configuration(tmp_path, monkeypatch):
    (tmp_path / "token").write_text("tok-1")
    (tmp_path / "namespace").write_text("monitoring\n")
    (tmp_path / "ca.crt").write_text("not used here")
    monkeypatch.setattr(k8s, "SA_DIR", str(tmp_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    client = k8s.KubeClient(sd_config("- role: pod\n  namespaces: {own_namespace: true}"))
    assert client.base == "https://10.96.0.1:443"
    assert client.own_namespace == "monitoring"
    assert client.session.verify == str(tmp_path / "ca.crt")
    assert client._auth() == {"Authorization": "Bearer tok-1"}
    (tmp_path / "token").write_text("tok-22")  # rotated by the kubelet
    assert client._auth() == {"Authorization": "Bearer tok-22"}
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(k8s.KubeError, match="KUBERNETES_SERVICE_HOST"):
        k8s.KubeClient(sd_config("- role: pod"))


def test_pod_labels_exact():
    pod = kf.pod("web-1", ip="10.0.1.1", node_name="node-1",
                 containers=[kf.container("web", [("http", 8080)])],
                 init_containers=[kf.container("init", image="busybox")],
                 labels={"app.kubernetes.io/name": "web"}, owner=("ReplicaSet", "web-5d8f"))
    g = k8s.without_empty(k8s.build_pod(pod))
    assert g.source == "pod/default/web-1"
    assert g.labels == {
        "__meta_kubernetes_namespace": "default",
        "__meta_kubernetes_pod_name": "web-1",
        "__meta_kubernetes_pod_ip": "10.0.1.1",
        "__meta_kubernetes_pod_ready": "true",
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_node_name": "node-1",
        "__meta_kubernetes_pod_host_ip": "192.168.0.1",
        "__meta_kubernetes_pod_uid": "uid-default-web-1",
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": "web",
        "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name": "true",
        "__meta_kubernetes_pod_controller_kind": "ReplicaSet",
        "__meta_kubernetes_pod_controller_name": "web-5d8f",
    }
    assert g.targets == [
        {"__address__": "10.0.1.1:8080",
         "__meta_kubernetes_pod_container_name": "web",
         "__meta_kubernetes_pod_container_id": "containerd://web-1-web",
         "__meta_kubernetes_pod_container_image": "example/app:1",
         "__meta_kubernetes_pod_container_init": "false",
         "__meta_kubernetes_pod_container_port_number": "8080",
         "__meta_kubernetes_pod_container_port_name": "http",
         "__meta_kubernetes_pod_container_port_protocol": "TCP"},
        {"__address__": "10.0.1.1",
         "__meta_kubernetes_pod_container_name": "init",
         "__meta_kubernetes_pod_container_id": "containerd://web-1-init",
         "__meta_kubernetes_pod_container_image": "busybox",
         "__meta_kubernetes_pod_container_init": "true"},
    ]


def test_node_address_choice_and_ingress_tls():
    n = kf.node("n", "", addresses=[("Hostname", "n"), ("ExternalIP", "1.2.3.4"),
                                    ("InternalDNS", "n.internal")])
    g = k8s.build_node(n)
    assert g is not None and g.targets == [{"__address__": "n.internal:10250", "instance": "n"}]
    assert g.labels["__meta_kubernetes_node_address_ExternalIP"] == "1.2.3.4"
    assert k8s.build_node(kf.node("x", "", addresses=[])) is None
    ing = kf.ingress("i", "ns", [("a.example.com", ["/"]), ("b.c.example.com", None),
                                 ("example.com", [])], tls_hosts=[["*.example.com"]])
    g = k8s.build_ingress(ing)
    assert [(t["__address__"], t["__meta_kubernetes_ingress_scheme"],
             t["__meta_kubernetes_ingress_path"]) for t in g.targets] == [
        ("a.example.com", "https", "/"), ("b.c.example.com", "http", "/")]
    assert k8s.sanitize("app.kubernetes.io/name-x") == "app_kubernetes_io_name_x"
    assert k8s.join_host_port("fd00::1", 80) == "[fd00::1]:80"


def test_fake_server_selectors():
    assert kf.label_selector_matches("app=x,tier!=db", {"app": "x", "tier": "web"})
    assert not kf.label_selector_matches("app in (a, b)", {"app": "c"})
    assert kf.label_selector_matches("!canary,app", {"app": "c"})
    assert kf.field_selector_matches("spec.nodeName=n1", {"spec": {"nodeName": "n1"}})
    assert not kf.field_selector_matches("status.phase!=Running", {"status": {"phase": "Running"}})


@pytest.fixture
def tls_api(tmp_path) -> Iterator[tuple[kf.FakeKube, str]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server = kf.FakeKube()
    server.start(tls=(str(cert), str(key)))
    yield server, str(cert)
    server.stop()


def test_tls_config_ca_file_and_insecure(tls_api):
    api, ca = tls_api
    api.put(kf.pod("a", ip="10.0.0.1"))
    sd = k8s.KubernetesSD(sd_config(f"- role: pod\n  api_server: {api.url}\n"
                                    f"  tls_config: {{ca_file: {ca}}}"))
    try:
        wait_until(lambda: addresses(sd) == ["10.0.0.1:8080"], timeout=5)
    finally:
        sd.close()
    # Without the CA the server is refused (and nothing is discovered).
    sd = k8s.KubernetesSD(sd_config(f"- role: pod\n  api_server: {api.url}"))
    try:
        wait_until(lambda: "CERTIFICATE_VERIFY_FAILED" in sd.informers[0].last_error,
                   timeout=5)
        assert sd.informers[0].lists == 0 and sd.groups() == [] and not sd.synced()
    finally:
        sd.close()


def test_tls_config_server_name_and_min_version(tmp_path):
    # A certificate for the name "kube.internal" only: reachable at 127.0.0.1 with
    # server_name, refused without it.
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=kube.internal", "-addext", "subjectAltName=DNS:kube.internal",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    api = kf.FakeKube()
    api.start(tls=(str(cert), str(key)))
    try:
        api.put(kf.pod("a", ip="10.0.0.1"))
        sd = k8s.KubernetesSD(sd_config(
            f"- role: pod\n  api_server: {api.url}\n"
            f"  tls_config: {{ca_file: {cert}, server_name: kube.internal}}"))
        try:
            wait_until(lambda: addresses(sd) == ["10.0.0.1:8080"], timeout=5)
        finally:
            sd.close()
        sd = k8s.KubernetesSD(sd_config(
            f"- role: pod\n  api_server: {api.url}\n  tls_config: {{ca_file: {cert}}}"))
        try:
            wait_until(lambda: "doesn't match 'kube.internal'" in sd.informers[0].last_error,
                       timeout=5)
            assert sd.groups() == []
        finally:
            sd.close()
    finally:
        api.stop()


def test_in_cluster_end_to_end(tls_api, tmp_path, monkeypatch):
    api, ca = tls_api
    api.tokens = {"sa-token"}
    api.put(kf.pod("a", namespace="monitoring", ip="10.0.0.1"))
    api.put(kf.pod("b", namespace="other", ip="10.0.0.2"))
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token")
    (sa / "namespace").write_text("monitoring")
    (sa / "ca.crt").write_text(open(ca).read())
    monkeypatch.setattr(k8s, "SA_DIR", str(sa))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api.port))
    sd = k8s.KubernetesSD(sd_config("- role: pod\n  namespaces: {own_namespace: true}"))
    try:
        wait_until(lambda: addresses(sd) == ["10.0.0.1:8080"], timeout=5)
        assert any(r.startswith("GET /api/v1/namespaces/monitoring/pods") for r in api.requests)
    finally:
        sd.close()
