"""The promtail-compatible agent configuration.

    server:           {http_listen_port, http_listen_address, grpc_listen_port, log_level}
    positions:        {filename, sync_period, ignore_invalid_yaml}
    clients:          [{url, tenant_id, batchwait, batchsize, timeout, external_labels}]
    scrape_configs:   [{job_name, static_configs: [{targets, labels: {__path__: glob}}],
                        kubernetes_sd_configs, relabel_configs, pipeline_stages}]

Errors are `LogConfigError` whose message starts with `file:line:`. `clients` is optional:
the --loki.client.* flags (or STORAGE_TYPE) choose the output when it is absent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from clymene import relabel
from clymene.config import parse_duration
from clymene.logs import stages as stages_module


class LogConfigError(ValueError):
    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(f"{source}:{line}: {reason}")
        self.source = source
        self.line = line


class LDict(dict):
    """A mapping that knows its YAML line and the lines of its keys."""

    line = 0
    key_lines: dict[str, int] = {}


class LList(list):
    line = 0


def _to_python(loader: yaml.SafeLoader, node: Node) -> Any:
    if isinstance(node, MappingNode):
        loader.flatten_mapping(node)
        d = LDict()
        d.line = node.start_mark.line + 1
        d.key_lines = {}
        for k, v in node.value:
            key = loader.construct_object(k, deep=True) if isinstance(k, ScalarNode) else None
            if key is None and not isinstance(k, ScalarNode):
                raise LogConfigError("", k.start_mark.line + 1, "mapping keys must be scalars")
            key = str(key)
            if key in d:
                raise LogConfigError("", k.start_mark.line + 1, f"duplicate key {key!r}")
            d[key] = _to_python(loader, v)
            d.key_lines[key] = k.start_mark.line + 1
        return d
    if isinstance(node, SequenceNode):
        lst = LList(_to_python(loader, n) for n in node.value)
        lst.line = node.start_mark.line + 1
        return lst
    return loader.construct_object(node, deep=True)


@dataclass
class ScrapeConfig:
    job_name: str
    static_configs: list[tuple[list[str], dict[str, str]]]
    kubernetes_sd_configs: tuple  # clymene.config.KubernetesSDConfig, validated as Prometheus does
    relabel_rules: list
    pipeline: Any  # raw pipeline_stages; built per target (stages hold per-file state)
    line: int = 0


@dataclass
class PromtailConfig:
    source: str
    server: dict = field(default_factory=dict)
    positions_file: str = "/tmp/positions.yaml"
    positions_sync: float = 10.0
    clients: list[dict] = field(default_factory=list)
    scrape_configs: list[ScrapeConfig] = field(default_factory=list)
    target_sync_period: float = 1.0

    def build_pipeline(self, sc: ScrapeConfig) -> stages_module.Pipeline:
        return stages_module.build(sc.pipeline, f"scrape_configs[{sc.job_name}].pipeline_stages")


_TOP = {"server", "positions", "clients", "client", "scrape_configs", "target_config",
        "limits_config", "options", "tracing"}
_SCRAPE = {"job_name", "static_configs", "kubernetes_sd_configs", "relabel_configs",
           "pipeline_stages", "file_sd_configs", "journal", "syslog", "loki_push_api",
           "decompression", "encoding"}


def load_file(path: str) -> PromtailConfig:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise LogConfigError(path, 0, f"cannot read config file: {exc.strerror}") from None
    return load_string(text, path)


def load_string(text: str, source: str) -> PromtailConfig:
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            root = _to_python(loader, node) if node is not None else LDict()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise LogConfigError(source, mark.line + 1 if mark else 0,
                             f"invalid YAML: {exc.problem or exc.context}") from None
    except LogConfigError as exc:
        raise LogConfigError(source, exc.line, str(exc).split(": ", 1)[1]) from None
    if not isinstance(root, dict):
        raise LogConfigError(source, getattr(root, "line", 1), "expected a mapping")
    return _Builder(source).build(root)


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source

    def err(self, obj: Any, reason: str, key: str | None = None) -> LogConfigError:
        line = getattr(obj, "line", 0)
        if key is not None:
            line = getattr(obj, "key_lines", {}).get(key, line)
        return LogConfigError(self.source, line, reason)

    def mapping(self, obj: Any, where: str, allowed: set[str]) -> LDict:
        if obj is None:
            return LDict()
        if not isinstance(obj, dict):
            raise self.err(obj, f"{where}: expected a mapping")
        for k in obj:
            if k not in allowed:
                raise self.err(obj, f"{where}: unknown field {k!r}", k)
        return obj  # type: ignore[return-value]

    def build(self, root: LDict) -> PromtailConfig:
        self.mapping(root, "config", _TOP)
        cfg = PromtailConfig(self.source)
        cfg.server = dict(root.get("server") or {})
        pos = self.mapping(root.get("positions"), "positions",
                           {"filename", "sync_period", "ignore_invalid_yaml"})
        if pos.get("filename"):
            cfg.positions_file = str(pos["filename"])
        if pos.get("sync_period") is not None:
            try:
                cfg.positions_sync = parse_duration(str(pos["sync_period"]))
            except ValueError as exc:
                raise self.err(pos, f"positions.sync_period: {exc}", "sync_period") from None
        clients = root.get("clients") or ([root["client"]] if root.get("client") else [])
        for i, c in enumerate(clients):
            c = self.mapping(c, f"clients[{i}]", {
                "url", "tenant_id", "batchwait", "batchsize", "timeout", "external_labels",
                "backoff_config", "headers", "basic_auth", "bearer_token", "tls_config",
                "name", "drop_rate_limited_batches", "bearer_token_file", "proxy_url"})
            if not c.get("url"):
                raise self.err(c, f"clients[{i}]: url is required")
            cfg.clients.append(dict(c))
        tc = root.get("target_config")
        if isinstance(tc, dict) and tc.get("sync_period"):
            cfg.target_sync_period = parse_duration(str(tc["sync_period"]))
        scs = root.get("scrape_configs") or []
        if not isinstance(scs, list):
            raise self.err(root, "scrape_configs: expected a list", "scrape_configs")
        names: set[str] = set()
        for i, sc in enumerate(scs):
            cfg.scrape_configs.append(self.scrape(sc, i, names))
        return cfg

    def scrape(self, sc: Any, i: int, names: set[str]) -> ScrapeConfig:
        where = f"scrape_configs[{i}]"
        sc = self.mapping(sc, where, _SCRAPE)
        name = sc.get("job_name")
        if not name:
            raise self.err(sc, f"{where}: job_name is required")
        if name in names:
            raise self.err(sc, f"{where}: found multiple scrape configs with job name "
                               f"{name!r}", "job_name")
        names.add(str(name))
        for unsupported in ("journal", "syslog", "loki_push_api", "file_sd_configs"):
            if unsupported in sc:
                raise self.err(sc, f"{where}: {unsupported} is not supported by clymene "
                                   "(supported: static_configs, kubernetes_sd_configs)",
                               unsupported)
        statics = []
        for j, st in enumerate(sc.get("static_configs") or []):
            st = self.mapping(st, f"{where}.static_configs[{j}]", {"targets", "labels"})
            labels = st.get("labels") or {}
            if not isinstance(labels, dict):
                raise self.err(st, f"{where}.static_configs[{j}].labels: expected a mapping",
                               "labels")
            statics.append(([str(t) for t in st.get("targets") or []],
                            {str(k): str(v) for k, v in labels.items()}))
        try:
            rules = relabel.compile_rules(list(sc.get("relabel_configs") or []),
                                          f"{where}.relabel_configs")
        except relabel.RelabelConfigError as exc:
            rc = sc.get("relabel_configs")
            line = getattr(rc, "line", sc.line)
            idx = _index_in(str(exc))
            if idx is not None and isinstance(rc, list) and idx < len(rc):
                line = getattr(rc[idx], "line", line)
            raise LogConfigError(self.source, line, str(exc)) from None
        raw_stages = sc.get("pipeline_stages")
        try:
            stages_module.build(raw_stages, f"{where}.pipeline_stages")
        except stages_module.StageError as exc:
            raise LogConfigError(self.source, exc.line or sc.line, str(exc)) from None
        k8s: tuple = ()
        if sc.get("kubernetes_sd_configs"):
            k8s = self.kubernetes(sc, str(name), where)
        return ScrapeConfig(str(name), statics, k8s, rules, raw_stages, sc.line)

    def kubernetes(self, sc: LDict, job: str, where: str) -> tuple:
        """Validated by clymene.config (Prometheus' rules); errors keep our line."""
        from clymene import config as prom_config

        raw = sc["kubernetes_sd_configs"]
        text = yaml.safe_dump({"scrape_configs": [
            {"job_name": job, "kubernetes_sd_configs": _plain(raw)}]})
        try:
            cfg = prom_config.load_string(text, self.source, os.path.dirname(
                os.path.abspath(self.source)))
        except prom_config.ConfigError as exc:
            reason = str(exc).split(": ", 1)[1] if ": " in str(exc) else str(exc)
            reason = reason.replace("scrape_configs[0]", where, 1)
            raise self.err(sc, reason, "kubernetes_sd_configs") from None
        return cfg.scrape_configs[0].kubernetes_sd_configs


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def relabel_target(sc: ScrapeConfig, raw: dict[str, str], host: str) -> dict[str, str] | None:
    """A discovered target's labels after relabeling, or None when it is dropped, has no
    __path__, or belongs to another node (`__host__` differs from this host, as promtail
    does so that each DaemonSet pod tails only its own node's pods)."""
    result = relabel.relabel(raw, sc.relabel_rules) if sc.relabel_rules else dict(raw)
    if result is None or not result.get("__path__"):
        return None
    if result.get("__host__", host) != host:
        return None
    result = dict(result)
    result.setdefault("__host__", host)
    return result


def hostname() -> str:
    """promtail's: $HOSTNAME when set (the DaemonSet sets it to the node name)."""
    return os.environ.get("HOSTNAME") or os.uname().nodename


def _index_in(message: str) -> int | None:
    import re

    m = re.search(r"\[(\d+)\]", message) or re.search(r"rule (\d+)", message)
    return int(m.group(1)) if m else None


def targets_of(cfg: PromtailConfig, host: str | None = None
               ) -> list[tuple[ScrapeConfig, dict[str, str]]]:
    """Static targets after relabeling: (job, labels with __path__), dropped ones left out.
    promtail gives every target `job`-less labels as written; `__address__` is the
    target (localhost) and `__host__` this host."""
    host = host or hostname()
    out = []
    for sc in cfg.scrape_configs:
        for targets, labels in sc.static_configs:
            for t in targets or ["localhost"]:
                result = relabel_target(sc, {"__address__": t, **labels}, host)
                if result is not None:
                    out.append((sc, result))
    return out
