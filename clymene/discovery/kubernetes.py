"""kubernetes_sd_configs: targets from the Kubernetes API, with Prometheus 2.53's labels.

Each `kubernetes_sd_configs` entry is one `KubernetesSD`: it runs one informer thread per
resource and namespace it needs (list, then watch from the list's resourceVersion with
bookmarks; 410 Gone -> re-list; a broken connection -> watch again from the last
resourceVersion after a backoff). Informers keep a store of the objects; every change
rebuilds the target group of the object it concerns (source `pod/<ns>/<name>`, ...), and
`groups()` hands back the same list object for as long as no group changed, which is how
the discovery manager knows that nothing needs rebuilding.

Groups are built only once every informer has listed once, like Prometheus which waits
for its caches to sync: an endpoints object built before the pods are known would lack
the pod labels until it changes again.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
from collections.abc import Callable
from typing import Any

import requests

from clymene import stats
from clymene.discovery.targets import TargetGroup
from clymene.scrape.http import configure_session

log = logging.getLogger(__name__)

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
META = "__meta_kubernetes_"
NAMESPACE = META + "namespace"
PRESENT = "true"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

# resource -> (API prefix, plural, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "node": ("/api/v1", "nodes", False),
    "pod": ("/api/v1", "pods", True),
    "service": ("/api/v1", "services", True),
    "endpoints": ("/api/v1", "endpoints", True),
    "endpointslice": ("/apis/discovery.k8s.io/v1", "endpointslices", True),
    "ingress": ("/apis/networking.k8s.io/v1", "ingresses", True),
}

_SANITIZE = re.compile(r"[^a-zA-Z0-9_]")


def sanitize(name: str) -> str:
    """Prometheus' strutil.SanitizeLabelName: every character outside [a-zA-Z0-9_] -> _."""
    return _SANITIZE.sub("_", name)


def join_host_port(host: str, port: Any) -> str:
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


# ---------------------------------------------------------------------------
# Labels and groups per role (objects are the API's JSON, camelCase)
# ---------------------------------------------------------------------------


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def key_of(obj: dict) -> str:
    m = _meta(obj)
    ns = m.get("namespace") or ""
    return f"{ns}/{m.get('name', '')}" if ns else m.get("name", "")


def object_meta_labels(ls: dict[str, str], obj: dict, role: str) -> None:
    """Name, labels and annotations with their `_present` twins (addObjectMetaLabels)."""
    m = _meta(obj)
    prefix = META + role
    ls[prefix + "_name"] = m.get("name", "")
    for k, v in (m.get("labels") or {}).items():
        ln = sanitize(k)
        ls[f"{prefix}_label_{ln}"] = v
        ls[f"{prefix}_labelpresent_{ln}"] = PRESENT
    for k, v in (m.get("annotations") or {}).items():
        ln = sanitize(k)
        ls[f"{prefix}_annotation_{ln}"] = v
        ls[f"{prefix}_annotationpresent_{ln}"] = PRESENT


def pod_ready(pod: dict) -> str:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return str(cond.get("status", "")).lower()
    return "unknown"


def pod_labels(pod: dict) -> dict[str, str]:
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    ls = {
        META + "pod_ip": status.get("podIP", ""),
        META + "pod_ready": pod_ready(pod),
        META + "pod_phase": status.get("phase", ""),
        META + "pod_node_name": spec.get("nodeName", ""),
        META + "pod_host_ip": status.get("hostIP", ""),
        META + "pod_uid": _meta(pod).get("uid", ""),
    }
    object_meta_labels(ls, pod, "pod")
    for ref in _meta(pod).get("ownerReferences") or []:
        if ref.get("controller"):
            if ref.get("kind"):
                ls[META + "pod_controller_kind"] = ref["kind"]
            if ref.get("name"):
                ls[META + "pod_controller_name"] = ref["name"]
            break
    return ls


def _containers(pod: dict) -> list[tuple[dict, bool]]:
    spec = pod.get("spec") or {}
    return ([(c, False) for c in spec.get("containers") or []]
            + [(c, True) for c in spec.get("initContainers") or []])


def _container_id(pod: dict, name: str, init: bool) -> str:
    key = "initContainerStatuses" if init else "containerStatuses"
    for st in (pod.get("status") or {}).get(key) or []:
        if st.get("name") == name:
            return st.get("containerID", "")
    return ""


def node_meta_labels(node: dict | None) -> dict[str, str]:
    """What attach_metadata adds: the node's name, labels and annotations (addNodeLabels)."""
    if node is None:
        return {}
    ls: dict[str, str] = {}
    object_meta_labels(ls, node, "node")
    return ls


def build_pod(pod: dict, node: dict | None = None, attach_node: bool = False) -> TargetGroup:
    m = _meta(pod)
    source = f"pod/{m.get('namespace', '')}/{m.get('name', '')}"
    ip = (pod.get("status") or {}).get("podIP", "")
    if not ip:  # starting or evicted
        return TargetGroup(source=source, targets=[], labels={})
    labels = pod_labels(pod)
    labels[NAMESPACE] = m.get("namespace", "")
    if attach_node:
        labels.update(node_meta_labels(node))
    targets: list[dict[str, str]] = []
    for c, init in _containers(pod):
        cid = _container_id(pod, c.get("name", ""), init)
        base = {
            META + "pod_container_name": c.get("name", ""),
            META + "pod_container_id": cid,
            META + "pod_container_image": c.get("image", ""),
            META + "pod_container_init": "true" if init else "false",
        }
        ports = c.get("ports") or []
        if not ports:
            targets.append({"__address__": ip, **base})
            continue
        for p in ports:
            number = str(p.get("containerPort", 0))
            targets.append({
                "__address__": join_host_port(ip, number), **base,
                META + "pod_container_port_number": number,
                META + "pod_container_port_name": p.get("name", ""),
                META + "pod_container_port_protocol": p.get("protocol", ""),
            })
    return TargetGroup(source=source, targets=targets, labels=labels)


NODE_ADDRESS_ORDER = ("InternalIP", "InternalDNS", "ExternalIP", "LegacyHostIP", "Hostname")


def build_node(node: dict) -> TargetGroup | None:
    """None when the node has no usable address (Prometheus then sends nothing)."""
    m = _meta(node)
    status = node.get("status") or {}
    by_type: dict[str, list[str]] = {}
    for a in status.get("addresses") or []:
        by_type.setdefault(a.get("type", ""), []).append(a.get("address", ""))
    addr = next((by_type[t][0] for t in NODE_ADDRESS_ORDER if t in by_type), None)
    if addr is None:
        log.warning("kubernetes_sd: node %s: host address unknown", m.get("name"))
        return None
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port", 0)
    labels = {META + "node_provider_id": (node.get("spec") or {}).get("providerID", "")}
    object_meta_labels(labels, node, "node")
    for t, values in by_type.items():
        labels[sanitize(META + "node_address_" + t)] = values[0]
    return TargetGroup(source=f"node/{m.get('name', '')}",
                       targets=[{"__address__": join_host_port(addr, port),
                                 "instance": m.get("name", "")}],
                       labels=labels)


def service_labels(svc: dict) -> dict[str, str]:
    ls = {NAMESPACE: _meta(svc).get("namespace", "")}
    object_meta_labels(ls, svc, "service")
    return ls


def build_service(svc: dict) -> TargetGroup:
    m = _meta(svc)
    spec = svc.get("spec") or {}
    labels = service_labels(svc)
    targets = []
    for p in spec.get("ports") or []:
        number = str(p.get("port", 0))
        t = {
            "__address__": join_host_port(f"{m.get('name', '')}.{m.get('namespace', '')}.svc", number),
            META + "service_port_name": p.get("name", ""),
            META + "service_port_number": number,
            META + "service_port_protocol": p.get("protocol", ""),
            META + "service_type": spec.get("type", ""),
        }
        if spec.get("type") == "ExternalName":
            t[META + "service_external_name"] = spec.get("externalName", "")
        else:
            t[META + "service_cluster_ip"] = spec.get("clusterIP", "")
        targets.append(t)
    return TargetGroup(source=f"svc/{m.get('namespace', '')}/{m.get('name', '')}",
                       targets=targets, labels=labels)


def _pod_extra_ports(seen: dict[str, tuple[dict, list[int]]], targets: list[dict[str, str]]
                     ) -> None:
    """Targets for the container ports of seen pods that no endpoint port covered.

    Prometheus 2.53 looks at the regular containers only here, and sets no init label."""
    for pod, ports in seen.values():
        ip = (pod.get("status") or {}).get("podIP", "")
        if not ip:
            continue
        for c in (pod.get("spec") or {}).get("containers") or []:
            for cp in c.get("ports") or []:
                number = cp.get("containerPort", 0)
                if number in ports:
                    continue
                t = {
                    "__address__": join_host_port(ip, number),
                    META + "pod_container_name": c.get("name", ""),
                    META + "pod_container_image": c.get("image", ""),
                    META + "pod_container_port_name": cp.get("name", ""),
                    META + "pod_container_port_number": str(number),
                    META + "pod_container_port_protocol": cp.get("protocol", ""),
                }
                t.update(pod_labels(pod))
                targets.append(t)


def _add_pod_container(t: dict[str, str], pod: dict, port: int | None,
                       protocol: str | None) -> None:
    """The pod_container_* labels of the container exposing `port`. The protocol is the
    endpoint port's (endpoints role), or the container port's when None (endpointslice)."""
    if port is None:
        return
    for c in (pod.get("spec") or {}).get("containers") or []:
        for cp in c.get("ports") or []:
            if cp.get("containerPort") == port:
                t[META + "pod_container_name"] = c.get("name", "")
                t[META + "pod_container_image"] = c.get("image", "")
                t[META + "pod_container_port_name"] = cp.get("name", "")
                t[META + "pod_container_port_number"] = str(port)
                t[META + "pod_container_port_protocol"] = (
                    cp.get("protocol", "") if protocol is None else protocol)
                break  # the port loop only: a later container with the port wins


def _node_labels_and_pod(t: dict[str, str], node_name: str | None, ref: dict | None,
                         nodes: dict | None, pods: dict) -> dict | None:
    """For an endpoint (of Endpoints or EndpointSlice): add its node's labels when
    attach_metadata asks (by nodeName, else a Node target ref) and return the pod its
    target ref names, if any (both roles do this the same way in Prometheus)."""
    if nodes is not None:
        if node_name is not None:
            t.update(node_meta_labels(nodes.get(node_name)))
        elif ref and ref.get("kind") == "Node":
            t.update(node_meta_labels(nodes.get(ref.get("name", ""))))
    if ref and ref.get("kind") == "Pod":
        return pods.get(f"{ref.get('namespace', '')}/{ref.get('name', '')}")
    return None


def build_endpoints(eps: dict, services: dict[str, dict], pods: dict[str, dict],
                    nodes: dict[str, dict] | None) -> TargetGroup:
    m = _meta(eps)
    ns = m.get("namespace", "")
    labels = {NAMESPACE: ns, META + "endpoints_name": m.get("name", "")}
    svc = services.get(f"{ns}/{m.get('name', '')}")
    if svc is not None:
        labels.update(service_labels(svc))
    object_meta_labels(labels, eps, "endpoints")
    targets: list[dict[str, str]] = []
    seen: dict[str, tuple[dict, list[int]]] = {}

    def add(addr: dict, port: dict, ready: str) -> None:
        number = port.get("port", 0)
        t = {
            "__address__": join_host_port(addr.get("ip", ""), number),
            META + "endpoint_port_name": port.get("name", ""),
            META + "endpoint_port_protocol": port.get("protocol", ""),
            META + "endpoint_ready": ready,
        }
        ref = addr.get("targetRef")
        if ref:
            t[META + "endpoint_address_target_kind"] = ref.get("kind", "")
            t[META + "endpoint_address_target_name"] = ref.get("name", "")
        if addr.get("nodeName") is not None:
            t[META + "endpoint_node_name"] = addr["nodeName"]
        if addr.get("hostname"):
            t[META + "endpoint_hostname"] = addr["hostname"]
        pod = _node_labels_and_pod(t, addr.get("nodeName"), ref, nodes, pods)
        if pod is None:
            targets.append(t)
            return
        pkey = key_of(pod)
        entry = seen.setdefault(pkey, (pod, []))
        t.update(pod_labels(pod))
        _add_pod_container(t, pod, number, port.get("protocol", ""))
        entry[1].append(number)
        targets.append(t)

    for subset in eps.get("subsets") or []:
        for port in subset.get("ports") or []:
            for addr in subset.get("addresses") or []:
                add(addr, port, "true")
            for addr in subset.get("notReadyAddresses") or []:
                add(addr, port, "false")
    _pod_extra_ports(seen, targets)
    return TargetGroup(source=f"endpoints/{ns}/{m.get('name', '')}", targets=targets,
                       labels=labels)


def build_endpointslice(es: dict, services: dict[str, dict], pods: dict[str, dict],
                        nodes: dict[str, dict] | None) -> TargetGroup:
    m = _meta(es)
    ns = m.get("namespace", "")
    labels = {NAMESPACE: ns, META + "endpointslice_address_type": es.get("addressType", "")}
    object_meta_labels(labels, es, "endpointslice")
    svc_name = (m.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if svc_name is not None:
        svc = services.get(f"{ns}/{svc_name}")
        if svc is not None:
            labels.update(service_labels(svc))
    targets: list[dict[str, str]] = []
    seen: dict[str, tuple[dict, list[int]]] = {}
    P = META + "endpointslice_"
    for ep in es.get("endpoints") or []:
        cond = ep.get("conditions") or {}
        ref = ep.get("targetRef")
        for port in es.get("ports") or []:
            number = port.get("port")
            for addr in ep.get("addresses") or []:
                t = {"__address__": addr if number is None else join_host_port(addr, number)}
                if port.get("name") is not None:
                    t[P + "port_name"] = port["name"]
                if port.get("protocol") is not None:
                    t[P + "port_protocol"] = port["protocol"]
                if number is not None:
                    t[P + "port"] = str(number)
                if port.get("appProtocol") is not None:
                    t[P + "port_app_protocol"] = port["appProtocol"]
                for c in ("ready", "serving", "terminating"):
                    if cond.get(c) is not None:
                        t[P + "endpoint_conditions_" + c] = "true" if cond[c] else "false"
                if ep.get("hostname") is not None:
                    t[P + "endpoint_hostname"] = ep["hostname"]
                if ref:
                    t[P + "address_target_kind"] = ref.get("kind", "")
                    t[P + "address_target_name"] = ref.get("name", "")
                if ep.get("nodeName") is not None:
                    t[P + "endpoint_node_name"] = ep["nodeName"]
                if ep.get("zone") is not None:
                    t[P + "endpoint_zone"] = ep["zone"]
                for k, v in (ep.get("deprecatedTopology") or {}).items():
                    ln = sanitize(k)
                    t[P + "endpoint_topology_" + ln] = v
                    t[P + "endpoint_topology_present_" + ln] = PRESENT
                pod = _node_labels_and_pod(t, ep.get("nodeName"), ref, nodes, pods)
                if pod is None:
                    targets.append(t)
                    continue
                entry = seen.setdefault(key_of(pod), (pod, []))
                t.update(pod_labels(pod))
                _add_pod_container(t, pod, number, None)
                if number is not None:
                    entry[1].append(number)
                targets.append(t)
    _pod_extra_ports(seen, targets)
    return TargetGroup(source=f"endpointslice/{ns}/{m.get('name', '')}", targets=targets,
                       labels=labels)


def _host_matches(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    pp, hp = pattern.split("."), host.split(".")
    if not pp or pp[0] != "*" or len(pp) != len(hp):
        return False
    return pp[1:] == hp[1:]


def build_ingress(ing: dict) -> TargetGroup:
    m = _meta(ing)
    spec = ing.get("spec") or {}
    labels = {NAMESPACE: m.get("namespace", "")}
    object_meta_labels(labels, ing, "ingress")
    if spec.get("ingressClassName") is not None:
        labels[META + "ingress_class_name"] = spec["ingressClassName"]
    tls_hosts = [h for tls in spec.get("tls") or [] for h in tls.get("hosts") or []]
    targets = []
    for rule in spec.get("rules") or []:
        host = rule.get("host", "")
        http = rule.get("http")
        if http is None:
            paths = ["/"]
        else:
            paths = [p.get("path") or "/" for p in http.get("paths") or []]
        scheme = "https" if any(_host_matches(p, host) for p in tls_hosts) else "http"
        for path in paths:
            targets.append({"__address__": host, META + "ingress_scheme": scheme,
                            META + "ingress_host": host, META + "ingress_path": path})
    return TargetGroup(source=f"ingress/{m.get('namespace', '')}/{m.get('name', '')}",
                       targets=targets, labels=labels)


# ---------------------------------------------------------------------------
# The API client: api_server + HTTP client fields, kubeconfig, or in-cluster
# ---------------------------------------------------------------------------


class KubeError(RuntimeError):
    pass


class _FileSecret:
    """A secret read from a file, re-read when the file changes (rotated tokens)."""

    def __init__(self, path: str):
        self.path = path
        self._ident: tuple[float, int] | None = None
        self._value = ""

    def get(self) -> str:
        try:
            st = os.stat(self.path)
            ident = (st.st_mtime, st.st_size)
            if ident != self._ident:
                with open(self.path, encoding="utf-8") as f:
                    self._value = f.read().strip()
                self._ident = ident
        except OSError as exc:
            log.error("kubernetes_sd: cannot read %s: %s", self.path, exc)
        return self._value


class KubeClient:
    """Plain `requests` against the API server, with the configured authentication."""

    def __init__(self, cfg: Any):
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["User-Agent"] = "clymene/kubernetes-sd"
        self.session.headers["Accept"] = "application/json"
        self._auth: Callable[[], dict[str, str]] = dict
        self.own_namespace = ""
        self.follow_redirects = True
        if cfg.api_server:
            self._from_http_config(cfg)
        elif cfg.kubeconfig_file:
            self._from_kubeconfig(cfg.kubeconfig_file)
        else:
            self._in_cluster()

    def _from_http_config(self, cfg: Any) -> None:
        self.base = cfg.api_server.rstrip("/")
        hc = cfg.http_client
        configure_session(self.session, hc)  # TLS and proxy, as for scrapes
        self.follow_redirects = hc.follow_redirects
        if hc.basic_auth is not None:
            ba = hc.basic_auth
            pw = _FileSecret(ba.password_file) if ba.password_file else None
            self.session.auth = None

            def basic() -> dict[str, str]:
                import base64
                password = pw.get() if pw else ba.password
                raw = f"{ba.username}:{password}".encode()
                return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
            self._auth = basic
        elif hc.authorization is not None:
            az = hc.authorization
            cred = _FileSecret(az.credentials_file) if az.credentials_file else None

            def authz() -> dict[str, str]:
                value = cred.get() if cred else az.credentials
                return {"Authorization": f"{az.type} {value}"}
            self._auth = authz

    def _from_kubeconfig(self, path: str) -> None:
        from kubernetes import client as kclient
        from kubernetes import config as kconfig
        c = kclient.Configuration()
        try:
            kconfig.load_kube_config(config_file=path, client_configuration=c,
                                     persist_config=False)
        except Exception as exc:  # the client raises ConfigException, ValueError, ...
            raise KubeError(f"kubeconfig {path}: {exc}") from None
        self.base = c.host.rstrip("/")
        if not c.verify_ssl:
            self.session.verify = False
        elif c.ssl_ca_cert:
            self.session.verify = c.ssl_ca_cert
        if c.cert_file:
            self.session.cert = (c.cert_file, c.key_file)
        keys = c.api_key or {}
        token = keys.get("BearerToken") or keys.get("authorization") or ""
        if token:
            self._auth = lambda: {"Authorization": token}
        elif c.username:
            import base64
            raw = f"{c.username}:{c.password}".encode()
            header = "Basic " + base64.b64encode(raw).decode()
            self._auth = lambda: {"Authorization": header}

    def _in_cluster(self) -> None:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
        if not host or not port:
            raise KubeError("unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST "
                            "and KUBERNETES_SERVICE_PORT must be defined")
        self.base = "https://" + join_host_port(host, port)
        token = _FileSecret(os.path.join(SA_DIR, "token"))
        if not token.get():
            raise KubeError(f"unable to load in-cluster configuration: no token in {SA_DIR}/token")
        ca = os.path.join(SA_DIR, "ca.crt")
        if os.path.exists(ca):
            self.session.verify = ca
        self._auth = lambda: {"Authorization": "Bearer " + token.get()}
        try:
            with open(os.path.join(SA_DIR, "namespace"), encoding="utf-8") as f:
                self.own_namespace = f.read().strip()
        except OSError:
            pass

    def get(self, path: str, params: dict[str, str], stream: bool = False,
            timeout: tuple[float, float] = (10.0, 60.0)) -> requests.Response:
        return self.session.get(self.base + path, params=params, headers=self._auth(),
                                stream=stream, timeout=timeout,
                                allow_redirects=self.follow_redirects)


# ---------------------------------------------------------------------------
# Informers: list + watch of one resource in one namespace (or all)
# ---------------------------------------------------------------------------


class _Gone(Exception):
    pass


class Informer:
    """Keeps `store` equal to the API's objects and calls `on_change(type, key, obj)`.

    `obj` is None for deletions. `on_synced()` is called after every (re-)list, under
    the caller's lock like on_change.
    """

    BACKOFF_MIN = 0.2
    BACKOFF_MAX = 5.0

    def __init__(self, client: KubeClient, resource: str, namespace: str,
                 label_selector: str, field_selector: str, lock: threading.Lock,
                 on_change: Callable[[str, str, dict | None], None],
                 on_synced: Callable[[], None], stop: threading.Event):
        prefix, plural, namespaced = RESOURCES[resource]
        self.path = (f"{prefix}/namespaces/{namespace}/{plural}" if namespaced and namespace
                     else f"{prefix}/{plural}")
        self.client = client
        self.resource = resource
        self.params = {}
        if label_selector:
            self.params["labelSelector"] = label_selector
        if field_selector:
            self.params["fieldSelector"] = field_selector
        self.lock = lock
        self.on_change = on_change
        self.on_synced = on_synced
        self.stop = stop
        self.store: dict[str, dict] = {}
        self.rv = ""
        self.synced = False
        self.lists = 0  # for tests: how many (re-)lists
        self.last_error = ""
        self._response: requests.Response | None = None
        self.thread = threading.Thread(target=self._run, name=f"k8s-{resource}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        resp = self._response
        if resp is not None:
            try:
                resp.close()
            except Exception:  # closing from another thread: best effort
                pass

    def _run(self) -> None:
        backoff = self.BACKOFF_MIN
        need_list = True
        while not self.stop.is_set():
            try:
                if need_list:
                    self._list()
                    need_list = False
                self._watch()
                backoff = self.BACKOFF_MIN
            except _Gone:
                log.info("kubernetes_sd: %s: resource version %s too old, re-listing",
                         self.path, self.rv)
                need_list = True
            except Exception as exc:  # noqa: BLE001 (a watch thread must not die)
                if self.stop.is_set():
                    return  # closed under our feet
                stats.inc("clymene_kubernetes_sd_errors_total")
                self.last_error = str(exc)
                log.warning("kubernetes_sd: %s: %s; retrying in %.1fs", self.path, exc, backoff)
                self.stop.wait(backoff * (0.8 + 0.4 * random.random()))
                backoff = min(backoff * 2, self.BACKOFF_MAX)

    def _list(self) -> None:
        items: list[dict] = []
        params = dict(self.params, limit="500")
        while True:
            resp = self.client.get(self.path, params)
            if resp.status_code != 200:
                raise KubeError(f"list: HTTP {resp.status_code}: {resp.text[:200]}")
            doc = resp.json()
            items.extend(doc.get("items") or [])
            meta = doc.get("metadata") or {}
            if not meta.get("continue"):
                break
            params["continue"] = meta["continue"]
        rv = meta.get("resourceVersion", "")
        with self.lock:
            fresh = {key_of(o): o for o in items}
            for key in [k for k in self.store if k not in fresh]:
                del self.store[key]
                self.on_change("DELETED", key, None)
            # Like client-go's Replace: every listed object is an add or an update, even
            # when unchanged, so everything built from it is rebuilt after a re-list.
            for key, obj in fresh.items():
                old = self.store.get(key)
                self.store[key] = obj
                self.on_change("ADDED" if old is None else "MODIFIED", key, obj)
            self.rv = rv
            self.synced = True
            self.lists += 1
            self.on_synced()

    def _watch(self) -> None:
        timeout = int(300 * (1 + random.random()))
        params = dict(self.params, watch="true", resourceVersion=self.rv,
                      allowWatchBookmarks="true", timeoutSeconds=str(timeout))
        resp = self.client.get(self.path, params, stream=True, timeout=(10.0, timeout + 30.0))
        self._response = resp
        try:
            if resp.status_code == 410:
                raise _Gone()
            if resp.status_code != 200:
                raise KubeError(f"watch: HTTP {resp.status_code}: {resp.text[:200]}")
            decoder = json.JSONDecoder()
            buf = ""
            for chunk in resp.iter_content(chunk_size=None):
                if self.stop.is_set():
                    return
                buf += chunk.decode("utf-8") if isinstance(chunk, bytes) else chunk
                while True:
                    buf = buf.lstrip()
                    if not buf:
                        break
                    try:
                        event, end = decoder.raw_decode(buf)
                    except ValueError:
                        break  # incomplete: wait for more
                    buf = buf[end:]
                    self._event(event)
            if buf.strip():
                raise KubeError("watch: stream ended inside an event")
        finally:
            self._response = None
            resp.close()

    def _event(self, event: dict) -> None:
        etype = event.get("type")
        obj = event.get("object") or {}
        rv = _meta(obj).get("resourceVersion", "")
        if etype == "ERROR":
            if obj.get("code") == 410:
                raise _Gone()
            raise KubeError(f"watch error: {obj.get('message', obj)}")
        if etype == "BOOKMARK":
            if rv:
                self.rv = rv
            return
        if etype not in ("ADDED", "MODIFIED", "DELETED"):
            raise KubeError(f"watch: unknown event type {etype!r}")
        key = key_of(obj)
        with self.lock:
            if etype == "DELETED":
                if self.store.pop(key, None) is not None:
                    self.on_change("DELETED", key, None)
            else:
                old = self.store.get(key)
                self.store[key] = obj
                self.on_change("ADDED" if old is None else "MODIFIED", key, obj)
            if rv:
                self.rv = rv


# ---------------------------------------------------------------------------
# One kubernetes_sd_configs entry
# ---------------------------------------------------------------------------


class KubernetesSD:
    """The target groups of one `kubernetes_sd_configs` entry, kept up to date by watches."""

    def __init__(self, cfg: Any, name: str = ""):
        self.cfg = cfg
        self.role: str = cfg.role
        self.name = name or f"kubernetes/{cfg.role}"
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.informers: list[Informer] = []
        self.attach_node = bool(cfg.attach_metadata.node) and self.role in (
            "pod", "endpoints", "endpointslice")
        # Merged stores per resource (keys carry the namespace, so no clash).
        self.stores: dict[str, dict[str, dict]] = {}
        self._groups: dict[str, TargetGroup] = {}
        self._list: list[TargetGroup] = []
        self._dirty = False
        self._ready = False
        self.error = ""
        try:
            self.client = KubeClient(cfg)
        except KubeError as exc:
            self.error = str(exc)
            log.error("kubernetes_sd %s: %s", self.name, exc)
            return
        self._start()

    def _namespaces(self) -> list[str]:
        ns = self.cfg.namespaces
        names = list(ns.names)
        if ns.own_namespace and self.client.own_namespace:
            names.append(self.client.own_namespace)
        return names or [""]

    def _resources(self) -> list[str]:
        if self.role in ("endpoints", "endpointslice"):
            res = [self.role, "service", "pod"]
        else:
            res = [self.role]
        if self.attach_node:
            res.append("node")
        return res

    def _start(self) -> None:
        selectors = {s.role: s for s in self.cfg.selectors}
        for resource in self._resources():
            self.stores[resource] = {}
            sel = selectors.get(resource)
            namespaces = [""] if resource == "node" else self._namespaces()
            for ns in namespaces:
                inf = Informer(self.client, resource, ns, sel.label if sel else "",
                               sel.field if sel else "", self.lock,
                               self._change_handler(resource), self._on_synced, self.stop_event)
                self.informers.append(inf)
        for inf in self.informers:
            inf.start()

    def close(self) -> None:
        self.stop_event.set()
        for inf in self.informers:
            inf.close()

    def synced(self) -> bool:
        return bool(self.informers) and all(inf.synced for inf in self.informers)

    def groups(self) -> list[TargetGroup]:
        """Same list object while nothing changed; a new one after any change."""
        with self.lock:
            if self._dirty:
                self._dirty = False
                self._list = [g for g in self._groups.values() if g.targets]
            return self._list

    # -- event handling (called by informers with self.lock held) --

    def _on_synced(self) -> None:
        if not self._ready and self.synced():
            self._ready = True
            self._rebuild_all()

    def _change_handler(self, resource: str) -> Callable[[str, str, dict | None], None]:
        def handler(etype: str, key: str, obj: dict | None) -> None:
            store = self.stores[resource]
            old = store.get(key)
            if obj is None:
                store.pop(key, None)
            else:
                store[key] = obj
            if self._ready:
                self._changed(resource, etype, key, old, obj)
        return handler

    def _set(self, source: str, group: TargetGroup | None) -> None:
        if group is None:
            return
        if not group.targets and source not in self._groups:
            return
        if group.targets:
            self._groups[source] = without_empty(group)
        else:
            self._groups.pop(source, None)
        self._dirty = True

    def _drop(self, source: str) -> None:
        if self._groups.pop(source, None) is not None:
            self._dirty = True

    def _build(self, resource: str, key: str, obj: dict) -> tuple[str, TargetGroup | None]:
        nodes = self.stores.get("node") if self.attach_node else None
        if resource == "pod":
            node = None
            if nodes is not None:
                node = nodes.get((obj.get("spec") or {}).get("nodeName", ""))
            g = build_pod(obj, node, self.attach_node)
        elif resource == "node":
            g = build_node(obj)
        elif resource == "service":
            g = build_service(obj)
        elif resource == "endpoints":
            g = build_endpoints(obj, self.stores["service"], self.stores["pod"], nodes)
        elif resource == "endpointslice":
            g = build_endpointslice(obj, self.stores["service"], self.stores["pod"], nodes)
        else:
            g = build_ingress(obj)
        return _source(resource, key), g

    def _rebuild_all(self) -> None:
        self._groups = {}
        for key, obj in self.stores[self.role].items():
            source, g = self._build(self.role, key, obj)
            self._set(source, g)
        self._dirty = True

    def _rebuild(self, key: str) -> None:
        obj = self.stores[self.role].get(key)
        if obj is None:
            self._drop(_source(self.role, key))
        else:
            self._set(*self._build(self.role, key, obj))

    def _changed(self, resource: str, etype: str, key: str, old: dict | None,
                 obj: dict | None) -> None:
        if resource == self.role:
            self._rebuild(key)
            return
        if resource == "service":
            ns, _, name = key.partition("/")
            if self.role == "endpoints":
                if key in self.stores["endpoints"]:
                    self._rebuild(key)
            else:
                for skey, es in self.stores["endpointslice"].items():
                    m = _meta(es)
                    if (m.get("namespace") == ns
                            and (m.get("labels") or {}).get(SERVICE_NAME_LABEL) == name):
                        self._rebuild(skey)
        elif resource == "pod":
            # Like Prometheus: endpoints follow a pod only when its phase changes
            # (prometheus/prometheus#11305); other pod changes wait for the endpoints.
            if etype != "MODIFIED" or old is None or obj is None:
                return
            if (old.get("status") or {}).get("phase") == (obj.get("status") or {}).get("phase"):
                return
            for ekey, eobj in self.stores[self.role].items():
                if _refers_to_pod(eobj, key):
                    self._rebuild(ekey)
        elif resource == "node":
            if self.role == "pod":
                for pkey, pod in self.stores["pod"].items():
                    if (pod.get("spec") or {}).get("nodeName") == key:
                        self._rebuild(pkey)
            else:
                for ekey, eobj in self.stores[self.role].items():
                    if _refers_to_node(eobj, key):
                        self._rebuild(ekey)


def without_empty(group: TargetGroup) -> TargetGroup:
    """Prometheus' label sets drop empty values: an unnamed port has no port name label."""
    return TargetGroup(source=group.source,
                       targets=[{k: v for k, v in t.items() if v} for t in group.targets],
                       labels={k: v for k, v in group.labels.items() if v})


def _source(resource: str, key: str) -> str:
    if resource == "node":
        return "node/" + key
    prefix = {"pod": "pod", "service": "svc", "endpoints": "endpoints",
              "endpointslice": "endpointslice", "ingress": "ingress"}[resource]
    return f"{prefix}/{key}"


def _addresses(obj: dict) -> list[dict]:
    if "subsets" in obj:
        return [a for s in obj.get("subsets") or []
                for a in (s.get("addresses") or []) + (s.get("notReadyAddresses") or [])]
    return list(obj.get("endpoints") or [])


def _refers_to_pod(obj: dict, pod_key: str) -> bool:
    for a in _addresses(obj):
        ref = a.get("targetRef") or {}
        if ref.get("kind") == "Pod" and f"{ref.get('namespace', '')}/{ref.get('name', '')}" == pod_key:
            return True
    return False


def _refers_to_node(obj: dict, node: str) -> bool:
    for a in _addresses(obj):
        ref = a.get("targetRef") or {}
        if a.get("nodeName") == node or (ref.get("kind") == "Node" and ref.get("name") == node):
            return True
    return False
