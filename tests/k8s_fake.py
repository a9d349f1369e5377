"""A fake Kubernetes API server for tests: list and watch like the real one.

    api = FakeKube()                         # threads in this process, 127.0.0.1:<free port>
    api.start()
    api.put(pod)                             # create or replace; bumps resourceVersion
    api.delete("pod", "ns", "name")
    api.compact()                            # older resourceVersions now get 410 Gone
    api.stop(); api.start()                  # a restart: open watches break, state stays
    api.url                                  # http://127.0.0.1:<port>

What it serves: `/version` (full semver gitVersion: client-go needs it), the discovery
documents (`/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>`), lists of nodes, pods,
services, endpoints (core v1), endpointslices (discovery.k8s.io/v1) and ingresses
(networking.k8s.io/v1), cluster-wide or per namespace, with `labelSelector`,
`fieldSelector`, `limit`/`continue`; and `watch=true` streams of chunked JSON events from a
resourceVersion (all current objects as ADDED when it is empty or "0"), BOOKMARK events
when `allowWatchBookmarks=true`, `timeoutSeconds`, and 410 Gone (an ERROR event with a
Status of code 410, as the real server sends it) for a resourceVersion older than the
last compaction.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

# kind -> (group/version, plural, namespaced)
KINDS: dict[str, tuple[str, str, bool]] = {
    "node": ("v1", "nodes", False),
    "pod": ("v1", "pods", True),
    "service": ("v1", "services", True),
    "endpoints": ("v1", "endpoints", True),
    "endpointslice": ("discovery.k8s.io/v1", "endpointslices", True),
    "ingress": ("networking.k8s.io/v1", "ingresses", True),
}
KIND_NAMES = {"node": "Node", "pod": "Pod", "service": "Service", "endpoints": "Endpoints",
              "endpointslice": "EndpointSlice", "ingress": "Ingress"}
BY_PLURAL = {(gv, plural): kind for kind, (gv, plural, _) in KINDS.items()}

_PATH = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<ver>[^/]+))"
                   r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)$")


# -- selectors (labels.Parse and fields.ParseSelector, the forms tests use) --

def _split(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for req in _split(selector):
        m = re.match(r"^([\w./-]+)\s+(in|notin)\s+\((.*)\)$", req)
        if m:
            values = {v.strip() for v in m.group(3).split(",")}
            has = m.group(1) in labels and labels[m.group(1)] in values
            if (m.group(2) == "in") != has:
                return False
            continue
        m = re.match(r"^([\w./-]+)\s*(==|=|!=)\s*(.*)$", req)
        if m:
            value = labels.get(m.group(1))
            if m.group(2) == "!=":
                if value == m.group(3):
                    return False
            elif value != m.group(3):
                return False
            continue
        if req.startswith("!"):
            if req[1:].strip() in labels:
                return False
        elif req not in labels:
            return False
    return True


def _field(obj: dict, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def field_selector_matches(selector: str, obj: dict) -> bool:
    for req in _split(selector):
        m = re.match(r"^([\w.]+)\s*(==|=|!=)\s*(.*)$", req)
        if not m:
            raise ValueError(f"invalid field selector {req!r}")
        value = _field(obj, m.group(1))
        if (m.group(2) == "!=") == (value == m.group(3)):
            return False
    return True


class FakeKube:
    def __init__(self, port: int = 0, git_version: str = "v1.29.4",
                 bookmark_interval: float = 1.0) -> None:
        self.port = port
        self.git_version = git_version
        self.bookmark_interval = bookmark_interval
        self.lock = threading.Condition()
        self.rv = 1000
        self.compacted_rv = 0
        self.objects: dict[str, dict[tuple[str, str], dict]] = {k: {} for k in KINDS}
        self.events: list[tuple[int, str, str, dict]] = []  # (rv, kind, type, object)
        self.requests: list[str] = []  # "GET path?query" of every request, for assertions
        self.tokens: set[str] | None = None  # when set: Bearer tokens accepted
        self.basic: tuple[str, str] | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._generation = 0

    # -- state --

    scheme = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def put(self, obj: dict) -> dict:
        """Create or replace an object (kind from obj['kind']); returns the stored copy."""
        kind = _kind_of(obj)
        obj = copy.deepcopy(obj)
        gv, _, namespaced = KINDS[kind]
        obj["apiVersion"] = gv
        obj["kind"] = KIND_NAMES[kind]
        meta = obj.setdefault("metadata", {})
        if namespaced:
            meta.setdefault("namespace", "default")
        with self.lock:
            self.rv += 1
            key = (meta.get("namespace", ""), meta["name"])
            old = self.objects[kind].get(key)
            meta["resourceVersion"] = str(self.rv)
            meta.setdefault("uid", old["metadata"]["uid"] if old else f"uid-{kind}-{key[0]}-{key[1]}")
            meta.setdefault("creationTimestamp", "2024-01-01T00:00:00Z")
            self.objects[kind][key] = obj
            self.events.append((self.rv, kind, "MODIFIED" if old else "ADDED", obj))
            self.lock.notify_all()
        return obj

    def delete(self, kind: str, namespace: str, name: str) -> None:
        with self.lock:
            obj = self.objects[kind].pop((namespace, name))
            self.rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.events.append((self.rv, kind, "DELETED", obj))
            self.lock.notify_all()

    def get(self, kind: str, namespace: str, name: str) -> dict:
        with self.lock:
            return copy.deepcopy(self.objects[kind][(namespace, name)])

    def compact(self) -> None:
        """Forget the event history: watches from an older resourceVersion get 410."""
        with self.lock:
            self.compacted_rv = self.rv
            self.events = []
            self.lock.notify_all()

    # -- server --

    def start(self, tls: tuple[str, str] | None = None) -> None:
        """Listen (again) on self.port (0: a free one); `tls` = (cert file, key file)
        serves HTTPS, so the tests can use tls_config and the in-cluster configuration."""
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        if tls:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._server.daemon_threads = True
        self._server.allow_reuse_address = True
        self.port = self._server.server_address[1]
        self._generation += 1
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and break every open connection (watches end abruptly)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        with self.lock:
            self._generation += 1
            for conn in list(self._conns):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._conns.clear()
            self.lock.notify_all()

    def watchers(self) -> int:
        with self.lock:
            return self._watchers

    _watchers = 0


def _kind_of(obj: dict) -> str:
    for kind, name in KIND_NAMES.items():
        if obj.get("kind") == name:
            return kind
    raise ValueError(f"unknown kind {obj.get('kind')!r}")


def _discovery(api: FakeKube, path: str) -> dict | None:
    if path == "/version":
        return {"major": "1", "minor": api.git_version.split(".")[1],
                "gitVersion": api.git_version, "gitCommit": "0" * 40,
                "gitTreeState": "clean", "buildDate": "2024-01-01T00:00:00Z",
                "goVersion": "go1.21.9", "compiler": "gc", "platform": "linux/amd64"}
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                "serverAddress": "127.0.0.1"}]}
    groups = {}
    for gv, _, _ in KINDS.values():
        if "/" in gv:
            groups.setdefault(gv.split("/")[0], gv)
    if path == "/apis":
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": g, "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
             "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]}}
            for g, gv in groups.items()]}
    for want in ["v1", *groups.values()]:
        if path == ("/api/v1" if want == "v1" else f"/apis/{want}"):
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": want,
                    "resources": [
                        {"name": plural, "singularName": kind, "namespaced": namespaced,
                         "kind": KIND_NAMES[kind], "verbs": ["get", "list", "watch"]}
                        for kind, (gv, plural, namespaced) in KINDS.items() if gv == want]}
    return None


def _make_handler(api: FakeKube) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            with api.lock:
                api._conns.add(self.connection)

        def finish(self) -> None:
            with api.lock:
                api._conns.discard(self.connection)
            try:
                super().finish()
            except OSError:
                pass

        def _json(self, status: int, doc: dict) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _status(self, code: int, reason: str, message: str) -> None:
            self._json(code, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Failure", "message": message, "reason": reason,
                              "code": code})

        def _authorized(self) -> bool:
            if api.tokens is None and api.basic is None:
                return True
            header = self.headers.get("Authorization", "")
            if api.tokens is not None and header.startswith("Bearer ") \
                    and header[7:] in api.tokens:
                return True
            if api.basic is not None and header.startswith("Basic "):
                import base64
                user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
                return (user, pw) == api.basic
            return False

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlparse(self.path)
            with api.lock:
                api.requests.append(f"GET {self.path}")
            if not self._authorized():
                self._status(401, "Unauthorized", "Unauthorized")
                return
            doc = _discovery(api, url.path)
            if doc is not None:
                self._json(200, doc)
                return
            m = _PATH.match(url.path)
            gv = (m.group("core") if m and m.group("core")
                  else f"{m.group('group')}/{m.group('ver')}" if m else "")
            kind = BY_PLURAL.get((gv, m.group("plural"))) if m else None
            if kind is None:
                self._status(404, "NotFound", f"the server could not find the requested resource ({url.path})")
                return
            q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            ns = m.group("ns") or ""

            def match(obj: dict) -> bool:
                meta = obj["metadata"]
                if ns and meta.get("namespace") != ns:
                    return False
                if q.get("labelSelector") and not label_selector_matches(
                        q["labelSelector"], meta.get("labels") or {}):
                    return False
                return not (q.get("fieldSelector")
                            and not field_selector_matches(q["fieldSelector"], obj))
            try:
                if q.get("fieldSelector"):
                    field_selector_matches(q["fieldSelector"], {})
            except ValueError as exc:
                self._status(400, "BadRequest", str(exc))
                return
            if q.get("watch") in ("true", "1"):
                self._watch(kind, q, match)
            else:
                self._list(kind, q, match)

        def _list(self, kind: str, q: dict[str, str], match: Any) -> None:
            with api.lock:
                items = sorted((o for o in api.objects[kind].values() if match(o)),
                               key=lambda o: (o["metadata"].get("namespace", ""),
                                              o["metadata"]["name"]))
                rv = api.rv
            start = int(q.get("continue") or 0)
            limit = int(q.get("limit") or 0)
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            if limit and start + limit < len(items):
                meta["continue"] = str(start + limit)
                items = items[start:start + limit]
            else:
                items = items[start:]
            items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")}
                     for o in items]
            self._json(200, {"kind": KIND_NAMES[kind] + "List",
                             "apiVersion": KINDS[kind][0], "metadata": meta, "items": items})

        def _send_event(self, etype: str, obj: dict) -> None:
            data = json.dumps({"type": etype, "object": obj}).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _watch(self, kind: str, q: dict[str, str], match: Any) -> None:
            rv_text = q.get("resourceVersion", "")
            deadline = time.monotonic() + float(q.get("timeoutSeconds") or 1800)
            bookmarks = q.get("allowWatchBookmarks") == "true"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            with api.lock:
                generation = api._generation
                api._watchers += 1
            try:
                with api.lock:
                    if rv_text in ("", "0"):
                        pending = [("ADDED", copy.deepcopy(o)) for o in api.objects[kind].values()
                                   if match(o)]
                        pos_rv = api.rv
                    elif int(rv_text) < api.compacted_rv:
                        pending = [("ERROR", {
                            "kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "reason": "Expired", "code": 410,
                            "message": f"too old resource version: {rv_text} ({api.compacted_rv})"})]
                        pos_rv = -1
                    else:
                        pending = []
                        pos_rv = int(rv_text)
                for etype, obj in pending:
                    self._send_event(etype, obj)
                if pos_rv < 0:
                    self.wfile.write(b"0\r\n\r\n")
                    return
                last_bookmark = time.monotonic()
                while True:
                    with api.lock:
                        while True:
                            if api._generation != generation:
                                return  # server stopped: drop the connection
                            if pos_rv < api.compacted_rv:
                                new = [("ERROR", {
                                    "kind": "Status", "apiVersion": "v1", "metadata": {},
                                    "status": "Failure", "reason": "Expired", "code": 410,
                                    "message": f"too old resource version: {pos_rv} "
                                               f"({api.compacted_rv})"})]
                                break
                            new = [(t, o) for r, k, t, o in api.events
                                   if r > pos_rv and k == kind]
                            now = time.monotonic()
                            if new or now >= deadline or (
                                    bookmarks and now - last_bookmark >= api.bookmark_interval):
                                break
                            wait = deadline - now
                            if bookmarks:
                                wait = min(wait, api.bookmark_interval - (now - last_bookmark))
                            api.lock.wait(max(0.01, wait))
                        current_rv = api.rv
                    if new and new[0][0] == "ERROR":
                        self._send_event(*new[0])
                        self.wfile.write(b"0\r\n\r\n")
                        return
                    for etype, obj in new:
                        pos_rv = int(obj["metadata"]["resourceVersion"])
                        if match(obj):
                            self._send_event(etype, obj)
                    if not new and bookmarks and time.monotonic() - last_bookmark >= api.bookmark_interval:
                        pos_rv = max(pos_rv, current_rv)
                        self._send_event("BOOKMARK", {
                            "kind": KIND_NAMES[kind], "apiVersion": KINDS[kind][0],
                            "metadata": {"resourceVersion": str(pos_rv)}})
                        last_bookmark = time.monotonic()
                    if time.monotonic() >= deadline:
                        self.wfile.write(b"0\r\n\r\n")
                        return
            except OSError:
                return
            finally:
                with api.lock:
                    api._watchers -= 1
                self.close_connection = True

    return Handler


# ---------------------------------------------------------------------------
# Object builders and the fixture cluster the differential tests use
# ---------------------------------------------------------------------------


def node(name: str, ip: str, labels: dict | None = None, annotations: dict | None = None,
         addresses: list[tuple[str, str]] | None = None, kubelet_port: int = 10250,
         provider_id: str = "") -> dict:
    addrs = addresses if addresses is not None else [("InternalIP", ip), ("Hostname", name)]
    obj: dict[str, Any] = {
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
        "spec": {},
        "status": {"addresses": [{"type": t, "address": a} for t, a in addrs],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}}},
    }
    if provider_id:
        obj["spec"]["providerID"] = provider_id
    return obj


def container(name: str, ports: list[tuple[str, int]] | None = None,
              image: str = "example/app:1", protocol: str = "TCP") -> dict:
    c: dict[str, Any] = {"name": name, "image": image}
    if ports:
        c["ports"] = [{**({"name": n} if n else {}), "containerPort": p, "protocol": protocol}
                      for n, p in ports]
    return c


def pod(name: str, namespace: str = "default", ip: str = "10.0.0.1", node_name: str = "node-1",
        containers: list[dict] | None = None, init_containers: list[dict] | None = None,
        labels: dict | None = None, annotations: dict | None = None, ready: bool | None = True,
        phase: str = "Running", owner: tuple[str, str] | None = None,
        host_network: bool = False, host_ip: str = "192.168.0.1") -> dict:
    containers = containers if containers is not None else [container("app", [("http", 8080)])]
    status: dict[str, Any] = {"phase": phase, "hostIP": host_ip}
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    if ready is not None:
        status["conditions"] = [
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "True" if ready else "False"}]
    status["containerStatuses"] = [
        {"name": c["name"], "ready": bool(ready), "restartCount": 0, "image": c["image"],
         "imageID": "", "containerID": f"containerd://{name}-{c['name']}"} for c in containers]
    if init_containers:
        status["initContainerStatuses"] = [
            {"name": c["name"], "ready": True, "restartCount": 0, "image": c["image"],
             "imageID": "", "containerID": f"containerd://{name}-{c['name']}"}
            for c in init_containers]
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels or {},
                            "annotations": annotations or {}, "uid": f"uid-{namespace}-{name}"}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1],
                                    "uid": f"uid-{owner[1]}", "controller": True}]
    spec: dict[str, Any] = {"nodeName": node_name, "containers": containers}
    if init_containers:
        spec["initContainers"] = init_containers
    if host_network:
        spec["hostNetwork"] = True
    return {"kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def service(name: str, namespace: str = "default", type_: str = "ClusterIP",
            cluster_ip: str = "10.96.0.10", ports: list[tuple[str, int]] | None = None,
            labels: dict | None = None, annotations: dict | None = None,
            external_name: str = "") -> dict:
    spec: dict[str, Any] = {"type": type_}
    if type_ == "ExternalName":
        spec["externalName"] = external_name
    else:
        spec["clusterIP"] = cluster_ip
    ports = ports if ports is not None else [("http", 80)]
    spec["ports"] = [{**({"name": n} if n else {}), "port": p, "protocol": "TCP",
                      "targetPort": p} for n, p in ports]
    return {"kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {},
                         "annotations": annotations or {}},
            "spec": spec}


def endpoints(name: str, namespace: str, subsets: list[dict], labels: dict | None = None,
              annotations: dict | None = None) -> dict:
    return {"kind": "Endpoints",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {},
                         "annotations": annotations or {}},
            "subsets": subsets}


def ep_address(ip: str, pod_name: str = "", namespace: str = "default", node_name: str = "",
               hostname: str = "", kind: str = "Pod") -> dict:
    a: dict[str, Any] = {"ip": ip}
    if pod_name:
        a["targetRef"] = {"kind": kind, "name": pod_name, "namespace": namespace,
                          "uid": f"uid-{namespace}-{pod_name}"}
    if node_name:
        a["nodeName"] = node_name
    if hostname:
        a["hostname"] = hostname
    return a


def endpointslice(name: str, namespace: str, service_name: str, endpoints_: list[dict],
                  ports: list[tuple[str, int]], address_type: str = "IPv4",
                  labels: dict | None = None, annotations: dict | None = None,
                  app_protocol: str = "") -> dict:
    lbls = dict(labels or {})
    if service_name:
        lbls["kubernetes.io/service-name"] = service_name
    plist = []
    for n, p in ports:
        entry: dict[str, Any] = {"name": n, "port": p, "protocol": "TCP"}
        if app_protocol:
            entry["appProtocol"] = app_protocol
        plist.append(entry)
    return {"kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": namespace, "labels": lbls,
                         "annotations": annotations or {}},
            "addressType": address_type, "endpoints": endpoints_, "ports": plist}


def slice_endpoint(ip: str, pod_name: str = "", namespace: str = "default",
                   ready: bool | None = True, serving: bool | None = True,
                   terminating: bool | None = False, node_name: str = "", zone: str = "",
                   hostname: str = "") -> dict:
    e: dict[str, Any] = {"addresses": [ip], "conditions": {}}
    for k, v in (("ready", ready), ("serving", serving), ("terminating", terminating)):
        if v is not None:
            e["conditions"][k] = v
    if pod_name:
        e["targetRef"] = {"kind": "Pod", "name": pod_name, "namespace": namespace,
                          "uid": f"uid-{namespace}-{pod_name}"}
    if node_name:
        e["nodeName"] = node_name
    if zone:
        e["zone"] = zone
    if hostname:
        e["hostname"] = hostname
    return e


def ingress(name: str, namespace: str, rules: list[tuple[str, list[str] | None]],
            tls_hosts: list[list[str]] | None = None, class_name: str | None = None,
            labels: dict | None = None, annotations: dict | None = None) -> dict:
    spec: dict[str, Any] = {"rules": []}
    for host, paths in rules:
        rule: dict[str, Any] = {}
        if host:
            rule["host"] = host
        if paths is not None:
            rule["http"] = {"paths": [{**({"path": p} if p else {}), "pathType": "Prefix",
                                       "backend": {"service": {"name": "web",
                                                               "port": {"number": 80}}}}
                                      for p in paths]}
        spec["rules"].append(rule)
    if tls_hosts:
        spec["tls"] = [{"hosts": hosts, "secretName": f"tls-{i}"}
                       for i, hosts in enumerate(tls_hosts)]
    if class_name is not None:
        spec["ingressClassName"] = class_name
    return {"kind": "Ingress",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {},
                         "annotations": annotations or {}},
            "spec": spec}


def sample_cluster(api: FakeKube) -> None:
    """The fixtures of the differential tests: every case the issue lists."""
    api.put(node("node-1", "192.168.0.1", labels={"kubernetes.io/hostname": "node-1",
                                                  "topology.kubernetes.io/zone": "z1"},
                 annotations={"node.alpha.kubernetes.io/ttl": "0"}, provider_id="kind://n1"))
    api.put(node("node-2", "192.168.0.2", labels={"kubernetes.io/hostname": "node-2"},
                 addresses=[("ExternalIP", "203.0.113.2"), ("Hostname", "node-2"),
                            ("InternalDNS", "node-2.internal")]))
    api.put(node("node-3", "", addresses=[("Hostname", "node-3")], kubelet_port=10255))
    api.put(pod("web-1", ip="10.0.1.1", node_name="node-1",
                containers=[container("web", [("http", 8080), ("", 9090)]),
                            container("sidecar", [("metrics", 9100)], image="example/side:2")],
                init_containers=[container("init", [("init-port", 7070)], image="busybox"),
                                 container("init2", image="busybox")],
                labels={"app": "web", "app.kubernetes.io/name": "web"},
                annotations={"prometheus.io/scrape": "true", "prometheus.io/port": "8080"},
                owner=("ReplicaSet", "web-5d8f")))
    api.put(pod("web-2", ip="10.0.1.2", node_name="node-2", ready=False,
                containers=[container("web", [("http", 8080), ("", 9090)])],
                labels={"app": "web"}, owner=("ReplicaSet", "web-5d8f")))
    api.put(pod("noports", ip="10.0.1.3", node_name="node-1",
                containers=[container("a"), container("b", image="example/b:3")],
                owner=("DaemonSet", "agent")))
    api.put(pod("db-0", ip="10.0.1.4", node_name="node-2", owner=("StatefulSet", "db"),
                containers=[container("db", [("sql", 5432)], protocol="TCP")],
                labels={"app": "db"}))
    api.put(pod("cron-1", ip="10.0.1.5", node_name="node-1", owner=("Job", "cron-28400"),
                phase="Succeeded", ready=False, containers=[container("job")]))
    api.put(pod("hostnet", ip="192.168.0.1", node_name="node-1", host_network=True,
                containers=[container("exporter", [("metrics", 9100)])],
                annotations={"prometheus.io/scrape": "true"}))
    api.put(pod("pending", ip="", node_name="", phase="Pending", ready=None))
    api.put(pod("bare", ip="10.0.1.6", namespace="kube-system", node_name="node-3",
                ready=None, containers=[container("x", [("udp", 53)], protocol="UDP")]))
    # Two containers with the same port number (TCP and UDP): endpoints take the last.
    api.put(pod("coredns", namespace="kube-system", ip="10.0.1.8", node_name="node-2",
                containers=[container("dns-tcp", [("dns-tcp", 53)], protocol="TCP"),
                            container("dns-udp", [("dns", 53)], protocol="UDP")],
                owner=("ReplicaSet", "coredns-1")))
    api.put(endpoints("dns", "kube-system", [
        {"addresses": [ep_address("10.0.1.8", "coredns", namespace="kube-system",
                                  node_name="node-2")],
         "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}]))
    api.put(service("web", ports=[("http", 80), ("metrics", 9090)],
                    labels={"app": "web"}, annotations={"prometheus.io/probe": "true"}))
    api.put(service("db", cluster_ip="None", ports=[("sql", 5432)], labels={"app": "db"}))
    api.put(service("ext", type_="ExternalName", external_name="db.example.com",
                    ports=[("", 443)]))
    api.put(service("np", type_="NodePort", cluster_ip="10.96.0.11", ports=[("web", 8080)]))
    api.put(service("lb", type_="LoadBalancer", cluster_ip="10.96.0.12", ports=[("", 80)]))
    api.put(service("dns", namespace="kube-system", cluster_ip="10.96.0.53",
                    ports=[("dns", 53)]))
    api.put(endpoints("web", "default", [
        {"addresses": [ep_address("10.0.1.1", "web-1", node_name="node-1")],
         "notReadyAddresses": [ep_address("10.0.1.2", "web-2", node_name="node-2")],
         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                   {"name": "metrics", "port": 9090, "protocol": "TCP"}]}],
        labels={"app": "web"}, annotations={"endpoints.kubernetes.io/last-change": "x"}))
    api.put(endpoints("db", "default", [
        {"addresses": [ep_address("10.0.1.4", "db-0", node_name="node-2", hostname="db-0")],
         "ports": [{"name": "sql", "port": 5432, "protocol": "TCP"}]}]))
    api.put(endpoints("external", "default", [
        {"addresses": [{"ip": "198.51.100.7"}],
         "ports": [{"port": 443, "protocol": "TCP"}]}]))
    api.put(endpoints("kubelet", "kube-system", [
        {"addresses": [ep_address("192.168.0.1", "node-1", namespace="", kind="Node")],
         "ports": [{"name": "https-metrics", "port": 10250, "protocol": "TCP"}]}]))
    api.put(endpointslice("web-abc", "default", "web", [
        slice_endpoint("10.0.1.1", "web-1", node_name="node-1", zone="z1"),
        slice_endpoint("10.0.1.2", "web-2", ready=False, serving=False, terminating=True,
                       node_name="node-2", zone="z2"),
    ], [("http", 8080), ("metrics", 9090)], annotations={"note": "x"}, app_protocol="http"))
    api.put(endpointslice("db-xyz", "default", "db", [
        slice_endpoint("10.0.1.4", "db-0", node_name="node-2", hostname="db-0",
                       ready=None, serving=None, terminating=None)], [("sql", 5432)]))
    v6 = slice_endpoint("fd00::7", zone="z3")
    v6["deprecatedTopology"] = {"kubernetes.io/hostname": "node-1",
                                "topology.kubernetes.io/zone": "z3"}
    api.put(endpointslice("web-v6", "default", "web", [v6], [("http", 8080)],
                          address_type="IPv6"))
    api.put(endpointslice("orphan", "default", "", [
        slice_endpoint("198.51.100.8")], [("", 80)], labels={"team": "x"}))
    api.put(ingress("web", "default", [("web.example.com", ["/", "/api"]),
                                       ("admin.example.com", [""]),
                                       ("other.example.org", None)],
                    tls_hosts=[["*.example.com"]], class_name="nginx",
                    labels={"app": "web"}, annotations={"kubernetes.io/ingress.class": "nginx"}))
    api.put(ingress("plain", "kube-system", [("", ["/x"])]))
