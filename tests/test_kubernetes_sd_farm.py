"""Kubernetes discovery in the real farm: two clusters (two fake API servers, one
kubeconfig each), the seed's relabel rules, `clymene run` end to end."""

from __future__ import annotations

import json
import time

import yaml

from tests import k8s_fake as kf
from tests.exporter import Exporter
from tests.farm import Farm
from tests.servers import wait_until


def kubeconfig(path, url: str, token: str, context: str) -> str:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
    }))
    return str(path)


def job(name: str, kubeconfig_file: str, cluster: str) -> str:
    return f"""\
  - job_name: {name}
    kubernetes_sd_configs:
      - role: pod
        kubeconfig_file: {kubeconfig_file}
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
        action: keep
        regex: "true"
      - source_labels: [__meta_kubernetes_pod_ready]
        action: keep
        regex: "true"
      - action: labelmap
        regex: __meta_kubernetes_pod_label_(.+)
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
      - target_label: cluster
        replacement: {cluster}
"""


def scraped_pod(name: str, port: int, ready: bool = True) -> dict:
    return kf.pod(name, ip="127.0.0.1", containers=[kf.container("app", [("http", port)])],
                  labels={"app": name}, annotations={"prometheus.io/scrape": "true"},
                  ready=ready)


def test_two_clusters_with_kubeconfigs(tmp_path, redis_url):
    exp_a, exp_b, exp_c = (Exporter(body=b"# TYPE up_test gauge\nup_test 1\n") for _ in range(3))
    api_a, api_b = kf.FakeKube(), kf.FakeKube()
    api_a.tokens, api_b.tokens = {"token-a"}, {"token-b"}
    for api in (api_a, api_b):
        api.start()
    api_a.put(scraped_pod("a1", exp_a.port))
    api_b.put(scraped_pod("b1", exp_b.port))
    api_b.put(scraped_pod("b2", exp_c.port, ready=False))
    ka = kubeconfig(tmp_path / "a.kubeconfig", api_a.url, "token-a", "ctx-a")
    kb = kubeconfig(tmp_path / "b.kubeconfig", api_b.url, "token-b", "ctx-b")
    config = ("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
              "  external_labels: {cluster: farm, region: eu}\nscrape_configs:\n"
              + job("cluster-a", ka, "target-cluster-a") + job("cluster-b", kb, "target-cluster-b"))
    farm = Farm(tmp_path, redis_url, config, {"STORAGE_TYPE": "file"})
    farm.start("run")
    try:
        farm.wait_ready(30)

        def active() -> dict[str, dict]:
            return {t["labels"]["pod"]: t for t in farm.targets()["activeTargets"]}
        wait_until(lambda: set(active()) == {"a1", "b1"}, timeout=30, interval=0.2)
        targets = active()
        assert targets["a1"]["labels"] == {
            "app": "a1", "cluster": "target-cluster-a", "instance": f"127.0.0.1:{exp_a.port}",
            "job": "cluster-a", "pod": "a1"}
        assert targets["b1"]["labels"]["cluster"] == "target-cluster-b"
        assert targets["b1"]["discoveredLabels"]["__meta_kubernetes_pod_name"] == "b1"
        dropped = {t["discoveredLabels"]["__meta_kubernetes_pod_name"]
                   for t in farm.targets()["droppedTargets"]}
        assert dropped == {"b2"}

        # Scraped series carry the target's cluster; external labels add only what is missing.
        data = tmp_path / "data" / "samples.jsonl"

        def series() -> dict[str, dict]:
            if not data.exists():
                return {}
            out = {}
            for line in data.read_text().splitlines():
                s = json.loads(line)
                if s["name"] == "up_test":
                    out[s["labels"]["pod"]] = s["labels"]
            return out
        wait_until(lambda: set(series()) == {"a1", "b1"}, timeout=30, interval=0.2)
        assert series()["a1"] == {"app": "a1", "cluster": "target-cluster-a",
                                  "instance": f"127.0.0.1:{exp_a.port}", "job": "cluster-a",
                                  "pod": "a1", "region": "eu"}

        # A pod becoming ready reaches the schedule (and gets scraped) within 5 s.
        started = time.monotonic()
        api_b.put(scraped_pod("b2", exp_c.port, ready=True))
        wait_until(lambda: "b2" in active(), timeout=5, interval=0.1)
        wait_until(lambda: exp_c.scrapes, timeout=5, interval=0.1)
        took = time.monotonic() - started
        assert took < 5, took
        # A deleted pod leaves the schedule within 5 s.
        api_a.delete("pod", "default", "a1")
        wait_until(lambda: "a1" not in active(), timeout=5, interval=0.1)
        # and its series get a staleness marker.
        def stale() -> bool:
            for line in data.read_text().splitlines():
                s = json.loads(line)
                if s["name"] == "up_test" and s["labels"].get("pod") == "a1" \
                        and s["value"] == "stale":
                    return True
            return False
        wait_until(stale, timeout=10, interval=0.2)
    finally:
        farm.stop()
        for api in (api_a, api_b):
            api.stop()
        for exp in (exp_a, exp_b, exp_c):
            exp.stop()
