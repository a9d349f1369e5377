"""Target building (Prometheus' populateLabels) and file_sd parsing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from clymene import relabel
from clymene.config import format_duration
from clymene.discovery.file_sd import FileSD, FileSDError, parse_file
from clymene.discovery.targets import TargetGroup, populate


def _sc(**kw):
    base = dict(job_name="node", scrape_interval=15.0, scrape_timeout=10.0,
                metrics_path="/metrics", scheme="http", params={}, relabel_configs=[])
    base.update(kw)
    return SimpleNamespace(**base)


def test_defaults_and_instance():
    active, dropped, errors = populate(_sc(), TargetGroup("s", [{"__address__": "h:9100"}],
                                                          {"env": "prod"}), "rev")
    assert errors == [] and dropped == []
    [t] = active
    assert t.labels == {"env": "prod", "instance": "h:9100", "job": "node"}
    assert t.scrape_url == "http://h:9100/metrics"
    assert t.discovered_labels == {
        "__address__": "h:9100", "__metrics_path__": "/metrics", "__scheme__": "http",
        "__scrape_interval__": "15s", "__scrape_timeout__": "10s", "env": "prod", "job": "node"}
    assert (t.interval, t.timeout) == (15.0, 10.0)


def test_relabeling_params_and_default_port():
    rules = relabel.compile_rules([
        {"source_labels": ["__address__"], "target_label": "__param_target"},
        {"target_label": "__address__", "replacement": "blackbox"},
        {"source_labels": ["__param_target"], "target_label": "instance"},
        {"source_labels": ["env"], "regex": "dev", "action": "drop"},
    ], "relabel_configs")
    sc = _sc(scheme="https", params={"module": ["http_2xx"]}, relabel_configs=rules)
    group = TargetGroup("s", [{"__address__": "example.org", "env": "prod"},
                              {"__address__": "x", "env": "dev"}])
    active, dropped, errors = populate(sc, group, "rev")
    assert errors == []
    [t] = active
    assert t.scrape_url == "https://blackbox:443/metrics?module=http_2xx&target=example.org"
    assert t.labels == {"env": "prod", "instance": "example.org", "job": "node"}
    assert len(dropped) == 1 and dropped[0]["__address__"] == "x"


def test_bad_targets_are_errors_not_crashes():
    rules = relabel.compile_rules([{"target_label": "__scrape_timeout__",
                                    "replacement": "1m"}], "relabel_configs")
    active, _, errors = populate(_sc(relabel_configs=rules),
                                 TargetGroup("src", [{"__address__": "h:1"}]), "rev")
    assert active == []
    assert errors == ["src: target h:1: scrape timeout cannot be greater than scrape "
                      "interval ('1m' > '15s')"]


def test_format_duration():
    assert [format_duration(s) for s in (15, 60, 90, 3600, 0.5, 0, 86400 * 14)] == \
        ["15s", "1m", "1m30s", "1h", "500ms", "0s", "2w"]


def test_file_sd_formats_and_errors(tmp_path):
    groups = parse_file("t.yml", b"- targets: ['a:1', 'b:2']\n  labels: {team: x}\n")
    assert [g.targets for g in groups] == [[{"__address__": "a:1"}, {"__address__": "b:2"}]]
    assert groups[0].labels == {"team": "x", "__meta_filepath": "t.yml"}
    assert parse_file("t.json", b"[]") == []
    with pytest.raises(FileSDError, match=r"t.json: group 0: unknown field 'target'"):
        parse_file("t.json", b'[{"target": ["a:1"]}]')
    with pytest.raises(FileSDError, match=r"t.yml: group 0: label 'n' must be a string"):
        parse_file("t.yml", b"- targets: ['a:1']\n  labels: {n: 1}\n")


def test_file_sd_keeps_previous_targets_of_a_broken_file(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[{"targets": ["a:1"]}]')
    sd = FileSD([str(tmp_path / "*.json")], refresh_interval=300)
    assert [g.targets for g in sd.groups()] == [[{"__address__": "a:1"}]]
    path.write_text('[{"targets": ["a:1", ')  # half written
    assert [g.targets for g in sd.groups()] == [[{"__address__": "a:1"}]]
    path.write_text('[{"targets": ["b:1"]}]  ')
    assert [g.targets for g in sd.groups()] == [[{"__address__": "b:1"}]]
    path.unlink()
    assert sd.groups() == []
