"""deploy/: every manifest is valid for the `kubernetes` client's models, with no unknown
field (a typo fails here, not at `kubectl apply`), runs non-root with dropped
capabilities, and gets least-privilege RBAC; the embedded clymene config loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as kclient

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
MODELS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Service"): "V1Service",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("apps/v1", "DaemonSet"): "V1DaemonSet",
    ("apps/v1", "StatefulSet"): "V1StatefulSet",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
}
# The log agent reads the node's log files (root-owned, 0640) through a hostPath: it runs
# as uid 0 with every capability dropped (see its header); the metrics side is non-root.
ROOT_EXCEPTIONS = {"clymene-promtail"}


def documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def _deserialize(data: Any, klass: str) -> Any:
    api = kclient.ApiClient()
    return api._ApiClient__deserialize(data, klass)  # the client's own JSON -> model path


def _strip_empty(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_empty(v) for k, v in value.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_strip_empty(v) for v in value]
    return value


def test_manifests_exist():
    kinds = sorted({(name, doc["kind"]) for name, doc in documents()})
    names = {doc["metadata"]["name"] for _, doc in documents()}
    assert {"clymene", "clymene-discovery", "clymene-worker", "clymene-beat", "clymene-web",
            "clymene-flower", "clymene-redis", "clymene-config"} <= names
    assert ("06-worker.yaml", "HorizontalPodAutoscaler") in kinds


@pytest.mark.parametrize("name,doc", documents(),
                         ids=[f"{n}:{d['kind']}/{d['metadata']['name']}" for n, d in documents()])
def test_manifest_matches_the_models(name, doc):
    klass = MODELS.get((doc.get("apiVersion"), doc.get("kind")))
    assert klass, f"{name}: unknown apiVersion/kind {doc.get('apiVersion')}/{doc.get('kind')}"
    obj = _deserialize(doc, klass)
    back = kclient.ApiClient().sanitize_for_serialization(obj)
    # Whatever the model did not know (a misspelt field) is missing on the way back.
    assert _strip_empty(back) == _strip_empty(doc), f"{name}: fields the model does not know"
    if doc["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
        assert doc["metadata"].get("namespace") == "clymene", name


def pod_specs() -> list[tuple[str, dict]]:
    return [(doc["metadata"]["name"], doc["spec"]["template"]["spec"]) for _, doc in documents()
            if doc["kind"] in ("Deployment", "DaemonSet", "StatefulSet")]


@pytest.mark.parametrize("workload,spec", pod_specs(), ids=[n for n, _ in pod_specs()])
def test_pods_are_locked_down(workload, spec):
    for c in spec["containers"] + spec.get("initContainers", []):
        sc = c.get("securityContext") or {}
        assert sc.get("allowPrivilegeEscalation") is False, (workload, c["name"])
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], (workload, c["name"])
        assert not sc.get("capabilities", {}).get("add"), (workload, c["name"])
        assert sc.get("readOnlyRootFilesystem") is True, (workload, c["name"])
        assert not sc.get("privileged"), (workload, c["name"])
        assert c.get("resources", {}).get("requests"), (workload, c["name"])
    if workload in ROOT_EXCEPTIONS:
        return
    pod_sc = spec.get("securityContext") or {}
    assert pod_sc.get("runAsNonRoot") is True, workload
    assert pod_sc.get("runAsUser", 0) != 0, workload
    assert pod_sc.get("seccompProfile") == {"type": "RuntimeDefault"}, workload
    assert not spec.get("hostNetwork") and not spec.get("hostPID"), workload
    assert not any("hostPath" in v for v in spec.get("volumes", [])), workload
    # Only the processes that talk to the API server get a token.
    wants_token = workload in ("clymene-discovery", "clymene-worker")
    assert spec.get("automountServiceAccountToken") is wants_token, workload


def test_rbac_is_least_privilege():
    roles = {doc["metadata"]["name"]: doc["rules"] for _, doc in documents()
             if doc["kind"] == "ClusterRole"}
    assert roles["clymene-discovery"] == [
        {"apiGroups": [""], "resources": ["nodes", "services", "endpoints", "pods"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"],
         "verbs": ["get", "list", "watch"]},
    ]
    assert roles["clymene-scraper"] == [
        {"apiGroups": [""], "resources": ["nodes/metrics", "nodes/proxy"], "verbs": ["get"]},
        {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
    ]
    for name, rules in roles.items():
        for rule in rules:
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, name
            assert "*" not in rule.get("resources", []) + rule.get("apiGroups", []), name
    bindings = {doc["metadata"]["name"]: doc for _, doc in documents()
                if doc["kind"] == "ClusterRoleBinding"}
    assert bindings["clymene-discovery"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "clymene-discovery", "namespace": "clymene"}]
    assert bindings["clymene-scraper"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "clymene-worker", "namespace": "clymene"}]


def test_one_beat_and_one_discovery():
    deployments = {doc["metadata"]["name"]: doc for _, doc in documents()
                   if doc["kind"] == "Deployment"}
    for name in ("clymene-beat", "clymene-discovery"):
        assert deployments[name]["spec"]["replicas"] == 1, name
        assert deployments[name]["spec"]["strategy"] == {"type": "Recreate"}, name
    hpa = next(doc for _, doc in documents() if doc["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "clymene-worker"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_embedded_config_passes_clymene_check(tmp_path):
    [cm] = [doc for _, doc in documents()
            if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "clymene-config"]
    path = tmp_path / "clymene.yml"
    path.write_text(cm["data"]["clymene.yml"])
    out = subprocess.run([sys.executable, "-m", "clymene", "check", "config", str(path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "7 jobs" in out.stdout
    for job in ("kubernetes-apiservers", "kubernetes-nodes", "kubernetes-pods",
                "kube-state-metrics", "kubernetes-cadvisor", "kubernetes-service-endpoints",
                "node-exporter"):
        assert f'job "{job}"' in out.stdout
    env = next(doc for _, doc in documents() if doc["metadata"]["name"] == "clymene-env")
    assert env["data"]["CONFIG_FILE"] == "/etc/clymene/clymene.yml"


def test_gateway_and_ingesters_settings_load():
    from clymene import cli
    from clymene import settings as settings_module
    from clymene.gateway.logs import log_kinds
    from clymene.logs.ingester import backend_kinds

    base = next(doc for _, doc in documents()
                if doc["metadata"]["name"] == "clymene-env")["data"]
    deployments = {doc["metadata"]["name"]: doc for _, doc in documents()
                   if doc["kind"] == "Deployment"}
    loaded = {}
    for name in ("clymene-gateway", "clymene-ingester", "clymene-promtail-ingester"):
        [c] = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert c["args"][0] in cli.COMMANDS, name
        env = {**base, **{e["name"]: e["value"] for e in c["env"]}}
        loaded[name] = settings_module.load(env)
    assert deployments["clymene-gateway"]["spec"]["replicas"] == 2
    assert log_kinds(loaded["clymene-gateway"]) == ["kafka"]
    assert loaded["clymene-gateway"].kafka_producer_promtail_topic == "clymene-logs"
    assert loaded["clymene-ingester"].storage_type == ["prometheus"]
    assert backend_kinds(loaded["clymene-promtail-ingester"]) == ["loki", "elasticsearch"]
