"""kubernetes_sd_configs role pod for the log agent, against the fake API server: the
seed's relabeling gives namespace, pod, container, node_name, app, job and cluster, and
`__host__` keeps each agent to its own node's pods."""

from __future__ import annotations

import threading
import time

import pytest

from clymene.logs import config as log_config
from clymene.logs.agent import Agent
from clymene.logs.loki import LokiClient
from tests import k8s_fake
from tests.loki_receiver import LokiReceiver

CONFIG = """
positions: {{filename: {tmp}/positions.yaml, sync_period: 1s}}
scrape_configs:
  - job_name: kubernetes-pods
    pipeline_stages:
      - cri: {{}}
    kubernetes_sd_configs:
      - role: pod
        api_server: {api}
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_node_name]
        target_label: __host__
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
      - source_labels: [__meta_kubernetes_pod_container_name]
        target_label: container
      - source_labels: [__meta_kubernetes_pod_label_app]
        target_label: app
      - source_labels: [__meta_kubernetes_pod_node_name]
        target_label: node_name
      - target_label: job
        replacement: kubernetes-pods
      - target_label: cluster
        replacement: target-cluster
      - source_labels: [__meta_kubernetes_pod_uid, __meta_kubernetes_pod_container_name]
        separator: /
        replacement: {tmp}/pods/*$1/*.log
        target_label: __path__
"""


@pytest.fixture
def api():
    kube = k8s_fake.FakeKube()
    kube.start()
    yield kube
    kube.stop()


def _write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(f"2024-01-01T00:00:00Z stdout F {text}\n")


def test_pod_logs_of_this_node_with_the_seed_labels(tmp_path, api):
    api.put(k8s_fake.pod("web-1", "shop", node_name="node-1", labels={"app": "web"},
                         containers=[k8s_fake.container("nginx", [("http", 80), ("m", 9)])]))
    api.put(k8s_fake.pod("db-1", "shop", node_name="node-2", labels={"app": "db"}))
    for ns, name, c in (("shop", "web-1", "nginx"), ("shop", "db-1", "app")):
        _write(tmp_path / "pods" / f"{ns}_{name}_uid-{ns}-{name}" / c / "0.log", f"{name} hi")
    cfg = log_config.load_string(CONFIG.format(tmp=tmp_path, api=api.url), "k.yml")
    rx = LokiReceiver()
    agent = Agent(cfg, LokiClient(rx.url), batch_wait=0.05, hostname="node-1")
    stop = threading.Event()
    th = threading.Thread(target=agent.run, args=(stop,))
    th.start()
    try:
        deadline = time.monotonic() + 10
        while rx.count() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        # a pod scheduled later on this node is picked up too
        api.put(k8s_fake.pod("web-2", "shop", node_name="node-1", labels={"app": "web"}))
        _write(tmp_path / "pods" / "shop_web-2_uid-shop-web-2" / "app" / "0.log", "web-2 hi")
        while rx.count() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        th.join(10)
        rx.stop()
    base = 'app="web", cluster="target-cluster", container="{c}", filename="{f}", ' \
           'job="kubernetes-pods", namespace="shop", node_name="node-1", pod="{p}", ' \
           'stream="stdout"'
    f1 = tmp_path / "pods" / "shop_web-1_uid-shop-web-1" / "nginx" / "0.log"
    f2 = tmp_path / "pods" / "shop_web-2_uid-shop-web-2" / "app" / "0.log"
    assert rx.lines() == {
        "{" + base.format(c="nginx", f=f1, p="web-1") + "}": [(1704067200_000000000, "web-1 hi")],
        "{" + base.format(c="app", f=f2, p="web-2") + "}": [(1704067200_000000000, "web-2 hi")],
    }


def test_invalid_kubernetes_sd_is_refused_with_its_line(tmp_path):
    text = CONFIG.format(tmp=tmp_path, api="http://x").replace("role: pod", "role: pods")
    with pytest.raises(log_config.LogConfigError) as exc:
        log_config.load_string(text, "k.yml")
    assert str(exc.value).startswith("k.yml:7: scrape_configs[0].kubernetes_sd_configs[0]")
    assert "pods" in str(exc.value)


def test_the_daemonset_config_loads_and_relabels_like_the_seed():
    import yaml

    from clymene.discovery.kubernetes import build_pod

    docs = list(yaml.safe_load_all(open("deploy/logs-promtail-agent.yaml")))
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    cfg = log_config.load_string(cm["data"]["promtail.yaml"], "configmap")
    [sc] = cfg.scrape_configs
    assert sc.kubernetes_sd_configs[0].role == "pod"
    group = build_pod(k8s_fake.pod("web-1", "shop", node_name="node-1", labels={"app": "web"}))
    labels = log_config.relabel_target(sc, {**group.labels, **group.targets[0]}, "node-1")
    assert {k: v for k, v in labels.items() if not k.startswith("__")} == {
        "app": "web", "job": "shop/web", "namespace": "shop", "pod": "web-1",
        "container": "app", "node_name": "node-1", "cluster": "target-cluster"}
    assert labels["__path__"] == "/var/log/pods/*uid-shop-web-1/app/*.log"
    assert log_config.relabel_target(sc, {**group.labels, **group.targets[0]}, "node-2") is None
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    mounts = ds["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "varlog", "mountPath": "/var/log", "readOnly": True} in mounts
