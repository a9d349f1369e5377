"""kubernetes_sd_configs against Prometheus 2.53.3: both watch the same fake API server.

Prometheus 2.53.3 (Debian trixie's build, fetched by tests/get_prometheus_k8s.sh) and
clymene's discovery get the same configuration: one job per role, with namespaces,
selectors, attach_metadata and the seed's relabel rules. Their /api/v1/targets answers
(discovered labels and labels of active targets, dropped targets) must be equal, first on
the fixture cluster, then after mutations, after an API server restart mid-watch, and
after a compaction that answers the watches with 410 Gone.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from clymene.discovery.manager import Discovery
from clymene.web.server import targets_api
from tests import k8s_fake as kf
from tests.servers import RedisServer, Server, _http_ready, _start, http_get, wait_until

ROOT = Path(__file__).resolve().parent.parent


def prometheus_253() -> str:
    out = subprocess.run([str(ROOT / "tests" / "get_prometheus_k8s.sh")], check=True,
                         capture_output=True, text=True, timeout=600)
    return out.stdout.strip().splitlines()[-1]


def config_yaml(api_url: str) -> str:
    def job(name: str, role: str, extra: str = "", relabel: str = "") -> str:
        text = (f"- job_name: {name}\n  kubernetes_sd_configs:\n"
                f"  - role: {role}\n    api_server: {api_url}\n")
        text += "".join(f"    {line}\n" for line in extra.splitlines())
        if relabel:
            text += "  relabel_configs:\n" + "".join(f"  {line}\n" for line in relabel.splitlines())
        return text
    seed_relabel = """\
- source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
  action: keep
  regex: "true"
- source_labels: [__address__, __meta_kubernetes_pod_annotation_prometheus_io_port]
  action: replace
  regex: ([^:]+)(?::\\d+)?;(\\d+)
  replacement: $1:$2
  target_label: __address__
- action: labelmap
  regex: __meta_kubernetes_pod_label_(.+)
- source_labels: [__meta_kubernetes_namespace]
  target_label: namespace
- source_labels: [__meta_kubernetes_pod_name]
  target_label: pod
- target_label: cluster
  replacement: target-cluster"""
    return ("global:\n  scrape_interval: 1h\n  scrape_timeout: 10s\n"
            "  external_labels: {cluster: c1}\nscrape_configs:\n"
            + job("pods", "pod")
            + job("pods-seed", "pod", relabel=seed_relabel)
            + job("pods-attach", "pod", "attach_metadata: {node: true}\n"
                  "namespaces: {names: [default]}\n"
                  "selectors:\n- role: pod\n  label: app=web\n  field: status.phase=Running")
            + job("nodes", "node", relabel="- action: labelmap\n  regex: __meta_kubernetes_node_label_(.+)")
            + job("services", "service")
            + job("endpoints", "endpoints", relabel="""\
- source_labels: [__meta_kubernetes_endpoint_ready]
  regex: "false"
  action: drop""")
            + job("endpoints-attach", "endpoints", "attach_metadata: {node: true}")
            + job("endpointslices", "endpointslice")
            + job("ingresses", "ingress", relabel="""\
- source_labels: [__meta_kubernetes_ingress_scheme, __address__, __meta_kubernetes_ingress_path]
  regex: (.+);(.+);(.+)
  replacement: ${1}://${2}${3}
  target_label: __param_target"""))


def normalize(data: dict[str, Any]) -> tuple[list, list]:
    active = sorted(json.dumps([t["scrapePool"], sorted(t["discoveredLabels"].items()),
                                sorted(t["labels"].items())]) for t in data["activeTargets"])
    dropped = sorted(json.dumps(sorted(t["discoveredLabels"].items()))
                     for t in data["droppedTargets"])
    return active, dropped


class Clymene:
    """clymene's discovery in this process, publishing into a Redis database."""

    def __init__(self, config_path: Path, redis_url: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.discovery = Discovery(str(config_path), self.client)
        self.stop_event = threading.Event()
        self.discovery.step()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop_event.wait(0.1):
            self.discovery.step()

    def targets(self) -> dict[str, Any]:
        return targets_api(self.client)["data"]

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        for job in self.discovery.jobs:
            job.close()
        self.client.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, redis_server: RedisServer) -> Iterator[tuple]:
    tmp = tmp_path_factory.mktemp("k8sdiff")
    api = kf.FakeKube(bookmark_interval=0.5)
    api.start()
    kf.sample_cluster(api)
    text = config_yaml(api.url)
    (tmp / "prometheus.yml").write_text(text)
    (tmp / "clymene.yml").write_text(text)
    binary = prometheus_253()
    prom = _start("prometheus-2.53", tmp, lambda port: [
        binary, f"--config.file={tmp / 'prometheus.yml'}",
        f"--web.listen-address=127.0.0.1:{port}", f"--storage.tsdb.path={tmp / 'data'}"],
        _http_ready("/-/ready"))
    cly = Clymene(tmp / "clymene.yml", redis_server.redis_url(redis_server.fresh_db()))
    try:
        yield api, prom, cly
    finally:
        cly.close()
        prom.stop()
        api.stop()


def prom_targets(prom: Server) -> dict[str, Any]:
    status, body = http_get(prom.url + "/api/v1/targets")
    assert status == 200, body
    return json.loads(body)["data"]


def assert_same(prom: Server, cly: Clymene, timeout: float = 15.0,
                expect: str = "", absent: str = "") -> tuple[list, list]:
    """Wait until both answer the same (and the answer mentions `expect` and not
    `absent`, so that a state from before a change cannot pass); on timeout, fail
    showing the difference."""
    last: list = []

    def same() -> bool:
        p, c = normalize(prom_targets(prom)), normalize(cly.targets())
        last[:] = [p, c]
        text = "\n".join(p[0] + p[1])
        if (expect and expect not in text) or (absent and absent in text):
            return False
        return p == c and bool(p[0])
    try:
        wait_until(same, timeout=timeout, interval=0.25)
    except Exception:
        p, c = last
        only_p = sorted(set(p[0]) - set(c[0]))[:3] + sorted(set(p[1]) - set(c[1]))[:3]
        only_c = sorted(set(c[0]) - set(p[0]))[:3] + sorted(set(c[1]) - set(p[1]))[:3]
        text = "\n".join(p[0] + p[1])
        pytest.fail(f"expected {expect!r}: {expect in text}, absent {absent!r}: "
                    f"{absent in text}; Prometheus and clymene differ:\nonly Prometheus:\n  "
                    + "\n  ".join(only_p) + "\nonly clymene:\n  " + "\n  ".join(only_c))
    return last[1]


def pools(data: tuple[list, list]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in data[0]:
        pool = json.loads(item)[0]
        counts[pool] = counts.get(pool, 0) + 1
    return counts


def test_every_role_matches_prometheus(setup):
    api, prom, cly = setup
    data = assert_same(prom, cly)
    # The fixture's shape, so that an empty answer on both sides cannot pass.
    # 12 pod targets: the port-less containers of a pod share one address, so one target
    # (showing the last container's labels, like Prometheus).
    assert pools(data) == {"pods": 13, "pods-seed": 2, "pods-attach": 7, "nodes": 3,
                           "services": 7, "endpoints": 7, "endpoints-attach": 9,
                           "endpointslices": 8, "ingresses": 4}
    seed = [json.loads(x) for x in data[0] if json.loads(x)[0] == "pods-seed"]
    assert sorted(dict(x[2])["instance"] for x in seed) == ["10.0.1.1:8080", "192.168.0.1:9100"]
    # Two containers with port 53: the endpoint takes the last one's labels.
    [dns] = [dict(json.loads(x)[1]) for x in data[0]
             if json.loads(x)[0] == "endpoints" and "10.0.1.8:53" in x]
    assert dns["__meta_kubernetes_pod_container_name"] == "dns-udp"
    assert dns["__meta_kubernetes_pod_container_port_protocol"] == "UDP"
    [v6] = [dict(json.loads(x)[1]) for x in data[0] if "[fd00::7]:8080" in x]
    assert v6["__meta_kubernetes_endpointslice_endpoint_topology_topology_kubernetes_io_zone"] == "z3"
    assert v6["__meta_kubernetes_endpointslice_endpoint_topology_present_kubernetes_io_hostname"] == "true"
    assert len(data[1]) == 11  # pods-seed's unannotated pods, endpoints' not-ready ones
    assert {dict(x[2])["cluster"] for x in seed} == {"target-cluster"}


def test_mutations_match_prometheus(setup):
    api, prom, cly = setup
    assert_same(prom, cly)
    # Add, modify, delete across roles.
    api.put(kf.pod("web-3", ip="10.0.1.7", node_name="node-2", labels={"app": "web"},
                   annotations={"prometheus.io/scrape": "true"}, owner=("ReplicaSet", "web-5d8f"),
                   containers=[kf.container("web", [("http", 8080)])]))
    web2 = api.get("pod", "default", "web-2")
    web2["status"]["conditions"][1]["status"] = "True"
    web2["status"]["phase"] = "Running"
    api.put(web2)
    api.delete("pod", "default", "noports")
    assert_same(prom, cly, expect="web-3", absent="noports")
    # One kind of change at a time: the informers of different resources race (in
    # Prometheus too), so a batch mixing pods and the endpoints built from them has no
    # single right answer.
    assert_same(prom, cly)
    api.put(kf.node("node-4", "192.168.0.4", labels={"pool": "b"}))
    api.delete("node", "", "node-3")
    n1 = api.get("node", "", "node-1")
    n1["metadata"]["labels"]["pool"] = "a"
    api.put(n1)
    assert_same(prom, cly, expect="node-4", absent="node-3:10255")
    api.delete("service", "default", "lb")
    svc = api.get("service", "default", "web")
    svc["metadata"]["labels"]["tier"] = "front"
    api.put(svc)
    assert_same(prom, cly, expect="tier", absent='"lb"')
    ep = api.get("endpoints", "default", "web")
    ep["subsets"][0]["addresses"].append(kf.ep_address("10.0.1.7", "web-3", node_name="node-2"))
    api.put(ep)
    api.delete("endpointslice", "default", "orphan")
    api.put(kf.ingress("new", "default", [("new.example.com", ["/"])], tls_hosts=[["new.example.com"]]))
    data = assert_same(prom, cly, expect="new.example.com", absent="198.51.100.8")
    assert pools(data)["pods"] == 13 and pools(data)["nodes"] == 3


def test_api_server_restart_mid_watch(setup):
    api, prom, cly = setup
    assert_same(prom, cly)
    api.stop()
    # Changes while the server is away (etcd keeps them): seen after the reconnect.
    api.put(kf.pod("late", ip="10.0.2.1", node_name="node-1", labels={"app": "late"}))
    api.delete("ingress", "kube-system", "plain")
    api.start()  # same port
    data = assert_same(prom, cly, timeout=30.0, expect='"late"', absent="/x")
    assert any('"late"' in x for x in data[0])


def test_watch_gets_410_gone(setup):
    api, prom, cly = setup
    assert_same(prom, cly)
    lists_before = sum(inf.lists for job in cly.discovery.jobs for k in job.kubernetes
                       for inf in k.informers)
    # The watches break, the history is compacted meanwhile: watching again from the
    # last resourceVersion gets an ERROR event with code 410, and a re-list follows.
    api.stop()
    api.put(kf.pod("after-410", ip="10.0.2.2", node_name="node-2"))
    api.delete("pod", "default", "hostnet")
    api.compact()
    api.start()
    data = assert_same(prom, cly, timeout=30.0, expect='"after-410"',
                       absent='"hostnet"')
    assert any('"after-410"' in x for x in data[0])
    lists_after = sum(inf.lists for job in cly.discovery.jobs for k in job.kubernetes
                      for inf in k.informers)
    assert lists_after > lists_before
