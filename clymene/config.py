"""Prometheus-compatible configuration: the YAML model, strict validation, clear errors.

The file format is Prometheus 2.42's (config/config.go, common/config/http_config.go,
discovery/file, discovery/kubernetes): the same field names, defaults and validation
rules, so a Prometheus user's file loads unchanged. Differences, all deliberate:

- `global` also takes the per-job limits of later Prometheus versions (body_size_limit,
  sample_limit, label_limit, label_name_length_limit, label_value_length_limit,
  target_limit); a job inherits them when its own value is 0.
- `scheme` must be http or https, a remote_write `url` must be an http(s) URL, a
  `refresh_interval` must be > 0 and `tls_config` cert_file/key_file come in pairs
  (Prometheus 2.42 only fails on these later, at run time).
- `oauth2`, `sigv4` and service discoveries other than static, file and kubernetes are
  refused ("not supported by clymene"), since a job that silently discovers nothing or
  scrapes without its credentials is worse than a clear error.
- `rule_files`, `alerting`, `remote_read`, `storage` and `tracing` are accepted and
  ignored; `Config.warnings` says so.

Every error is a `ConfigError` whose message starts with `source:line:` and names the
key path, e.g. `clymene.yml:12: scrape_configs[0].scrape_interval: invalid duration "5x"`.
Lines come from PyYAML's composer (each node carries its start mark). Durations are float
seconds, sizes int bytes. Environment variables are not expanded (nor are they by
Prometheus without a flag).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from clymene.relabel import RelabelConfigError, compile_rules

if TYPE_CHECKING:
    from clymene.relabel import Rule

__all__ = [
    "Authorization",
    "AttachMetadataConfig",
    "BasicAuth",
    "Config",
    "ConfigError",
    "FileSDConfig",
    "GlobalConfig",
    "HTTPClientConfig",
    "KubernetesSDConfig",
    "MetadataConfig",
    "NamespaceDiscovery",
    "QueueConfig",
    "RemoteWriteConfig",
    "ScrapeConfig",
    "SelectorConfig",
    "StaticConfig",
    "TLSConfig",
    "format_duration",
    "load_file",
    "load_string",
    "parse_duration",
    "parse_size",
    "summary",
]


class ConfigError(ValueError):
    """A configuration file is invalid; the message is `source:line: key.path: reason`."""

    def __init__(self, source: str, line: int, path: str, reason: str) -> None:
        self.source = source
        self.line = line
        self.path = path
        self.reason = reason
        where = f"{source}:{line}:"
        super().__init__(f"{where} {path}: {reason}" if path else f"{where} {reason}")


# ---------------------------------------------------------------------------
# The model (frozen; durations in seconds, sizes in bytes)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TLSConfig:
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""
    insecure_skip_verify: bool = False
    min_version: str = ""  # "" or TLS10 / TLS11 / TLS12 / TLS13
    max_version: str = ""


@dataclass(frozen=True)
class BasicAuth:
    username: str = ""
    password: str = ""
    password_file: str = ""


@dataclass(frozen=True)
class Authorization:
    type: str = "Bearer"
    credentials: str = ""
    credentials_file: str = ""


@dataclass(frozen=True)
class HTTPClientConfig:
    """The HTTP client fields Prometheus inlines into scrape, SD and remote configs.

    The legacy `bearer_token` / `bearer_token_file` are turned into `authorization`
    (type Bearer), exactly as Prometheus' HTTPClientConfig.Validate does.
    """

    basic_auth: BasicAuth | None = None
    authorization: Authorization | None = None
    tls_config: TLSConfig = field(default_factory=TLSConfig)
    proxy_url: str = ""
    proxy_connect_header: dict[str, tuple[str, ...]] = field(default_factory=dict)
    follow_redirects: bool = True
    enable_http2: bool = True


class _HTTPClientFields:
    """The HTTP client fields readable on the config that inlines them, as in the YAML
    (`job.tls_config` is `job.http_client.tls_config`)."""

    http_client: HTTPClientConfig

    @property
    def basic_auth(self) -> BasicAuth | None:
        return self.http_client.basic_auth

    @property
    def authorization(self) -> Authorization | None:
        return self.http_client.authorization

    @property
    def tls_config(self) -> TLSConfig:
        return self.http_client.tls_config

    @property
    def proxy_url(self) -> str:
        return self.http_client.proxy_url

    @property
    def proxy_connect_header(self) -> dict[str, tuple[str, ...]]:
        return self.http_client.proxy_connect_header

    @property
    def follow_redirects(self) -> bool:
        return self.http_client.follow_redirects

    @property
    def enable_http2(self) -> bool:
        return self.http_client.enable_http2


@dataclass(frozen=True)
class StaticConfig:
    targets: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FileSDConfig:
    files: tuple[str, ...] = ()  # globs, relative ones joined to the config's directory
    refresh_interval: float = 300.0


@dataclass(frozen=True)
class NamespaceDiscovery:
    names: tuple[str, ...] = ()
    own_namespace: bool = False


@dataclass(frozen=True)
class SelectorConfig:
    role: str = ""
    label: str = ""
    field: str = ""


@dataclass(frozen=True)
class AttachMetadataConfig:
    node: bool = False


@dataclass(frozen=True)
class KubernetesSDConfig(_HTTPClientFields):
    role: str
    api_server: str = ""
    kubeconfig_file: str = ""
    http_client: HTTPClientConfig = field(default_factory=HTTPClientConfig)
    namespaces: NamespaceDiscovery = field(default_factory=NamespaceDiscovery)
    selectors: tuple[SelectorConfig, ...] = ()
    attach_metadata: AttachMetadataConfig = field(default_factory=AttachMetadataConfig)


@dataclass(frozen=True)
class GlobalConfig:
    scrape_interval: float = 60.0
    scrape_timeout: float = 10.0
    evaluation_interval: float = 60.0
    external_labels: dict[str, str] = field(default_factory=dict)  # sorted by name
    query_log_file: str = ""
    body_size_limit: int = 0
    sample_limit: int = 0
    target_limit: int = 0
    label_limit: int = 0
    label_name_length_limit: int = 0
    label_value_length_limit: int = 0


@dataclass(frozen=True)
class ScrapeConfig(_HTTPClientFields):
    job_name: str
    scrape_interval: float
    scrape_timeout: float
    metrics_path: str = "/metrics"
    scheme: str = "http"
    params: dict[str, tuple[str, ...]] = field(default_factory=dict)
    honor_labels: bool = False
    honor_timestamps: bool = True
    http_client: HTTPClientConfig = field(default_factory=HTTPClientConfig)
    body_size_limit: int = 0  # 0 (or less): no limit, as in Prometheus
    sample_limit: int = 0
    target_limit: int = 0
    label_limit: int = 0
    label_name_length_limit: int = 0
    label_value_length_limit: int = 0
    static_configs: tuple[StaticConfig, ...] = ()
    file_sd_configs: tuple[FileSDConfig, ...] = ()
    kubernetes_sd_configs: tuple[KubernetesSDConfig, ...] = ()
    relabel_configs: tuple[Rule, ...] = ()  # compiled by clymene.relabel.compile_rules
    metric_relabel_configs: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class QueueConfig:
    # Prometheus 2.42's DefaultQueueConfig.
    capacity: int = 2500
    max_shards: int = 200
    min_shards: int = 1
    max_samples_per_send: int = 500
    batch_send_deadline: float = 5.0
    min_backoff: float = 0.03
    max_backoff: float = 5.0
    retry_on_http_429: bool = False


@dataclass(frozen=True)
class MetadataConfig:
    send: bool = True
    send_interval: float = 60.0
    max_samples_per_send: int = 500


@dataclass(frozen=True)
class RemoteWriteConfig(_HTTPClientFields):
    url: str
    name: str = ""
    remote_timeout: float = 30.0
    headers: dict[str, str] = field(default_factory=dict)
    write_relabel_configs: tuple[Rule, ...] = ()
    send_exemplars: bool = False
    send_native_histograms: bool = False
    http_client: HTTPClientConfig = field(default_factory=HTTPClientConfig)
    queue_config: QueueConfig = field(default_factory=QueueConfig)
    metadata_config: MetadataConfig = field(default_factory=MetadataConfig)


@dataclass(frozen=True)
class Config:
    source: str = ""
    global_config: GlobalConfig = field(default_factory=GlobalConfig)
    scrape_configs: tuple[ScrapeConfig, ...] = ()
    remote_write: tuple[RemoteWriteConfig, ...] = ()
    warnings: tuple[str, ...] = ()  # `source:line: key: ...` for accepted-but-ignored sections

    def job(self, name: str) -> ScrapeConfig | None:
        for sc in self.scrape_configs:
            if sc.job_name == name:
                return sc
        return None


# ---------------------------------------------------------------------------
# Durations (model.ParseDuration) and sizes (units.ParseBase2Bytes)
# ---------------------------------------------------------------------------

_DURATION_RE = re.compile(
    r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?"
    r"(?:([0-9]+)s)?(?:([0-9]+)ms)?"
)
_DURATION_MS = (
    365 * 24 * 3600 * 1000,
    7 * 24 * 3600 * 1000,
    24 * 3600 * 1000,
    3600 * 1000,
    60 * 1000,
    1000,
    1,
)
_MAX_NS = (1 << 63) - 1  # Go's time.Duration range


def parse_duration(text: str) -> float:
    """Prometheus' model.ParseDuration: `1h30m`, `15s`, `500ms`, `0`; no fractions, no sign.

    Returns seconds; raises ValueError.
    """
    if text == "0":
        return 0.0
    if text == "":
        raise ValueError("empty duration string")
    m = _DURATION_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"not a valid duration string: {text!r}")
    ms = 0
    for group, mult in zip(m.groups(), _DURATION_MS, strict=True):
        if group:
            ms += int(group) * mult
    if ms * 1_000_000 > _MAX_NS:
        raise ValueError("duration out of range")
    return ms / 1000.0


def format_duration(seconds: float) -> str:
    """Prometheus' model.Duration.String(): 90 -> "1m30s", 86400 -> "1d", 0 -> "0s"."""
    ms = int(round(seconds * 1000))
    if ms == 0:
        return "0s"
    out = []
    for unit, mult, exact in (
        ("y", _DURATION_MS[0], True),
        ("w", _DURATION_MS[1], True),
        ("d", _DURATION_MS[2], False),
        ("h", _DURATION_MS[3], False),
        ("m", _DURATION_MS[4], False),
        ("s", _DURATION_MS[5], False),
        ("ms", 1, False),
    ):
        if exact and ms % mult:
            continue
        v = ms // mult
        if v > 0:
            out.append(f"{v}{unit}")
            ms -= v * mult
    return "".join(out)


_IEC_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
              "PiB": 1 << 50, "EiB": 1 << 60}
_OLD_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40,
              "PB": 1 << 50, "EB": 1 << 60}
_SIZE_ELEM_RE = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")


def _parse_units(text: str, units: dict[str, int]) -> int:
    # alecthomas/units ParseUnit: [-+]?([0-9]*(\.[0-9]*)?[a-zA-Z]+)+, elements summed.
    s = text
    neg = False
    if s[:1] in ("-", "+"):
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise ValueError(f"units: invalid {text}")
    total = 0.0
    while s:
        if not (s[0] == "." or s[0].isdigit()):
            raise ValueError(f"units: invalid {text}")
        m = _SIZE_ELEM_RE.match(s)
        assert m is not None  # the pattern matches any string
        whole, frac, unit = m.group(1), m.group(2), m.group(3)
        if not whole and not frac:
            raise ValueError(f"units: invalid {text}")
        value = float(int(whole)) if whole else 0.0
        if frac:
            value += int(frac) / 10 ** len(frac)
        if unit not in units:
            raise ValueError(f"units: unknown unit {unit} in {text}")
        total += value * units[unit]
        s = s[m.end():]
    if neg:
        total = -total
    if total < -(2.0**63) or total >= 2.0**63:
        raise ValueError("units: overflow parsing unit")
    return int(total)


def parse_size(text: str) -> int:
    """Prometheus' units.Base2Bytes: `10MB`, `512KiB`, `1.5GB`, `0`; KB = KiB = 1024.

    Returns bytes; raises ValueError. A bare number other than 0 is invalid, as in
    Prometheus.
    """
    try:
        return _parse_units(text, _IEC_UNITS)
    except ValueError:
        return _parse_units(text, _OLD_UNITS)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load_file(path: str | os.PathLike[str]) -> Config:
    """Load and validate a configuration file; relative paths in it resolve against its
    directory, like Prometheus."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ConfigError(source, 0, "", f"cannot read config file: not UTF-8 ({e.reason})") from e
    except OSError as e:
        raise ConfigError(source, 0, "", f"cannot read config file: {e.strerror or e}") from e
    return load_string(text, source, os.path.dirname(os.path.abspath(source)))


def load_string(text: str, source: str, base_dir: str | None = None) -> Config:
    """Load and validate configuration text; `source` names it in errors. Relative file
    paths are joined to `base_dir` when given, else left as written."""
    try:
        loader = yaml.SafeLoader(text)  # checks the characters already
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 0
        reason = e.problem or e.context or "syntax error"
        if e.context == "expected a single document in the stream":
            reason = "expected a single document, found another"
        raise ConfigError(source, line, "", f"invalid YAML: {reason}") from e
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        raise ConfigError(source, line, "", f"invalid YAML: {e.reason}") from e
    except yaml.YAMLError as e:
        raise ConfigError(source, 0, "", f"invalid YAML: {e}") from e
    try:
        return _Parser(loader, source, base_dir).config(root)
    finally:
        loader.dispose()


def summary(config: Config) -> str:
    """A short human summary for `clymene check config`."""
    jobs = config.scrape_configs
    lines = [
        f"{config.source}: {len(jobs)} job{'s' if len(jobs) != 1 else ''}, "
        f"{len(config.remote_write)} remote_write"
    ]
    for sc in jobs:
        ntargets = sum(len(s.targets) for s in sc.static_configs)
        parts = [
            f"every {format_duration(sc.scrape_interval)} "
            f"(timeout {format_duration(sc.scrape_timeout)})",
            f"{ntargets} static target{'s' if ntargets != 1 else ''}",
        ]
        files = [f for fs in sc.file_sd_configs for f in fs.files]
        if files:
            parts.append("file_sd: " + ", ".join(files))
        if sc.kubernetes_sd_configs:
            parts.append("kubernetes_sd: " + ", ".join(k.role for k in sc.kubernetes_sd_configs))
        lines.append(f"  job {_quote(sc.job_name)}: " + ", ".join(parts))
    for rw in config.remote_write:
        lines.append(f"  remote_write {rw.name or rw.url}")
    for w in config.warnings:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# The parser: walks composed YAML nodes, so every error knows its line
# ---------------------------------------------------------------------------

_NULL_TAG = "tag:yaml.org,2002:null"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_MERGE_TAG = "tag:yaml.org,2002:merge"

_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_FILE_SD_RE = re.compile(r"[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)")
_RULE_PATH_RE = re.compile(r"[^*]*(\*[^/]*)?")
_TLS_VERSIONS = ("TLS10", "TLS11", "TLS12", "TLS13")
_K8S_ROLES = ("pod", "service", "endpoints", "endpointslice", "node", "ingress")
_K8S_ALLOWED_SELECTORS = {
    "pod": ("pod",),
    "service": ("service",),
    "endpointslice": ("pod", "service", "endpointslice"),
    "endpoints": ("pod", "service", "endpoints"),
    "node": ("node",),
    "ingress": ("ingress",),
}
# Prometheus 2.42's reservedHeaders for remote write (authorization is checked apart).
_RESERVED_HEADERS = frozenset({
    "host", "content-encoding", "content-length", "content-type", "user-agent",
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "www-authenticate", "accept-encoding", "x-prometheus-remote-write-version",
    "x-prometheus-remote-read-version", "x-amz-date", "x-amz-security-token",
    "x-amz-content-sha256",
})

_HTTP_CLIENT_KEYS = frozenset({
    "basic_auth", "authorization", "oauth2", "bearer_token", "bearer_token_file",
    "tls_config", "proxy_url", "proxy_connect_header", "follow_redirects", "enable_http2",
})
_GLOBAL_KEYS = frozenset({
    "scrape_interval", "scrape_timeout", "evaluation_interval", "external_labels",
    "query_log_file", "body_size_limit", "sample_limit", "target_limit", "label_limit",
    "label_name_length_limit", "label_value_length_limit",
})
_LIMIT_KEYS = ("sample_limit", "target_limit", "label_limit", "label_name_length_limit",
               "label_value_length_limit")
_SCRAPE_KEYS = _HTTP_CLIENT_KEYS | frozenset({
    "job_name", "honor_labels", "honor_timestamps", "params", "scrape_interval",
    "scrape_timeout", "metrics_path", "scheme", "body_size_limit", *_LIMIT_KEYS,
    "static_configs", "file_sd_configs", "kubernetes_sd_configs", "relabel_configs",
    "metric_relabel_configs",
})
# Service discoveries of Prometheus 2.42 that clymene does not implement.
_UNSUPPORTED_SD = (
    "azure_sd_configs", "consul_sd_configs", "digitalocean_sd_configs", "docker_sd_configs",
    "dockerswarm_sd_configs", "dns_sd_configs", "ec2_sd_configs", "eureka_sd_configs",
    "gce_sd_configs", "hetzner_sd_configs", "http_sd_configs", "ionos_sd_configs",
    "kuma_sd_configs", "lightsail_sd_configs", "linode_sd_configs", "marathon_sd_configs",
    "nerve_sd_configs", "nomad_sd_configs", "openstack_sd_configs", "ovhcloud_sd_configs",
    "puppetdb_sd_configs", "scaleway_sd_configs", "serverset_sd_configs",
    "triton_sd_configs", "uyuni_sd_configs", "vultr_sd_configs",
)
_OAUTH2_REFUSED = "not supported by clymene (use authorization or basic_auth)"
_SCRAPE_REFUSED = {"oauth2": _OAUTH2_REFUSED} | {
    k: "not supported by clymene (supported: static_configs, file_sd_configs, "
       "kubernetes_sd_configs)"
    for k in _UNSUPPORTED_SD
}
_TOP_KEYS = frozenset({
    "global", "scrape_configs", "remote_write", "rule_files", "alerting", "remote_read",
    "storage", "tracing",
})
_IGNORED_TOP = {
    "rule_files": "ignored: clymene does not evaluate rules",
    "alerting": "ignored: clymene does not send alerts",
    "remote_read": "ignored: clymene does not serve queries",
    "storage": "ignored: clymene has no local TSDB",
    "tracing": "ignored: clymene does not export traces",
}

Entries = dict[str, tuple[Node, Node]]  # key -> (key node, value node)


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL_TAG:
        return "null"
    return _quote(node.value) if node.tag == "tag:yaml.org,2002:str" else node.value


def _key(node: Node) -> Any:
    # Scalar keys by their text; other keys (refused later) by identity.
    return node.value if isinstance(node, ScalarNode) else id(node)


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL_TAG


def _join_dir(base_dir: str | None, path: str) -> str:
    # Prometheus' config.JoinDir: absolute and empty paths are kept.
    if not path or base_dir is None or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base_dir, path))


class _Parser:
    def __init__(self, loader: yaml.SafeLoader, source: str, base_dir: str | None) -> None:
        self.loader = loader
        self.source = source
        self.base_dir = base_dir
        self.warnings: list[str] = []

    def error(self, node: Node, path: str, reason: str) -> ConfigError:
        return ConfigError(self.source, _line(node), path, reason)

    # -- generic shapes ---------------------------------------------------------------

    def pairs(self, node: MappingNode, path: str) -> list[tuple[Node, Node]]:
        """The key/value pairs of a mapping with YAML merge keys (<<) resolved as go-yaml
        v2 does: pairs apply in order and a later one overrides an earlier one (a merge
        included); among the maps of one merge, the earlier wins. Repeating a key of
        the mapping itself is an error. Nodes are not modified (an alias may be read twice)."""
        out: dict[Any, tuple[Node, Node]] = {}
        own: set[Any] = set()
        for knode, vnode in node.value:
            if knode.tag == _MERGE_TAG:
                sources = vnode.value if isinstance(vnode, SequenceNode) else [vnode]
                merged: dict[Any, tuple[Node, Node]] = {}
                for src in sources:
                    if not isinstance(src, MappingNode):
                        raise self.error(src, path, "a merge key (<<) takes a mapping or a list "
                                         f"of mappings, got {_kind(src)}")
                    for pk, pv in self.pairs(src, path):
                        merged.setdefault(_key(pk), (pk, pv))
                for k, pair in merged.items():
                    out.pop(k, None)
                    out[k] = pair
                continue
            k = _key(knode)
            if k in own:
                raise self.error(knode, _join(path, str(knode.value)), "key given more than once")
            own.add(k)
            out.pop(k, None)
            out[k] = (knode, vnode)
        return list(out.values())

    def mapping(self, node: Node, path: str, allowed: frozenset[str],
                refused: dict[str, str] | None = None) -> Entries:
        """The entries of a mapping; unknown, refused and repeated keys are errors.
        A null node is an empty mapping (Go's zero value)."""
        if _is_null(node):
            return {}
        if not isinstance(node, MappingNode):
            raise self.error(node, path, f"expected a mapping, got {_kind(node)}")
        out: Entries = {}
        for knode, vnode in self.pairs(node, path):
            if not isinstance(knode, ScalarNode):
                raise self.error(knode, path, f"expected a string key, got {_kind(knode)}")
            key = knode.value
            kpath = _join(path, key)
            if key in out:
                raise self.error(knode, kpath, "key given more than once")
            if refused and key in refused:
                raise self.error(knode, kpath, refused[key])
            if key not in allowed:
                raise self.error(knode, kpath, "unknown field")
            out[key] = (knode, vnode)
        return out

    def sequence(self, node: Node, path: str) -> list[Node]:
        if _is_null(node):
            return []
        if not isinstance(node, SequenceNode):
            raise self.error(node, path, f"expected a list, got {_kind(node)}")
        return list(node.value)

    def string(self, node: Node, path: str) -> str:
        # go-yaml decodes any scalar into a string field as its text (job_name: 5 -> "5").
        if not isinstance(node, ScalarNode):
            raise self.error(node, path, f"expected a string, got {_kind(node)}")
        return "" if node.tag == _NULL_TAG else node.value

    def boolean(self, node: Node, path: str) -> bool:
        if isinstance(node, ScalarNode):
            if node.tag == _NULL_TAG:
                return False
            if node.tag == _BOOL_TAG:
                return bool(self.loader.construct_yaml_bool(node))
        raise self.error(node, path, f"expected true or false, got {_kind(node)}")

    def uint(self, node: Node, path: str) -> int:
        if isinstance(node, ScalarNode):
            if node.tag == _NULL_TAG:
                return 0
            value: Any = None
            if node.tag == _INT_TAG:
                value = self.loader.construct_yaml_int(node)
            elif node.tag == _FLOAT_TAG:  # go-yaml takes 5.0 for an integer
                f = self.loader.construct_yaml_float(node)
                if f == f and f not in (float("inf"), float("-inf")) and f == int(f):
                    value = int(f)
            if value is not None and value >= 0:
                return value
        raise self.error(node, path, f"expected a non-negative integer, got {_kind(node)}")

    def duration(self, node: Node, path: str) -> float:
        text = self.string(node, path)
        if _is_null(node):
            return 0.0
        try:
            return parse_duration(text)
        except ValueError as e:
            reason = f"invalid duration {_quote(text)}"
            if str(e) == "duration out of range":
                reason += ": out of range"
            raise self.error(node, path, reason) from None

    def size(self, node: Node, path: str) -> int:
        text = self.string(node, path)
        if _is_null(node):
            return 0
        try:
            return parse_size(text)
        except ValueError as e:
            detail = "out of range" if "overflow" in str(e) else \
                "a number and a unit: B, KB, MB, GB, TB, PB, EB (1024-based), or KiB, MiB, ..."
            raise self.error(node, path, f"invalid size {_quote(text)} ({detail})") from None

    def string_list(self, node: Node, path: str) -> tuple[str, ...]:
        return tuple(self.string(item, f"{path}[{i}]")
                     for i, item in enumerate(self.sequence(node, path)))

    def string_map(self, node: Node, path: str) -> dict[str, tuple[str, Node]]:
        """name -> (value, key node) of a mapping of scalars."""
        return {name: (self.string(vnode, _join(path, name)), knode)
                for name, (knode, vnode) in self.keyed(node, path).items()}

    def label_set(self, node: Node, path: str) -> dict[str, str]:
        labels = {}
        for name, (value, knode) in self.string_map(node, path).items():
            if not _LABEL_NAME_RE.fullmatch(name):
                raise self.error(knode, path, f"{_quote(name)} is not a valid label name")
            labels[name] = value
        return dict(sorted(labels.items()))

    def path_value(self, e: Entries, key: str, path: str) -> str:
        if key not in e:
            return ""
        return _join_dir(self.base_dir, self.string(e[key][1], _join(path, key)))

    @staticmethod
    def get(e: Entries, key: str, conv: Callable[[Node, str], Any], path: str,
            default: Any) -> Any:
        if key not in e:
            return default
        return conv(e[key][1], _join(path, key))

    # -- sections ---------------------------------------------------------------------

    def config(self, root: Node | None) -> Config:
        if root is None or _is_null(root):
            return Config(source=self.source)
        e = self.mapping(root, "", _TOP_KEYS)
        glob = self.global_config(e["global"][1]) if "global" in e else GlobalConfig()

        for key, (knode, vnode) in e.items():
            if key in _IGNORED_TOP:
                self.ignored_section(key, vnode)
                self.warnings.append(f"{self.source}:{_line(knode)}: {key}: {_IGNORED_TOP[key]}")

        jobs: list[ScrapeConfig] = []
        if "scrape_configs" in e:
            first_line: dict[str, int] = {}
            for i, item in enumerate(self.sequence(e["scrape_configs"][1], "scrape_configs")):
                path = f"scrape_configs[{i}]"
                sc, name_node = self.scrape_config(item, path, glob)
                if sc.job_name in first_line:
                    raise self.error(
                        name_node, f"{path}.job_name",
                        f"found multiple scrape configs with job name {_quote(sc.job_name)} "
                        f"(first at line {first_line[sc.job_name]})")
                first_line[sc.job_name] = _line(name_node)
                jobs.append(sc)

        writes: list[RemoteWriteConfig] = []
        if "remote_write" in e:
            names: dict[str, int] = {}
            for i, item in enumerate(self.sequence(e["remote_write"][1], "remote_write")):
                path = f"remote_write[{i}]"
                rw = self.remote_write(item, path)
                if rw.name:
                    name_node = next(v for k, v in self.pairs(item, path) if k.value == "name")
                    if rw.name in names:
                        raise self.error(
                            name_node, f"{path}.name",
                            f"found multiple remote write configs with name {_quote(rw.name)} "
                            f"(first at line {names[rw.name]})")
                    names[rw.name] = _line(name_node)
                writes.append(rw)

        return Config(source=self.source, global_config=glob, scrape_configs=tuple(jobs),
                      remote_write=tuple(writes), warnings=tuple(self.warnings))

    def ignored_section(self, key: str, node: Node) -> None:
        # Ignored sections are checked for shape only, not field by field.
        if key == "rule_files":
            for i, item in enumerate(self.sequence(node, key)):
                value = self.string(item, f"{key}[{i}]")
                if not _RULE_PATH_RE.fullmatch(value):
                    raise self.error(item, f"{key}[{i}]", f"invalid rule file path {_quote(value)}")
        elif key == "remote_read":
            for i, item in enumerate(self.sequence(node, key)):
                if _is_null(item):
                    raise self.error(item, f"{key}[{i}]", "empty or null remote read config section")
                if not isinstance(item, MappingNode):
                    raise self.error(item, f"{key}[{i}]", f"expected a mapping, got {_kind(item)}")
        elif not _is_null(node) and not isinstance(node, MappingNode):
            raise self.error(node, key, f"expected a mapping, got {_kind(node)}")

    def global_config(self, node: Node) -> GlobalConfig:
        p = "global"
        e = self.mapping(node, p, _GLOBAL_KEYS)
        interval = self.get(e, "scrape_interval", self.duration, p, 0.0)
        timeout = self.get(e, "scrape_timeout", self.duration, p, 0.0)
        evaluation = self.get(e, "evaluation_interval", self.duration, p, 0.0)
        # Zero means "not set", as in Prometheus' GlobalConfig.UnmarshalYAML.
        if interval == 0:
            interval = GlobalConfig.scrape_interval
        if timeout > interval:
            raise self.error(e["scrape_timeout"][1], f"{p}.scrape_timeout",
                             "global scrape timeout greater than scrape interval "
                             f"({format_duration(timeout)} > {format_duration(interval)})")
        if timeout == 0:
            timeout = min(GlobalConfig.scrape_timeout, interval)
        kwargs = {key: self.get(e, key, self.uint, p, 0) for key in _LIMIT_KEYS}
        return GlobalConfig(
            scrape_interval=interval,
            scrape_timeout=timeout,
            evaluation_interval=evaluation or GlobalConfig.evaluation_interval,
            external_labels=self.get(e, "external_labels", self.label_set, p, {}),
            query_log_file=self.path_value(e, "query_log_file", p),
            body_size_limit=self.get(e, "body_size_limit", self.size, p, 0),
            **kwargs,
        )

    def scrape_config(self, node: Node, path: str,
                      glob: GlobalConfig) -> tuple[ScrapeConfig, Node]:
        if _is_null(node):
            raise self.error(node, path, "empty or null scrape config section")
        e = self.mapping(node, path, _SCRAPE_KEYS, _SCRAPE_REFUSED)
        name_node = e["job_name"][1] if "job_name" in e else node
        job_name = self.get(e, "job_name", self.string, path, "")
        if not job_name:
            raise self.error(name_node, f"{path}.job_name", "job_name is empty")

        interval = self.get(e, "scrape_interval", self.duration, path, 0.0) \
            or glob.scrape_interval
        timeout = self.get(e, "scrape_timeout", self.duration, path, 0.0)
        if timeout > interval:
            raise self.error(e["scrape_timeout"][1], f"{path}.scrape_timeout",
                             "scrape timeout greater than scrape interval "
                             f"({format_duration(timeout)} > {format_duration(interval)})")
        if timeout == 0:
            timeout = min(glob.scrape_timeout, interval)

        scheme = self.get(e, "scheme", self.string, path, "http")
        if scheme not in ("http", "https"):
            raise self.error(e["scheme"][1], f"{path}.scheme",
                             f"invalid scheme {_quote(scheme)} (must be http or https)")

        params: dict[str, tuple[str, ...]] = {}
        if "params" in e:
            ppath = f"{path}.params"
            for name, (_, vnode) in self.keyed(e["params"][1], ppath).items():
                params[name] = self.string_list(vnode, _join(ppath, name))

        http_client = self.http_client(e, path, HTTPClientConfig())
        limits = {key: self.get(e, key, self.uint, path, 0) or getattr(glob, key)
                  for key in _LIMIT_KEYS}
        body_size_limit = self.get(e, "body_size_limit", self.size, path, 0) \
            or glob.body_size_limit

        relabel_configs = self.relabel(e, "relabel_configs", path,
                                       "empty or null target relabeling rule in scrape config")
        metric_relabel_configs = self.relabel(
            e, "metric_relabel_configs", path,
            "empty or null metric relabeling rule in scrape config")

        static_configs = tuple(
            self.static_config(item, f"{path}.static_configs[{i}]",
                               check_targets=not relabel_configs)
            for i, item in enumerate(self.get(e, "static_configs", self.sequence, path, [])))
        file_sd_configs = tuple(
            self.file_sd_config(item, f"{path}.file_sd_configs[{i}]")
            for i, item in enumerate(self.get(e, "file_sd_configs", self.sequence, path, [])))
        kubernetes_sd_configs = tuple(
            self.kubernetes_sd_config(item, f"{path}.kubernetes_sd_configs[{i}]")
            for i, item in enumerate(
                self.get(e, "kubernetes_sd_configs", self.sequence, path, [])))

        sc = ScrapeConfig(
            job_name=job_name,
            scrape_interval=interval,
            scrape_timeout=timeout,
            metrics_path=self.get(e, "metrics_path", self.string, path, "/metrics"),
            scheme=scheme,
            params=params,
            honor_labels=self.get(e, "honor_labels", self.boolean, path, False),
            honor_timestamps=self.get(e, "honor_timestamps", self.boolean, path, True),
            http_client=http_client,
            body_size_limit=body_size_limit,
            static_configs=static_configs,
            file_sd_configs=file_sd_configs,
            kubernetes_sd_configs=kubernetes_sd_configs,
            relabel_configs=relabel_configs,
            metric_relabel_configs=metric_relabel_configs,
            **limits,
        )
        return sc, name_node

    def keyed(self, node: Node, path: str) -> dict[str, tuple[Node, Node]]:
        """A mapping with free-form string keys: name -> (key node, value node)."""
        if _is_null(node):
            return {}
        if not isinstance(node, MappingNode):
            raise self.error(node, path, f"expected a mapping, got {_kind(node)}")
        out: dict[str, tuple[Node, Node]] = {}
        for knode, vnode in self.pairs(node, path):
            name = self.string(knode, path)
            if name in out:
                raise self.error(knode, _join(path, name), "key given more than once")
            out[name] = (knode, vnode)
        return out

    def static_config(self, node: Node, path: str, check_targets: bool) -> StaticConfig:
        if _is_null(node):
            raise self.error(node, path, "empty or null section in static_configs")
        e = self.mapping(node, path, frozenset({"targets", "labels"}))
        targets = self.get(e, "targets", self.string_list, path, ())
        if check_targets and "targets" in e:
            # Prometheus' CheckTargetAddress (only when the job has no relabel_configs).
            items = e["targets"][1].value
            for i, target in enumerate(targets):
                tpath = f"{path}.targets[{i}]"
                if "/" in target:
                    raise self.error(items[i], tpath, f"{_quote(target)} is not a valid "
                                     "hostname (a target is host:port, without scheme or path)")
                if target == "":
                    raise self.error(items[i], tpath, "no address")
        return StaticConfig(targets=targets,
                            labels=self.get(e, "labels", self.label_set, path, {}))

    def file_sd_config(self, node: Node, path: str) -> FileSDConfig:
        if _is_null(node):
            raise self.error(node, path, "empty or null section in file_sd_configs")
        e = self.mapping(node, path, frozenset({"files", "refresh_interval"}))
        files = self.get(e, "files", self.string_list, path, ())
        if not files:
            where = e["files"][1] if "files" in e else node
            raise self.error(where, f"{path}.files", "file service discovery config must "
                             "contain at least one path name")
        items = e["files"][1].value
        for i, name in enumerate(files):
            if not _FILE_SD_RE.fullmatch(name):
                raise self.error(items[i], f"{path}.files[{i}]",
                                 f"path name {_quote(name)} is not valid for file discovery "
                                 "(a glob only in the last path element, ending in .json, "
                                 ".yml or .yaml)")
        refresh = self.get(e, "refresh_interval", self.duration, path,
                           FileSDConfig.refresh_interval)
        if refresh <= 0:
            raise self.error(e["refresh_interval"][1], f"{path}.refresh_interval",
                             "must be greater than 0")
        return FileSDConfig(files=tuple(_join_dir(self.base_dir, f) for f in files),
                            refresh_interval=refresh)

    def kubernetes_sd_config(self, node: Node, path: str) -> KubernetesSDConfig:
        if _is_null(node):
            raise self.error(node, path, "empty or null section in kubernetes_sd_configs")
        keys = _HTTP_CLIENT_KEYS | frozenset({
            "api_server", "role", "kubeconfig_file", "namespaces", "selectors",
            "attach_metadata"})
        e = self.mapping(node, path, keys, {"oauth2": _OAUTH2_REFUSED})
        role = self.get(e, "role", self.string, path, "")
        if not role:
            raise self.error(e["role"][1] if "role" in e else node, f"{path}.role",
                             "role missing (one of: pod, service, endpoints, endpointslice, "
                             "node, ingress)")
        if role not in _K8S_ROLES:
            raise self.error(e["role"][1], f"{path}.role",
                             f"unknown Kubernetes SD role {_quote(role)}")
        http_client = self.http_client(e, path, HTTPClientConfig())

        api_server = self.get(e, "api_server", self.string, path, "")
        if api_server:
            self.check_url(e["api_server"][1], f"{path}.api_server", api_server)
        kubeconfig = self.path_value(e, "kubeconfig_file", path)

        ns = NamespaceDiscovery()
        if "namespaces" in e:
            npath = f"{path}.namespaces"
            ne = self.mapping(e["namespaces"][1], npath, frozenset({"names", "own_namespace"}))
            ns = NamespaceDiscovery(
                names=self.get(ne, "names", self.string_list, npath, ()),
                own_namespace=self.get(ne, "own_namespace", self.boolean, npath, False))
        attach = AttachMetadataConfig()
        if "attach_metadata" in e:
            apath = f"{path}.attach_metadata"
            ae = self.mapping(e["attach_metadata"][1], apath, frozenset({"node"}))
            attach = AttachMetadataConfig(node=self.get(ae, "node", self.boolean, apath, False))

        # The mutual exclusions of Prometheus' kubernetes.SDConfig.UnmarshalYAML.
        custom_http = http_client != HTTPClientConfig()
        if api_server and kubeconfig:
            raise self.error(e["kubeconfig_file"][0], f"{path}.kubeconfig_file",
                             "cannot use 'kubeconfig_file' and 'api_server' simultaneously")
        if kubeconfig and custom_http:
            raise self.error(e["kubeconfig_file"][0], f"{path}.kubeconfig_file",
                             "cannot use a custom HTTP client configuration together with "
                             "'kubeconfig_file'")
        if not api_server and custom_http:
            first = min((e[k][0] for k in _HTTP_CLIENT_KEYS if k in e), key=_line)
            raise self.error(first, _join(path, first.value),
                             "to use custom HTTP client configuration please provide the "
                             "'api_server' URL explicitly")
        if api_server and ns.own_namespace:
            raise self.error(e["namespaces"][1], f"{path}.namespaces.own_namespace",
                             "cannot use 'api_server' and 'namespaces.own_namespace' "
                             "simultaneously")
        if kubeconfig and ns.own_namespace:
            raise self.error(e["namespaces"][1], f"{path}.namespaces.own_namespace",
                             "cannot use 'kubeconfig_file' and 'namespaces.own_namespace' "
                             "simultaneously")

        selectors = []
        seen_roles: set[str] = set()
        for i, item in enumerate(self.get(e, "selectors", self.sequence, path, [])):
            spath = f"{path}.selectors[{i}]"
            se = self.mapping(item, spath, frozenset({"role", "label", "field"}))
            srole = self.get(se, "role", self.string, spath, "")
            if srole and srole not in _K8S_ROLES:
                raise self.error(se["role"][1], f"{spath}.role",
                                 f"unknown Kubernetes SD role {_quote(srole)}")
            rnode = se["role"][1] if "role" in se else item
            if srole in seen_roles:
                raise self.error(rnode, f"{spath}.role", f"duplicated selector role: {srole}")
            seen_roles.add(srole)
            allowed = _K8S_ALLOWED_SELECTORS[role]
            if srole not in allowed:
                raise self.error(rnode, f"{spath}.role",
                                 f"{role} role supports only {', '.join(allowed)} selectors")
            sel = SelectorConfig(role=srole,
                                 label=self.get(se, "label", self.string, spath, ""),
                                 field=self.get(se, "field", self.string, spath, ""))
            reason = _check_field_selector(sel.field)
            if reason:
                raise self.error(se["field"][1], f"{spath}.field", reason)
            reason = _check_label_selector(sel.label)
            if reason:
                raise self.error(se["label"][1], f"{spath}.label", reason)
            selectors.append(sel)

        return KubernetesSDConfig(role=role, api_server=api_server, kubeconfig_file=kubeconfig,
                                  http_client=http_client, namespaces=ns,
                                  selectors=tuple(selectors), attach_metadata=attach)

    def http_client(self, e: Entries, path: str, default: HTTPClientConfig) -> HTTPClientConfig:
        """The inlined HTTP client fields, validated like common/config's
        HTTPClientConfig.Validate (same order, same messages)."""
        basic_auth = None
        if "basic_auth" in e and not _is_null(e["basic_auth"][1]):
            bpath = f"{path}.basic_auth"
            be = self.mapping(e["basic_auth"][1], bpath,
                              frozenset({"username", "password", "password_file"}))
            basic_auth = BasicAuth(
                username=self.get(be, "username", self.string, bpath, ""),
                password=self.get(be, "password", self.string, bpath, ""),
                password_file=self.path_value(be, "password_file", bpath))
            if basic_auth.password and basic_auth.password_file:
                raise self.error(be["password_file"][0], f"{bpath}.password_file",
                                 "at most one of basic_auth password & password_file must be "
                                 "configured")
        authorization = None
        if "authorization" in e and not _is_null(e["authorization"][1]):
            apath = f"{path}.authorization"
            ae = self.mapping(e["authorization"][1], apath,
                              frozenset({"type", "credentials", "credentials_file"}))
            authorization = Authorization(
                type=self.get(ae, "type", self.string, apath, "").strip() or "Bearer",
                credentials=self.get(ae, "credentials", self.string, apath, ""),
                credentials_file=self.path_value(ae, "credentials_file", apath))
            if authorization.credentials and authorization.credentials_file:
                raise self.error(ae["credentials_file"][0], f"{apath}.credentials_file",
                                 "at most one of authorization credentials & credentials_file "
                                 "must be configured")
            if authorization.type.lower() == "basic":
                raise self.error(ae["type"][1], f"{apath}.type",
                                 'authorization type cannot be set to "basic", use '
                                 '"basic_auth" instead')
        token = self.get(e, "bearer_token", self.string, path, "")
        token_file = self.path_value(e, "bearer_token_file", path)
        if token and token_file:
            raise self.error(e["bearer_token_file"][0], f"{path}.bearer_token_file",
                             "at most one of bearer_token & bearer_token_file must be configured")
        if token or token_file:
            key = "bearer_token" if token else "bearer_token_file"
            if basic_auth is not None:
                raise self.error(e[key][0], _join(path, key),
                                 "at most one of basic_auth, oauth2, bearer_token & "
                                 "bearer_token_file must be configured")
            if authorization is not None:
                raise self.error(e[key][0], _join(path, key),
                                 "authorization is not compatible with bearer_token & "
                                 "bearer_token_file")
            # Legacy fields become an Authorization, as Prometheus does.
            authorization = Authorization(type="Bearer", credentials=token,
                                          credentials_file=token_file)
        elif authorization is not None and basic_auth is not None:
            raise self.error(e["authorization"][0], f"{path}.authorization",
                             "at most one of basic_auth, oauth2 & authorization must be "
                             "configured")

        tls = default.tls_config
        if "tls_config" in e:
            tls = self.tls_config(e["tls_config"][1], f"{path}.tls_config")

        proxy_url = self.get(e, "proxy_url", self.string, path, "")
        if proxy_url:
            self.check_url(e["proxy_url"][1], f"{path}.proxy_url", proxy_url)
        proxy_header: dict[str, tuple[str, ...]] = {}
        if "proxy_connect_header" in e:
            hpath = f"{path}.proxy_connect_header"
            for name, (_, vnode) in self.keyed(e["proxy_connect_header"][1], hpath).items():
                proxy_header[name] = self.string_list(vnode, _join(hpath, name))
            if proxy_header and not proxy_url:
                raise self.error(e["proxy_connect_header"][0], hpath,
                                 "if proxy_connect_header is configured proxy_url must also be "
                                 "configured")

        return HTTPClientConfig(
            basic_auth=basic_auth,
            authorization=authorization,
            tls_config=tls,
            proxy_url=proxy_url,
            proxy_connect_header=proxy_header,
            follow_redirects=self.get(e, "follow_redirects", self.boolean, path,
                                      default.follow_redirects),
            enable_http2=self.get(e, "enable_http2", self.boolean, path, default.enable_http2),
        )

    def tls_config(self, node: Node, path: str) -> TLSConfig:
        e = self.mapping(node, path, frozenset({
            "ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify",
            "min_version", "max_version"}))
        versions = {}
        for key in ("min_version", "max_version"):
            v = self.get(e, key, self.string, path, "")
            if v and v not in _TLS_VERSIONS:
                raise self.error(e[key][1], _join(path, key), f"unknown TLS version: {v}")
            versions[key] = v
        tls = TLSConfig(
            ca_file=self.path_value(e, "ca_file", path),
            cert_file=self.path_value(e, "cert_file", path),
            key_file=self.path_value(e, "key_file", path),
            server_name=self.get(e, "server_name", self.string, path, ""),
            insecure_skip_verify=self.get(e, "insecure_skip_verify", self.boolean, path, False),
            **versions,
        )
        if tls.cert_file and not tls.key_file:
            raise self.error(e["cert_file"][0], f"{path}.cert_file",
                             f"client cert file {_quote(tls.cert_file)} specified without "
                             "client key file")
        if tls.key_file and not tls.cert_file:
            raise self.error(e["key_file"][0], f"{path}.key_file",
                             f"client key file {_quote(tls.key_file)} specified without "
                             "client cert file")
        if tls.min_version and tls.max_version and tls.max_version < tls.min_version:
            raise self.error(e["max_version"][1], f"{path}.max_version",
                             "tls_config.max_version must be greater than or equal to "
                             "tls_config.min_version if both are specified")
        return tls

    def check_url(self, node: Node, path: str, url: str) -> None:
        try:
            parts = urlsplit(url)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise self.error(node, path, f"invalid URL {_quote(url)} "
                             "(an http:// or https:// URL with a host)")

    def relabel(self, e: Entries, key: str, path: str, null_reason: str) -> tuple[Rule, ...]:
        if key not in e:
            return ()
        where = _join(path, key)
        items = self.sequence(e[key][1], where)
        raw: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            if _is_null(item):
                raise self.error(item, f"{where}[{i}]", null_reason)
            if not isinstance(item, MappingNode):
                raise self.error(item, f"{where}[{i}]", f"expected a mapping, got {_kind(item)}")
            raw.append(self.plain(item))
        try:
            return tuple(compile_rules(raw, where))
        except RelabelConfigError as err:
            raise self._relabel_error(err, raw, items, where, e[key][0]) from err

    def _relabel_error(self, err: RelabelConfigError, raw: list[dict[str, Any]],
                       items: list[Node], where: str, key_node: Node) -> ConfigError:
        # Find the offending rule (its index if the error carries one, else the first
        # rule that fails alone; rules are validated independently) for its line.
        index = getattr(err, "index", None)
        if not isinstance(index, int) or not 0 <= index < len(items):
            index = 0
            for i, rule in enumerate(raw):
                try:
                    compile_rules([rule], where)
                except RelabelConfigError:
                    index = i
                    break
        node = items[index] if items else key_node
        fld = getattr(err, "field", None)
        if isinstance(fld, str) and isinstance(node, MappingNode):
            for knode, _ in node.value:
                if isinstance(knode, ScalarNode) and knode.value == fld:
                    node = knode
                    break
        return ConfigError(self.source, _line(node), "", str(err))

    def plain(self, node: Node) -> Any:
        """A node as plain Python for compile_rules: scalars stay text, as go-yaml decodes
        them into relabel's string fields (`regex: true` is the regex "true"); null is
        None; `modulus` is an int when it is one."""
        if isinstance(node, MappingNode):
            out: dict[str, Any] = {}
            for knode, vnode in self.pairs(node, ""):
                key = knode.value if isinstance(knode, ScalarNode) else str(self.plain(knode))
                if key in out:
                    raise self.error(knode, key, "key given more than once")
                if key == "modulus" and isinstance(vnode, ScalarNode) and vnode.tag == _INT_TAG:
                    out[key] = self.loader.construct_yaml_int(vnode)
                else:
                    out[key] = self.plain(vnode)
            return out
        if isinstance(node, SequenceNode):
            return [self.plain(item) for item in node.value]
        return None if node.tag == _NULL_TAG else node.value

    def remote_write(self, node: Node, path: str) -> RemoteWriteConfig:
        if _is_null(node):
            raise self.error(node, path, "empty or null remote write config section")
        keys = _HTTP_CLIENT_KEYS | frozenset({
            "url", "remote_timeout", "headers", "write_relabel_configs", "name",
            "send_exemplars", "send_native_histograms", "queue_config", "metadata_config",
            "sigv4"})
        e = self.mapping(node, path, keys, {
            "oauth2": _OAUTH2_REFUSED,
            "sigv4": "not supported by clymene (use authorization or basic_auth)"})
        url = self.get(e, "url", self.string, path, "")
        if not url:
            raise self.error(e["url"][1] if "url" in e else node, f"{path}.url",
                             "url for remote_write is empty")
        self.check_url(e["url"][1], f"{path}.url", url)

        headers: dict[str, str] = {}
        if "headers" in e:
            hpath = f"{path}.headers"
            for name, (value, knode) in self.string_map(e["headers"][1], hpath).items():
                if name.lower() == "authorization":
                    raise self.error(knode, _join(hpath, name), "authorization header must be "
                                     "changed via the basic_auth, authorization, oauth2, or "
                                     "sigv4 parameter")
                if name.lower() in _RESERVED_HEADERS:
                    raise self.error(knode, _join(hpath, name),
                                     f"{name} is a reserved header. It must not be changed")
                headers[name] = value

        queue = QueueConfig()
        if "queue_config" in e:
            qpath = f"{path}.queue_config"
            qe = self.mapping(e["queue_config"][1], qpath, frozenset({
                "capacity", "max_shards", "min_shards", "max_samples_per_send",
                "batch_send_deadline", "min_backoff", "max_backoff", "retry_on_http_429"}))
            d = QueueConfig()
            queue = QueueConfig(
                capacity=self.get(qe, "capacity", self.uint, qpath, d.capacity),
                max_shards=self.get(qe, "max_shards", self.uint, qpath, d.max_shards),
                min_shards=self.get(qe, "min_shards", self.uint, qpath, d.min_shards),
                max_samples_per_send=self.get(qe, "max_samples_per_send", self.uint, qpath,
                                              d.max_samples_per_send),
                batch_send_deadline=self.get(qe, "batch_send_deadline", self.duration, qpath,
                                             d.batch_send_deadline),
                min_backoff=self.get(qe, "min_backoff", self.duration, qpath, d.min_backoff),
                max_backoff=self.get(qe, "max_backoff", self.duration, qpath, d.max_backoff),
                retry_on_http_429=self.get(qe, "retry_on_http_429", self.boolean, qpath,
                                           d.retry_on_http_429),
            )
        metadata = MetadataConfig()
        if "metadata_config" in e:
            mpath = f"{path}.metadata_config"
            me = self.mapping(e["metadata_config"][1], mpath,
                              frozenset({"send", "send_interval", "max_samples_per_send"}))
            d2 = MetadataConfig()
            metadata = MetadataConfig(
                send=self.get(me, "send", self.boolean, mpath, d2.send),
                send_interval=self.get(me, "send_interval", self.duration, mpath,
                                       d2.send_interval),
                max_samples_per_send=self.get(me, "max_samples_per_send", self.uint, mpath,
                                              d2.max_samples_per_send),
            )

        return RemoteWriteConfig(
            url=url,
            name=self.get(e, "name", self.string, path, ""),
            remote_timeout=self.get(e, "remote_timeout", self.duration, path,
                                    RemoteWriteConfig.remote_timeout),
            headers=headers,
            write_relabel_configs=self.relabel(
                e, "write_relabel_configs", path,
                "empty or null relabeling rule in remote write config"),
            send_exemplars=self.get(e, "send_exemplars", self.boolean, path, False),
            send_native_histograms=self.get(e, "send_native_histograms", self.boolean, path,
                                            False),
            http_client=self.http_client(e, path, HTTPClientConfig()),
            queue_config=queue,
            metadata_config=metadata,
        )


def _quote(s: str) -> str:
    # Go's %q for the common case: double quotes, backslash escapes.
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Kubernetes selectors: a check close to apimachinery's fields.ParseSelector and
# labels.Parse, so a selector Kubernetes would refuse fails at load, not at discovery.
_QUALIFIED_NAME = r"(?:[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_LABEL_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_LABEL_REQ_RE = re.compile(
    rf"\s*(?:!\s*(?P<nk>{_QUALIFIED_NAME})"
    rf"|(?P<k>{_QUALIFIED_NAME})\s*(?:"
    rf"(?:==|=|!=)\s*{_LABEL_VALUE}"
    rf"|(?:in|notin)\s*\(\s*(?:{_LABEL_VALUE}\s*(?:,\s*{_LABEL_VALUE}\s*)*)?\)"
    rf"|[<>]\s*-?[0-9]+"
    rf")?)\s*"
)


def _split_selector(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _check_label_selector(text: str) -> str:
    if not text.strip():
        return ""
    for part in _split_selector(text):
        m = _LABEL_REQ_RE.fullmatch(part)
        if m is None:
            return f"invalid label selector {_quote(text)}: cannot parse {_quote(part.strip())}"
        key = m.group("nk") or m.group("k") or ""
        if len(key.rpartition("/")[2]) > 63:
            return f"invalid label selector {_quote(text)}: name part of {_quote(key)} is " \
                   "longer than 63 characters"
    return ""


def _check_field_selector(text: str) -> str:
    if not text.strip():
        return ""
    # Terms are comma-separated `key=value`, `key==value` or `key!=value`; `\` escapes.
    for part in re.split(r"(?<!\\),", text):
        if not re.fullmatch(r"[^=!]+(?:==|!=|=).*", part.strip()):
            return f"invalid field selector {_quote(text)}: can't understand " \
                   f"{_quote(part.strip())}"
    return ""
