"""clymene.config: the Prometheus 2.42 configuration model, its defaults and its errors.

The accept/reject decisions and defaults below were checked against `promtool check
config` of Prometheus 2.42 (Debian build; it lacks kubernetes_sd, whose rules were read
from discovery/kubernetes/kubernetes.go).
"""

import os
from pathlib import Path

import pytest

from clymene import relabel
from clymene.config import (
    AttachMetadataConfig,
    Authorization,
    BasicAuth,
    ConfigError,
    GlobalConfig,
    HTTPClientConfig,
    MetadataConfig,
    NamespaceDiscovery,
    QueueConfig,
    SelectorConfig,
    StaticConfig,
    TLSConfig,
    format_duration,
    load_file,
    load_string,
    parse_duration,
    parse_size,
    summary,
)

DATA = Path(__file__).parent / "data" / "config"
EXAMPLES = Path(__file__).parent.parent / "examples"
MB = 1 << 20


# -- durations and sizes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("0s", 0.0),
        ("15s", 15.0),
        ("01s", 1.0),
        ("500ms", 0.5),
        ("1m", 60.0),
        ("1h30m", 5400.0),
        ("1d", 86400.0),
        ("1w1d", 8 * 86400.0),
        ("1y", 365 * 86400.0),
        ("1y1w1d1h1m1s1ms", 365 * 86400 + 7 * 86400 + 86400 + 3600 + 60 + 1 + 0.001),
        ("292y", 292 * 365 * 86400.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "empty duration string"),
        ("1.5s", "not a valid duration string: '1.5s'"),
        ("5", "not a valid duration string: '5'"),
        ("5x", "not a valid duration string: '5x'"),
        ("-1s", "not a valid duration string: '-1s'"),
        ("1m1h", "not a valid duration string: '1m1h'"),
        ("1s1s", "not a valid duration string: '1s1s'"),
        ("1h 30m", "not a valid duration string: '1h 30m'"),
        (" 1s", "not a valid duration string: ' 1s'"),
        ("1s\n", "not a valid duration string: '1s\\n'"),
        ("1M", "not a valid duration string: '1M'"),
        ("300y", "duration out of range"),
    ],
)
def test_parse_duration_invalid(text: str, error: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_duration(text)
    assert str(exc.value) == error


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.5, "500ms"),
        (15.0, "15s"),
        (90.0, "1m30s"),
        (5400.0, "1h30m"),
        (86400.0, "1d"),
        (14 * 86400.0, "2w"),
        (15 * 86400.0, "15d"),
        (365 * 86400.0, "1y"),
        (61.001, "1m1s1ms"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("-0", 0),
        ("10B", 10),
        ("1KB", 1024),
        ("10KiB", 10240),
        ("10MB", 10 * MB),
        ("1.5MB", 1572864),
        (".5KB", 512),
        ("1.KB", 1024),
        ("10MB1KB", 10 * MB + 1024),
        ("1MiB1KiB", MB + 1024),
        ("+1GB", 1 << 30),
        ("-1MB", -MB),
        ("1EB", 1 << 60),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "units: invalid "),
        ("10", "units: unknown unit  in 10"),
        ("10kb", "units: unknown unit kb in 10kb"),
        ("10mb", "units: unknown unit mb in 10mb"),
        ("1K", "units: unknown unit K in 1K"),
        ("10 MB", "units: unknown unit  MB in 10 MB"),
        ("1e3", "units: unknown unit e in 1e3"),
        ("1MiB1KB", "units: unknown unit MiB in 1MiB1KB"),
        ("MB", "units: invalid MB"),
        ("9EB", "units: overflow parsing unit"),
    ],
)
def test_parse_size_invalid(text: str, error: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_size(text)
    assert str(exc.value) == error


# -- valid configurations --------------------------------------------------------------


def test_full_config_every_field() -> None:
    cfg = load_file(DATA / "full.yml")
    d = str(DATA)
    assert cfg.source == str(DATA / "full.yml")

    g = cfg.global_config
    assert g == GlobalConfig(
        scrape_interval=30.0,
        scrape_timeout=20.0,
        evaluation_interval=5400.0,
        external_labels={"cluster": "c1", "region": "eu-west"},
        query_log_file=f"{d}/logs/query.log",
        body_size_limit=10 * MB,
        sample_limit=5000,
        target_limit=100,
        label_limit=30,
        label_name_length_limit=200,
        label_value_length_limit=2048,
    )
    assert list(g.external_labels) == ["cluster", "region"]  # sorted by name

    assert [sc.job_name for sc in cfg.scrape_configs] == ["node", "pods", "bearer", "bearer-file"]
    node, pods, bearer, bearer_file = cfg.scrape_configs

    assert node.scrape_interval == 15.0
    assert node.scrape_timeout == 5.0
    assert node.metrics_path == "/probe"
    assert node.scheme == "https"
    assert node.params == {"module": ("http_2xx", "tcp"), "target": ("example.org",)}
    assert node.honor_labels is True
    assert node.honor_timestamps is False
    assert node.body_size_limit == 1572864
    assert (node.sample_limit, node.label_limit, node.label_name_length_limit,
            node.label_value_length_limit, node.target_limit) == (1000, 20, 100, 500, 10)
    assert node.http_client == HTTPClientConfig(
        basic_auth=BasicAuth(username="prom", password="", password_file=f"{d}/secrets/password"),
        authorization=None,
        tls_config=TLSConfig(
            ca_file=f"{d}/tls/ca.crt",
            cert_file="/etc/tls/client.crt",
            key_file="/etc/tls/client.key",
            server_name="node.internal",
            insecure_skip_verify=True,
            min_version="TLS12",
            max_version="TLS13",
        ),
        proxy_url="http://proxy.local:3128",
        proxy_connect_header={"X-Proxy-Auth": ("secret",)},
        follow_redirects=False,
        enable_http2=False,
    )
    # The inlined HTTP client fields read on the job too, as written in the YAML.
    hc = node.http_client
    assert (node.basic_auth, node.authorization, node.tls_config, node.proxy_url,
            node.proxy_connect_header, node.follow_redirects, node.enable_http2) == (
        hc.basic_auth, None, hc.tls_config, "http://proxy.local:3128",
        {"X-Proxy-Auth": ("secret",)}, False, False)
    assert node.static_configs == (
        StaticConfig(targets=("10.0.0.1:9100", "10.0.0.2:9100"),
                     labels={"env": "prod", "rack": "r1"}),
        StaticConfig(targets=("10.0.0.3:9100",), labels={}),
    )
    assert [(f.files, f.refresh_interval) for f in node.file_sd_configs] == [
        ((f"{d}/targets/*.json", "/abs/more.yml"), 60.0),
        ((f"{d}/other.yaml",), 300.0),
    ]
    assert node.kubernetes_sd_configs == ()
    assert len(node.relabel_configs) == 2
    assert len(node.metric_relabel_configs) == 1
    # The compiled rules work: __address__ 10.0.0.1:9100 -> host 10.0.0.1, rack dropped.
    assert relabel.relabel({"__address__": "10.0.0.1:9100", "rack": "r1"},
                           list(node.relabel_configs)) == {
        "__address__": "10.0.0.1:9100", "host": "10.0.0.1"}
    assert relabel.relabel({"__name__": "go_goroutines"},
                           list(node.metric_relabel_configs)) is None

    # Job without its own interval/limits: global values; timeout = global timeout.
    assert (pods.scrape_interval, pods.scrape_timeout) == (30.0, 20.0)
    assert (pods.metrics_path, pods.scheme, pods.honor_labels, pods.honor_timestamps) == (
        "/metrics", "http", False, True)
    assert (pods.body_size_limit, pods.sample_limit, pods.label_limit,
            pods.label_name_length_limit, pods.label_value_length_limit,
            pods.target_limit) == (10 * MB, 5000, 30, 200, 2048, 100)
    assert pods.http_client == HTTPClientConfig(
        authorization=Authorization(type="Token", credentials="abc"))
    k1, k2 = pods.kubernetes_sd_configs
    assert k1.role == "endpoints"
    assert k1.api_server == "https://k8s.example.org:6443"
    assert k1.kubeconfig_file == ""
    assert k1.http_client == HTTPClientConfig(
        authorization=Authorization(type="Bearer", credentials_file=f"{d}/k8s/token"),
        tls_config=TLSConfig(ca_file=f"{d}/k8s/ca.crt"),
    )
    assert k1.namespaces == NamespaceDiscovery(names=("default", "monitoring"))
    assert k1.selectors == (
        SelectorConfig(role="pod", label="app=web,tier in (a, b)", field="spec.nodeName=n1"),
        SelectorConfig(role="endpoints", label="!canary", field=""),
    )
    assert k1.attach_metadata == AttachMetadataConfig(node=True)
    assert (k2.role, k2.api_server, k2.kubeconfig_file) == ("node", "", f"{d}/kube/config")
    assert k2.http_client == HTTPClientConfig()
    assert k2.namespaces == NamespaceDiscovery()

    # Legacy bearer_token / bearer_token_file become authorization, as in Prometheus.
    assert bearer.http_client.authorization == Authorization(type="Bearer", credentials="tok")
    assert bearer.authorization is bearer.http_client.authorization
    assert not hasattr(bearer, "bearer_token")
    assert bearer_file.http_client.authorization == Authorization(
        type="Bearer", credentials_file=f"{d}/token.txt")
    # Interval 5s < global timeout 20s: the timeout becomes the interval.
    assert (bearer_file.scrape_interval, bearer_file.scrape_timeout) == (5.0, 5.0)

    rw1, rw2 = cfg.remote_write
    assert rw1.url == "http://127.0.0.1:9201/api/v1/write"
    assert rw1.name == "primary"
    assert rw1.remote_timeout == 10.0
    assert rw1.headers == {"X-Scope-OrgID": "tenant-1"}
    assert rw1.http_client == HTTPClientConfig(
        basic_auth=BasicAuth(username="writer", password="pw"),
        tls_config=TLSConfig(insecure_skip_verify=True))
    assert len(rw1.write_relabel_configs) == 1
    assert (rw1.send_exemplars, rw1.send_native_histograms) == (True, False)
    assert rw1.queue_config == QueueConfig(
        capacity=10000, max_shards=50, min_shards=2, max_samples_per_send=2000,
        batch_send_deadline=10.0, min_backoff=0.1, max_backoff=10.0, retry_on_http_429=True)
    assert rw1.metadata_config == MetadataConfig(send=False, send_interval=120.0,
                                                 max_samples_per_send=100)
    # Prometheus 2.42's remote write defaults.
    assert rw2.url == "https://victoria.example.org/api/v1/write"
    assert (rw2.name, rw2.remote_timeout, rw2.headers) == ("", 30.0, {})
    assert rw2.queue_config == QueueConfig(
        capacity=2500, max_shards=200, min_shards=1, max_samples_per_send=500,
        batch_send_deadline=5.0, min_backoff=0.03, max_backoff=5.0, retry_on_http_429=False)
    assert rw2.metadata_config == MetadataConfig(send=True, send_interval=60.0,
                                                 max_samples_per_send=500)
    assert rw2.http_client == HTTPClientConfig(follow_redirects=True, enable_http2=True)
    assert (rw1.basic_auth, rw1.tls_config.insecure_skip_verify) == (
        BasicAuth(username="writer", password="pw"), True)
    assert k1.tls_config.ca_file == f"{d}/k8s/ca.crt"

    src = str(DATA / "full.yml")
    assert cfg.warnings == (
        f"{src}:17: rule_files: ignored: clymene does not evaluate rules",
        f"{src}:20: alerting: ignored: clymene does not send alerts",
        f"{src}:144: remote_read: ignored: clymene does not serve queries",
    )


def test_defaults_of_a_minimal_config() -> None:
    cfg = load_string("scrape_configs:\n  - job_name: a\n", "m.yml")
    assert cfg.global_config == GlobalConfig()
    assert (cfg.global_config.scrape_interval, cfg.global_config.scrape_timeout,
            cfg.global_config.evaluation_interval) == (60.0, 10.0, 60.0)
    (sc,) = cfg.scrape_configs
    assert (sc.job_name, sc.scrape_interval, sc.scrape_timeout) == ("a", 60.0, 10.0)
    assert (sc.metrics_path, sc.scheme, sc.params) == ("/metrics", "http", {})
    assert (sc.honor_labels, sc.honor_timestamps) == (False, True)
    assert sc.http_client == HTTPClientConfig(
        basic_auth=None, authorization=None, tls_config=TLSConfig(), proxy_url="",
        proxy_connect_header={}, follow_redirects=True, enable_http2=True)
    assert (sc.body_size_limit, sc.sample_limit, sc.label_limit, sc.label_name_length_limit,
            sc.label_value_length_limit, sc.target_limit) == (0, 0, 0, 0, 0, 0)
    assert (sc.static_configs, sc.file_sd_configs, sc.kubernetes_sd_configs) == ((), (), ())
    assert (sc.relabel_configs, sc.metric_relabel_configs) == ((), ())
    assert (cfg.remote_write, cfg.warnings) == ((), ())
    assert cfg.job("a") is sc
    assert cfg.job("b") is None


@pytest.mark.parametrize(
    ("text", "interval", "timeout"),
    [
        # Global interval 5s: the default global timeout (10s) is capped to it.
        ("global: {scrape_interval: 5s}\nscrape_configs: [{job_name: a}]", 5.0, 5.0),
        ("global: {scrape_interval: 0s}\nscrape_configs: [{job_name: a}]", 60.0, 10.0),
        ("global: {scrape_timeout: 30s}\nscrape_configs: [{job_name: a, scrape_interval: 15s}]",
         15.0, 15.0),
        ("scrape_configs: [{job_name: a, scrape_interval: 2m, scrape_timeout: 2m}]", 120.0, 120.0),
        ("scrape_configs: [{job_name: a, scrape_interval: 0s, scrape_timeout: 0s}]", 60.0, 10.0),
        ("scrape_configs: [{job_name: a, scrape_timeout: 1m}]", 60.0, 60.0),
        ("global: {scrape_interval: null}\nscrape_configs: [{job_name: a}]", 60.0, 10.0),
    ],
)
def test_interval_and_timeout_defaults(text: str, interval: float, timeout: float) -> None:
    (sc,) = load_string(text, "t.yml").scrape_configs
    assert (sc.scrape_interval, sc.scrape_timeout) == (interval, timeout)


@pytest.mark.parametrize("text", ["", "\n", "# nothing here\n", "---\n", "global:\n",
                                  "scrape_configs:\n", "global: {}\nscrape_configs: []\n"])
def test_empty_config_is_valid(text: str) -> None:
    cfg = load_string(text, "empty.yml")
    assert cfg.global_config == GlobalConfig()
    assert (cfg.scrape_configs, cfg.remote_write, cfg.warnings) == ((), (), ())
    assert cfg.source == "empty.yml"


def test_seed_agent_config_loads() -> None:
    cfg = load_file(DATA / "clymene-agent.yml")
    assert cfg.global_config.scrape_interval == 15.0
    jobs = {sc.job_name: sc for sc in cfg.scrape_configs}
    assert list(jobs) == ["kubernetes-apiservers", "kubernetes-nodes", "kubernetes-pods",
                          "kube-state-metrics", "kubernetes-cadvisor",
                          "kubernetes-service-endpoints"]
    assert {name: tuple(k.role for k in sc.kubernetes_sd_configs)
            for name, sc in jobs.items()} == {
        "kubernetes-apiservers": ("endpoints",),
        "kubernetes-nodes": ("node",),
        "kubernetes-pods": ("pod",),
        "kube-state-metrics": (),
        "kubernetes-cadvisor": ("node",),
        "kubernetes-service-endpoints": ("endpoints",),
    }
    assert {name: len(sc.relabel_configs) for name, sc in jobs.items()} == {
        "kubernetes-apiservers": 2, "kubernetes-nodes": 4, "kubernetes-pods": 7,
        "kube-state-metrics": 0, "kubernetes-cadvisor": 5, "kubernetes-service-endpoints": 8}
    for name in ("kubernetes-apiservers", "kubernetes-nodes", "kubernetes-cadvisor"):
        sc = jobs[name]
        assert (sc.scheme, sc.scrape_interval, sc.scrape_timeout) == ("https", 15.0, 10.0)
        assert sc.http_client.tls_config.ca_file == \
            "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
        assert sc.http_client.authorization == Authorization(
            type="Bearer",
            credentials_file="/var/run/secrets/kubernetes.io/serviceaccount/token")
    assert jobs["kube-state-metrics"].static_configs == (StaticConfig(
        targets=("kube-state-metrics.kube-system.svc.cluster.local:8080",),
        labels={"cluster": "clymene-cluster"}),)

    # `regex: true` (a YAML boolean) is the regex "true", as in Prometheus: an annotated
    # pod is kept, one annotated "True" is dropped, and the address gets the port.
    pods = list(jobs["kubernetes-pods"].relabel_configs)
    meta = {"__address__": "10.1.2.3:8080", "__meta_kubernetes_namespace": "shop",
            "__meta_kubernetes_pod_name": "web-1",
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
            "__meta_kubernetes_pod_annotation_prometheus_io_port": "9102",
            "__meta_kubernetes_pod_label_app": "web"}
    assert relabel.relabel(meta, pods) == {
        **meta, "__address__": "10.1.2.3:9102", "app": "web", "namespace": "shop",
        "kubernetes_pod_name": "web-1", "cluster": "clymene-cluster"}
    assert relabel.relabel(
        {**meta, "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "True"}, pods) is None


def test_example_config_loads() -> None:
    cfg = load_file(EXAMPLES / "clymene.yml")
    assert [(sc.job_name, sc.scrape_interval, sc.scrape_timeout,
             [t for s in sc.static_configs for t in s.targets]) for sc in cfg.scrape_configs] == [
        ("node", 15.0, 10.0, ["127.0.0.1:9100"]),
        ("clymene", 15.0, 10.0, ["127.0.0.1:15691"]),
    ]


def test_relative_paths_without_base_dir_stay_relative() -> None:
    text = ("scrape_configs:\n"
            "  - job_name: a\n"
            "    bearer_token_file: tok\n"
            "    tls_config: {ca_file: ca.crt}\n"
            "    file_sd_configs: [{files: ['sd/*.json', '/abs/x.yml']}]\n")
    (sc,) = load_string(text, "r.yml").scrape_configs
    assert sc.http_client.authorization == Authorization(credentials_file="tok")
    assert sc.http_client.tls_config.ca_file == "ca.crt"
    assert sc.file_sd_configs[0].files == ("sd/*.json", "/abs/x.yml")
    (sc,) = load_string(text, "r.yml", "/etc/clymene").scrape_configs
    assert sc.http_client.authorization == Authorization(credentials_file="/etc/clymene/tok")
    assert sc.http_client.tls_config.ca_file == "/etc/clymene/ca.crt"
    assert sc.file_sd_configs[0].files == ("/etc/clymene/sd/*.json", "/abs/x.yml")


def test_yaml_features_like_go_yaml() -> None:
    # Anchors, merge keys, YAML 1.1 booleans, scalars read as strings, no env expansion.
    text = ("scrape_configs:\n"
            "  - &base\n"
            "    job_name: 5\n"
            "    honor_labels: yes\n"
            "    static_configs: [{targets: [80, 'h:1'], labels: {n: 1.50, e: '${HOME}', z: null}}]\n"
            "  - <<: *base\n"
            "    job_name: b\n"
            "    sample_limit: 5.0\n"
            "    honor_timestamps: null\n")
    a, b = load_string(text, "y.yml").scrape_configs
    assert (a.job_name, a.honor_labels, a.honor_timestamps) == ("5", True, True)
    assert a.static_configs == (StaticConfig(targets=("80", "h:1"),
                                             labels={"e": "${HOME}", "n": "1.50", "z": ""}),)
    assert (b.job_name, b.honor_labels, b.sample_limit) == ("b", True, 5)
    assert b.honor_timestamps is False  # null is Go's zero value
    assert b.static_configs == a.static_configs


def test_merge_keys_like_go_yaml() -> None:
    # Checked against Prometheus 2.42 (/api/v1/status/config): a later merge overrides an
    # earlier key; among merged maps the first wins.
    text = ("scrape_configs:\n"
            "  - job_name: b\n"
            "    <<: [{job_name: a, scrape_interval: 5s}, {scrape_interval: 7s, metrics_path: /m}]\n")
    (sc,) = load_string(text, "m.yml").scrape_configs
    assert (sc.job_name, sc.scrape_interval, sc.metrics_path) == ("a", 5.0, "/m")


def test_target_check_skipped_with_relabel_configs() -> None:
    # Like Prometheus: with relabel_configs a static "target" may be a URL to rewrite.
    text = ("scrape_configs:\n"
            "  - job_name: probe\n"
            "    static_configs: [{targets: ['http://example.org/health']}]\n"
            "    relabel_configs:\n"
            "      - target_label: __address__\n"
            "        replacement: 127.0.0.1:9115\n")
    (sc,) = load_string(text, "p.yml").scrape_configs
    assert sc.static_configs[0].targets == ("http://example.org/health",)


def test_summary() -> None:
    cfg = load_file(DATA / "full.yml")
    src = str(DATA / "full.yml")
    d = str(DATA)
    assert summary(cfg) == "\n".join([
        f"{src}: 4 jobs, 2 remote_write",
        f'  job "node": every 15s (timeout 5s), 3 static targets, '
        f"file_sd: {d}/targets/*.json, /abs/more.yml, {d}/other.yaml",
        '  job "pods": every 30s (timeout 20s), 0 static targets, kubernetes_sd: endpoints, node',
        '  job "bearer": every 30s (timeout 20s), 1 static target',
        '  job "bearer-file": every 5s (timeout 5s), 0 static targets',
        "  remote_write primary",
        "  remote_write https://victoria.example.org/api/v1/write",
        f"  warning: {src}:17: rule_files: ignored: clymene does not evaluate rules",
        f"  warning: {src}:20: alerting: ignored: clymene does not send alerts",
        f"  warning: {src}:144: remote_read: ignored: clymene does not serve queries",
    ])


# -- invalid configurations: exact `file:line: key: reason` -----------------------------

JOB = "scrape_configs:\n  - job_name: a\n"  # a job at line 2; its fields start at line 3

BAD = [
    # YAML itself
    ("global:\n\tscrape_interval: 1s\n",
     "clymene.yml:2: invalid YAML: found character '\\t' that cannot start any token"),
    ("a: 1\n---\nb: 2\n", "clymene.yml:2: invalid YAML: expected a single document, found another"),
    ("scrape_configs: [\n", "clymene.yml:2: invalid YAML: expected the node content, but found '<stream end>'"),
    ("- 1\n", "clymene.yml:1: expected a mapping, got a list"),
    ("global:\n  scrape_interval: \"1m\x01\"\n",
     "clymene.yml:2: invalid YAML: special characters are not allowed"),
    ("global:\n  scrape_interval: 1m\nglobal: {}\n", "clymene.yml:3: global: key given more than once"),
    # unknown keys, anywhere
    ("foo: 1\n", "clymene.yml:1: foo: unknown field"),
    ("scrape_config_files: [a.yml]\n", "clymene.yml:1: scrape_config_files: unknown field"),
    ("global:\n  scrape_intervall: 1m\n", "clymene.yml:2: global.scrape_intervall: unknown field"),
    (JOB + "    no_proxy: x\n", "clymene.yml:3: scrape_configs[0].no_proxy: unknown field"),
    (JOB + "    static_configs:\n      - targets: []\n        label: {a: b}\n",
     "clymene.yml:5: scrape_configs[0].static_configs[0].label: unknown field"),
    (JOB + "    tls_config:\n      ca: x\n", "clymene.yml:4: scrape_configs[0].tls_config.ca: unknown field"),
    (JOB + "    job_name: b\n", "clymene.yml:3: scrape_configs[0].job_name: key given more than once"),
    ("remote_write:\n  - url: http://a/w\n    queue_config:\n      sample_age_limit: 1s\n",
     "clymene.yml:4: remote_write[0].queue_config.sample_age_limit: unknown field"),
    # wrong types
    ("global: []\n", "clymene.yml:1: global: expected a mapping, got a list"),
    ("scrape_configs: {}\n", "clymene.yml:1: scrape_configs: expected a list, got a mapping"),
    (JOB + "    honor_labels: 'yes'\n",
     'clymene.yml:3: scrape_configs[0].honor_labels: expected true or false, got "yes"'),
    (JOB + "    honor_timestamps: 1\n",
     "clymene.yml:3: scrape_configs[0].honor_timestamps: expected true or false, got 1"),
    (JOB + "    sample_limit: -1\n",
     "clymene.yml:3: scrape_configs[0].sample_limit: expected a non-negative integer, got -1"),
    (JOB + "    sample_limit: '5'\n",
     'clymene.yml:3: scrape_configs[0].sample_limit: expected a non-negative integer, got "5"'),
    (JOB + "    metrics_path: [a]\n",
     "clymene.yml:3: scrape_configs[0].metrics_path: expected a string, got a list"),
    (JOB + "    static_configs:\n      - targets: 'a:80'\n",
     'clymene.yml:4: scrape_configs[0].static_configs[0].targets: expected a list, got "a:80"'),
    (JOB + "    params: {a: b}\n", 'clymene.yml:3: scrape_configs[0].params.a: expected a list, got "b"'),
    ("global:\n  external_labels:\n    a: [1]\n",
     "clymene.yml:3: global.external_labels.a: expected a string, got a list"),
    # durations and sizes
    ("global:\n  scrape_interval: 1m\nscrape_configs:\n  - job_name: a\n    scrape_interval: 5x\n",
     'clymene.yml:5: scrape_configs[0].scrape_interval: invalid duration "5x"'),
    ("global:\n  scrape_timeout: 1.5s\n", 'clymene.yml:2: global.scrape_timeout: invalid duration "1.5s"'),
    ("global:\n  evaluation_interval: 5\n", 'clymene.yml:2: global.evaluation_interval: invalid duration "5"'),
    ("global:\n  scrape_interval: ''\n", 'clymene.yml:2: global.scrape_interval: invalid duration ""'),
    ("global:\n  scrape_interval: 300y\n",
     'clymene.yml:2: global.scrape_interval: invalid duration "300y": out of range'),
    (JOB + "    body_size_limit: 10\n",
     'clymene.yml:3: scrape_configs[0].body_size_limit: invalid size "10" (a number and a unit: '
     "B, KB, MB, GB, TB, PB, EB (1024-based), or KiB, MiB, ...)"),
    ("global:\n  body_size_limit: 10kb\n",
     'clymene.yml:2: global.body_size_limit: invalid size "10kb" (a number and a unit: '
     "B, KB, MB, GB, TB, PB, EB (1024-based), or KiB, MiB, ...)"),
    (JOB + "    body_size_limit: 9EB\n",
     'clymene.yml:3: scrape_configs[0].body_size_limit: invalid size "9EB" (out of range)'),
    # interval and timeout
    ("global:\n  scrape_interval: 1s\n  scrape_timeout: 2s\n",
     "clymene.yml:3: global.scrape_timeout: global scrape timeout greater than scrape interval "
     "(2s > 1s)"),
    (JOB + "    scrape_interval: 5s\n    scrape_timeout: 6s\n",
     "clymene.yml:4: scrape_configs[0].scrape_timeout: scrape timeout greater than scrape "
     "interval (6s > 5s)"),
    (JOB + "    scrape_timeout: 61s\n",
     "clymene.yml:3: scrape_configs[0].scrape_timeout: scrape timeout greater than scrape "
     "interval (1m1s > 1m)"),
    # jobs
    ("scrape_configs:\n  - scrape_interval: 5s\n",
     "clymene.yml:2: scrape_configs[0].job_name: job_name is empty"),
    ("scrape_configs:\n  - job_name: ''\n", "clymene.yml:2: scrape_configs[0].job_name: job_name is empty"),
    ("scrape_configs:\n  - job_name: a\n  - job_name: b\n  - job_name: a\n",
     'clymene.yml:4: scrape_configs[2].job_name: found multiple scrape configs with job name "a" '
     "(first at line 2)"),
    ("scrape_configs:\n  -\n", "clymene.yml:2: scrape_configs[0]: empty or null scrape config section"),
    (JOB + "    scheme: ftp\n",
     'clymene.yml:3: scrape_configs[0].scheme: invalid scheme "ftp" (must be http or https)'),
    # targets and labels
    (JOB + "    static_configs:\n      - targets: ['a:1', 'http://b:80/metrics']\n",
     'clymene.yml:4: scrape_configs[0].static_configs[0].targets[1]: "http://b:80/metrics" is not '
     "a valid hostname (a target is host:port, without scheme or path)"),
    (JOB + "    static_configs:\n      - targets: ['']\n",
     "clymene.yml:4: scrape_configs[0].static_configs[0].targets[0]: no address"),
    (JOB + "    static_configs:\n      -\n",
     "clymene.yml:4: scrape_configs[0].static_configs[0]: empty or null section in static_configs"),
    (JOB + "    static_configs:\n      - targets: ['a:1']\n        labels:\n          0x: y\n",
     'clymene.yml:6: scrape_configs[0].static_configs[0].labels: "0x" is not a valid label name'),
    ("global:\n  external_labels:\n    cluster: a\n    my-label: b\n",
     'clymene.yml:4: global.external_labels: "my-label" is not a valid label name'),
    # file_sd
    (JOB + "    file_sd_configs:\n      - files: []\n",
     "clymene.yml:4: scrape_configs[0].file_sd_configs[0].files: file service discovery config "
     "must contain at least one path name"),
    (JOB + "    file_sd_configs:\n      - refresh_interval: 1m\n",
     "clymene.yml:4: scrape_configs[0].file_sd_configs[0].files: file service discovery config "
     "must contain at least one path name"),
    (JOB + "    file_sd_configs:\n      - files: [a.json, '*/b.json']\n",
     'clymene.yml:4: scrape_configs[0].file_sd_configs[0].files[1]: path name "*/b.json" is not '
     "valid for file discovery (a glob only in the last path element, ending in .json, .yml or "
     ".yaml)"),
    (JOB + "    file_sd_configs:\n      - files: [targets.txt]\n",
     'clymene.yml:4: scrape_configs[0].file_sd_configs[0].files[0]: path name "targets.txt" is '
     "not valid for file discovery (a glob only in the last path element, ending in .json, .yml "
     "or .yaml)"),
    (JOB + "    file_sd_configs:\n      - files: [a.json]\n        refresh_interval: 0s\n",
     "clymene.yml:5: scrape_configs[0].file_sd_configs[0].refresh_interval: must be greater than 0"),
    # HTTP client rules (common/config HTTPClientConfig.Validate)
    (JOB + "    basic_auth:\n      username: u\n      password: p\n      password_file: f\n",
     "clymene.yml:6: scrape_configs[0].basic_auth.password_file: at most one of basic_auth "
     "password & password_file must be configured"),
    (JOB + "    bearer_token: t\n    bearer_token_file: f\n",
     "clymene.yml:4: scrape_configs[0].bearer_token_file: at most one of bearer_token & "
     "bearer_token_file must be configured"),
    (JOB + "    basic_auth: {username: u}\n    bearer_token: t\n",
     "clymene.yml:4: scrape_configs[0].bearer_token: at most one of basic_auth, oauth2, "
     "bearer_token & bearer_token_file must be configured"),
    (JOB + "    authorization: {credentials: c}\n    bearer_token_file: f\n",
     "clymene.yml:4: scrape_configs[0].bearer_token_file: authorization is not compatible with "
     "bearer_token & bearer_token_file"),
    (JOB + "    authorization:\n      credentials: c\n      credentials_file: f\n",
     "clymene.yml:5: scrape_configs[0].authorization.credentials_file: at most one of "
     "authorization credentials & credentials_file must be configured"),
    (JOB + "    authorization:\n      type: ' Basic '\n",
     'clymene.yml:4: scrape_configs[0].authorization.type: authorization type cannot be set to '
     '"basic", use "basic_auth" instead'),
    (JOB + "    basic_auth: {username: u}\n    authorization: {credentials: c}\n",
     "clymene.yml:4: scrape_configs[0].authorization: at most one of basic_auth, oauth2 & "
     "authorization must be configured"),
    (JOB + "    oauth2:\n      client_id: x\n",
     "clymene.yml:3: scrape_configs[0].oauth2: not supported by clymene (use authorization or "
     "basic_auth)"),
    (JOB + "    tls_config:\n      min_version: TLS14\n",
     "clymene.yml:4: scrape_configs[0].tls_config.min_version: unknown TLS version: TLS14"),
    (JOB + "    tls_config:\n      cert_file: c.crt\n",
     'clymene.yml:4: scrape_configs[0].tls_config.cert_file: client cert file "c.crt" specified '
     "without client key file"),
    (JOB + "    tls_config:\n      key_file: c.key\n",
     'clymene.yml:4: scrape_configs[0].tls_config.key_file: client key file "c.key" specified '
     "without client cert file"),
    (JOB + "    tls_config:\n      min_version: TLS13\n      max_version: TLS12\n",
     "clymene.yml:5: scrape_configs[0].tls_config.max_version: tls_config.max_version must be "
     "greater than or equal to tls_config.min_version if both are specified"),
    (JOB + "    proxy_connect_header:\n      X: [y]\n",
     "clymene.yml:3: scrape_configs[0].proxy_connect_header: if proxy_connect_header is "
     "configured proxy_url must also be configured"),
    (JOB + "    proxy_url: '://x'\n",
     'clymene.yml:3: scrape_configs[0].proxy_url: invalid URL "://x" (an http:// or https:// URL '
     "with a host)"),
    # service discoveries
    (JOB + "    dns_sd_configs:\n      - names: [a]\n",
     "clymene.yml:3: scrape_configs[0].dns_sd_configs: not supported by clymene (supported: "
     "static_configs, file_sd_configs, kubernetes_sd_configs)"),
    (JOB + "    kubernetes_sd_configs:\n      - namespaces: {names: [a]}\n",
     "clymene.yml:4: scrape_configs[0].kubernetes_sd_configs[0].role: role missing (one of: pod, "
     "service, endpoints, endpointslice, node, ingress)"),
    (JOB + "    kubernetes_sd_configs:\n      - role: pods\n",
     'clymene.yml:4: scrape_configs[0].kubernetes_sd_configs[0].role: unknown Kubernetes SD role '
     '"pods"'),
    (JOB + "    kubernetes_sd_configs:\n      - role: pod\n        bearer_token_file: t\n",
     "clymene.yml:5: scrape_configs[0].kubernetes_sd_configs[0].bearer_token_file: to use custom "
     "HTTP client configuration please provide the 'api_server' URL explicitly"),
    (JOB + "    kubernetes_sd_configs:\n      - role: pod\n        api_server: https://k:6443\n"
     "        kubeconfig_file: kc\n",
     "clymene.yml:6: scrape_configs[0].kubernetes_sd_configs[0].kubeconfig_file: cannot use "
     "'kubeconfig_file' and 'api_server' simultaneously"),
    (JOB + "    kubernetes_sd_configs:\n      - role: pod\n        kubeconfig_file: kc\n"
     "        tls_config: {insecure_skip_verify: true}\n",
     "clymene.yml:5: scrape_configs[0].kubernetes_sd_configs[0].kubeconfig_file: cannot use a "
     "custom HTTP client configuration together with 'kubeconfig_file'"),
    (JOB + "    kubernetes_sd_configs:\n      - role: pod\n        api_server: https://k:6443\n"
     "        namespaces: {own_namespace: true}\n",
     "clymene.yml:6: scrape_configs[0].kubernetes_sd_configs[0].namespaces.own_namespace: cannot "
     "use 'api_server' and 'namespaces.own_namespace' simultaneously"),
    (JOB + "    kubernetes_sd_configs:\n      - role: pod\n        api_server: 'k8s:6443'\n",
     'clymene.yml:5: scrape_configs[0].kubernetes_sd_configs[0].api_server: invalid URL '
     '"k8s:6443" (an http:// or https:// URL with a host)'),
    (JOB + "    kubernetes_sd_configs:\n      - role: pod\n        selectors:\n"
     "          - role: node\n",
     "clymene.yml:6: scrape_configs[0].kubernetes_sd_configs[0].selectors[0].role: pod role "
     "supports only pod selectors"),
    (JOB + "    kubernetes_sd_configs:\n      - role: endpoints\n        selectors:\n"
     "          - role: pod\n          - role: pod\n",
     "clymene.yml:7: scrape_configs[0].kubernetes_sd_configs[0].selectors[1].role: duplicated "
     "selector role: pod"),
    (JOB + "    kubernetes_sd_configs:\n      - role: pod\n        selectors:\n"
     "          - role: pod\n            label: 'a=b=c'\n",
     'clymene.yml:7: scrape_configs[0].kubernetes_sd_configs[0].selectors[0].label: invalid label '
     'selector "a=b=c": cannot parse "a=b=c"'),
    (JOB + "    kubernetes_sd_configs:\n      - role: pod\n        selectors:\n"
     "          - role: pod\n            field: spec.nodeName\n",
     'clymene.yml:7: scrape_configs[0].kubernetes_sd_configs[0].selectors[0].field: invalid field '
     'selector "spec.nodeName": can\'t understand "spec.nodeName"'),
    (JOB + "    kubernetes_sd_configs:\n      - role: pod\n        attach_metadata: {nodes: true}\n",
     "clymene.yml:5: scrape_configs[0].kubernetes_sd_configs[0].attach_metadata.nodes: unknown "
     "field"),
    # relabeling (null rules are caught here; the rest by clymene.relabel)
    (JOB + "    relabel_configs:\n      - action: keep\n      -\n",
     "clymene.yml:5: scrape_configs[0].relabel_configs[1]: empty or null target relabeling rule "
     "in scrape config"),
    (JOB + "    metric_relabel_configs:\n      - ~\n",
     "clymene.yml:4: scrape_configs[0].metric_relabel_configs[0]: empty or null metric "
     "relabeling rule in scrape config"),
    (JOB + "    relabel_configs:\n      - [a]\n",
     "clymene.yml:4: scrape_configs[0].relabel_configs[0]: expected a mapping, got a list"),
    # remote_write
    ("remote_write:\n  - name: x\n", "clymene.yml:2: remote_write[0].url: url for remote_write is empty"),
    ("remote_write:\n  -\n", "clymene.yml:2: remote_write[0]: empty or null remote write config section"),
    ("remote_write:\n  - url: foo\n",
     'clymene.yml:2: remote_write[0].url: invalid URL "foo" (an http:// or https:// URL with a host)'),
    ("remote_write:\n  - url: http://a/w\n    headers:\n      Authorization: x\n",
     "clymene.yml:4: remote_write[0].headers.Authorization: authorization header must be changed "
     "via the basic_auth, authorization, oauth2, or sigv4 parameter"),
    ("remote_write:\n  - url: http://a/w\n    headers:\n      User-Agent: x\n",
     "clymene.yml:4: remote_write[0].headers.User-Agent: User-Agent is a reserved header. It must "
     "not be changed"),
    ("remote_write:\n  - url: http://a/w\n    name: x\n  - url: http://b/w\n    name: x\n",
     'clymene.yml:5: remote_write[1].name: found multiple remote write configs with name "x" '
     "(first at line 3)"),
    ("remote_write:\n  - url: http://a/w\n    sigv4: {region: eu}\n",
     "clymene.yml:3: remote_write[0].sigv4: not supported by clymene (use authorization or "
     "basic_auth)"),
    ("remote_write:\n  - url: http://a/w\n    queue_config:\n      max_shards: -1\n",
     "clymene.yml:4: remote_write[0].queue_config.max_shards: expected a non-negative integer, "
     "got -1"),
    ("remote_write:\n  - url: http://a/w\n    write_relabel_configs: [null]\n",
     "clymene.yml:3: remote_write[0].write_relabel_configs[0]: empty or null relabeling rule in "
     "remote write config"),
    # ignored sections are still checked for shape
    ("rule_files:\n  - a/*/b.yml\n", 'clymene.yml:2: rule_files[0]: invalid rule file path "a/*/b.yml"'),
    ("remote_read:\n  -\n", "clymene.yml:2: remote_read[0]: empty or null remote read config section"),
    ("alerting: [a]\n", "clymene.yml:1: alerting: expected a mapping, got a list"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_config(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_string(text, "clymene.yml")
    assert str(exc.value) == message
    assert isinstance(exc.value, ValueError)


def test_config_error_attributes() -> None:
    with pytest.raises(ConfigError) as exc:
        load_string(JOB + "    scrape_interval: 5x\n", "c.yml")
    e = exc.value
    assert (e.source, e.line, e.path, e.reason) == (
        "c.yml", 3, "scrape_configs[0].scrape_interval", 'invalid duration "5x"')


@pytest.mark.parametrize(
    ("text", "line", "where"),
    [
        # The offending field comes first in its rule, so the rule's line and the
        # field's line are one.
        (JOB + "    relabel_configs:\n      - action: keep\n        regex: a\n"
               "      - regex: '('\n        action: replace\n",
         6, "scrape_configs[0].relabel_configs"),
        (JOB + "    metric_relabel_configs:\n      - action: bogus\n        source_labels: [a]\n",
         4, "scrape_configs[0].metric_relabel_configs"),
        ("remote_write:\n  - url: http://a/w\n    write_relabel_configs:\n"
         "      - action: drop\n        regex: x\n      - regex: '[z'\n",
         6, "remote_write[0].write_relabel_configs"),
    ],
)
def test_bad_relabel_rule_names_its_line(text: str, line: int, where: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_string(text, "clymene.yml")
    message = str(exc.value)
    # The line of the offending rule (or of its offending field), then relabel's own
    # message, which names the rule list.
    assert message.startswith(f"clymene.yml:{line}: "), message
    assert where in message
    assert isinstance(exc.value.__cause__, relabel.RelabelConfigError)


def test_load_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yml"
    with pytest.raises(ConfigError) as exc:
        load_file(missing)
    assert str(exc.value) == f"{missing}:0: cannot read config file: No such file or directory"

    bad = tmp_path / "bad.yml"
    bad.write_text("global:\n  scrape_interval: 1m\nscrape_configs:\n  - job_name: x\n"
                   "    static_configs: [{targets: ['a:1']}]\n    honor_labels: maybe\n")
    with pytest.raises(ConfigError) as exc:
        load_file(bad)
    assert str(exc.value) == (
        f'{bad}:6: scrape_configs[0].honor_labels: expected true or false, got "maybe"')

    # A relative path names the file as given and resolves against its directory.
    good = tmp_path / "sub" / "ok.yml"
    good.parent.mkdir()
    good.write_text("scrape_configs:\n  - job_name: x\n    file_sd_configs: [{files: [t.json]}]\n")
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        cfg = load_file("sub/ok.yml")
    finally:
        os.chdir(old)
    assert cfg.source == "sub/ok.yml"
    assert cfg.scrape_configs[0].file_sd_configs[0].files == (str(tmp_path / "sub" / "t.json"),)
