"""Pipeline stages with promtail's semantics, timestamps, templates and config errors."""

from __future__ import annotations

import pytest
import yaml

from clymene.logs import config as log_config
from clymene.logs import stages, timefmt
from clymene.logs.gotemplate import TemplateError, compile_template
from clymene.logs.tail import Entry


class Tail:
    last_ts = 0


def run(spec: str, lines: list[str], labels: dict[str, str] | None = None, tail=None):
    pipe = stages.build(yaml.safe_load(spec))
    tail = tail or Tail()
    entries = [Entry(dict(labels or {"job": "x"}), line, 1000, tail, i * 100)
               for i, line in enumerate(lines)]
    return [(e.labels, e.line, e.ts) for e in pipe.run(entries)], pipe


def test_cri_joins_partial_lines_and_passes_other_lines_on():
    out, pipe = run("- cri: {}", [
        "2024-01-01T00:00:00.5Z stderr P ab",
        "2024-01-01T00:00:00.7Z stdout F whole",
        "2024-01-01T00:00:01Z stderr F cd",
        "not cri at all",
        "2024-01-01T00:00:02+02:00 stdout P held",
    ])
    assert out == [
        ({"job": "x", "stream": "stdout"}, "whole", 1704067200_700000000),
        ({"job": "x", "stream": "stderr"}, "abcd", 1704067200_500000000),
        ({"job": "x"}, "not cri at all", 1000),
    ]
    tail = pipe.stages[0].partial and next(iter(pipe.stages[0].partial))[0]
    assert pipe.held(tail) == 400  # the held partial line's start offset
    assert [e.line for e in pipe.flush(0, True)] == ["held"]


def test_cri_keeps_extracted_values_for_later_stages():
    out, _ = run("- cri: {}\n- labels: {flags: }\n- output: {source: time}",
                 ["2024-01-01T00:00:00Z stdout F x"])
    assert out == [({"job": "x", "stream": "stdout", "flags": "F"}, "2024-01-01T00:00:00Z",
                    1704067200_000000000)]


def test_docker_json_and_partials():
    out, _ = run("- docker: {}", [
        '{"log":"par","stream":"stdout","time":"2024-01-01T00:00:00.000000001Z"}',
        '{"log":"tial\\n","stream":"stdout","time":"2024-01-01T00:00:00.000000002Z"}',
        '{"log":"err\\n","stream":"stderr","time":"2024-01-01T00:00:03Z"}',
        "plain",
    ])
    assert out == [
        ({"job": "x", "stream": "stdout"}, "partial", 1704067200_000000001),
        ({"job": "x", "stream": "stderr"}, "err", 1704067203_000000000),
        ({"job": "x"}, "plain", 1000),
    ]


def test_json_labels_output():
    out, _ = run("- json: {expressions: {lvl: level, msg: '', n: 'a.b[1]', q: '\"k-1\"'}}\n"
                 "- labels: {lvl: , n: }\n- output: {source: msg}",
                 ['{"level":"info","msg":"hi","a":{"b":[1,{"c":2}]},"k-1":"z"}', "not json"])
    assert out == [({"job": "x", "lvl": "info", "n": '{"c":2}'}, "hi", 1000),
                   ({"job": "x"}, "not json", 1000)]
    out, _ = run("- json: {expressions: {a: }, drop_malformed: true}", ["{", '{"a":1}'])
    assert [line for _, line, _ in out] == ['{"a":1}']


def test_json_full_jmespath_expressions():
    # Filters, projections, pipes and functions, as promtail's json stage accepts them.
    doc = ('{"items":[{"k":"a","v":1},{"k":"b","v":2}],"user":{"name":"kim"},'
           '"tags":["x","y"]}')
    out, _ = run("- json: {expressions: {b: \"items[?k=='b'].v | [0]\", "
                 "n: 'length(tags)', u: 'user.name', ks: 'items[*].k'}}\n"
                 "- labels: {b: , n: , u: , ks: }", [doc])
    assert out == [({"job": "x", "b": "2", "n": "2", "u": "kim", "ks": '["a","b"]'},
                    doc, 1000)]


def test_json_invalid_jmespath_is_refused_at_load():
    with pytest.raises(stages.StageError, match=r"expressions\.bad: invalid JMESPath"):
        run("- json: {expressions: {bad: 'items[?'}}", ["{}"])


def test_logfmt_template_labels():
    out, _ = run("- logfmt: {mapping: {lvl: level, d: }}\n"
                 "- template: {source: lvl, template: '{{ .Value | ToUpper }}-{{ .d }}'}\n"
                 "- labels: {lvl: }", ['level=warn d="x y" other'])
    assert out == [({"job": "x", "lvl": "WARN-x y"}, 'level=warn d="x y" other', 1000)]


def test_regex_timestamp_go_layout_and_failure_actions():
    spec = ("- regex: {expression: '^(?P<ts>\\S+) (?P<m>.*)$'}\n"
            "- timestamp: {source: ts, format: '2006-01-02_15:04:05', location: Europe/Paris}")
    out, _ = run(spec, ["2024-02-03_04:05:06 hi"])
    assert out[0][2] == 1706929506_000000000  # 04:05:06 in Paris is 03:05:06 UTC
    tail = Tail()
    tail.last_ts = 5000
    out, _ = run(spec.replace("'2006-01-02_15:04:05', location: Europe/Paris", "RFC3339"),
                 ["2024-02-03T04:05:06+01:00 a", "bad b", "bad c"], tail=tail)
    assert [ts for _, _, ts in out] == [1706929506_000000000, 1706929506_000000001,
                                        1706929506_000000002]  # fudged: last + 1 ns
    out, _ = run(spec.replace("location: Europe/Paris", "action_on_failure: skip"),
                 ["bad b"])
    assert out[0][2] == 1000


@pytest.mark.parametrize("fmt,text,ns", [
    ("RFC1123", "Mon, 02 Jan 2006 15:04:05 UTC", 1136214245_000000000),
    ("RFC1123Z", "Mon, 02 Jan 2006 15:04:05 -0700", 1136239445_000000000),
    ("RFC3339", "2006-01-02T15:04:05Z", 1136214245_000000000),
    ("RFC3339Nano", "2006-01-02T15:04:05.999999999-07:00", 1136239445_999999999),
    ("RFC822Z", "02 Jan 06 15:04 -0700", 1136239440_000000000),
    ("ANSIC", "Mon Jan  2 15:04:05 2006", 1136214245_000000000),
    ("RubyDate", "Mon Jan 02 15:04:05 -0700 2006", 1136239445_000000000),
    ("Unix", "1562708916.414123", 1562708916_414123000),
    ("Unix", "1562708916", 1562708916_000000000),
    ("UnixMs", "1562708916414", 1562708916_414000000),
    ("UnixUs", "1562708916414123", 1562708916_414123000),
    ("UnixNs", "1562708916000000001", 1562708916_000000001),
    ("2006-01-02 15:04:05.000", "2024-05-06 07:08:09.123", 1714979289_123000000),
    ("02/Jan/2006:15:04:05 -0700", "10/Oct/2023:13:55:36 -0700", 1696971336_000000000),
    ("2006-01-02T15:04:05", "2024-05-06T07:08:09.5", 1714979289_500000000),  # Go: fraction ok
])
def test_time_formats(fmt, text, ns):
    assert timefmt.compile_format(fmt)(text) == ns


def test_time_format_errors():
    with pytest.raises(ValueError, match="cannot parse"):
        timefmt.compile_format("RFC1123")("2006-01-02")
    with pytest.raises(ValueError, match="not a named format"):
        timefmt.compile_format("yyyy-mm-dd")
    with pytest.raises(ValueError, match="unknown location"):
        timefmt.compile_format("RFC3339", "Mars/Olympus")


def test_replace_template_and_named_groups():
    out, _ = run("- replace: {expression: 'password=(\\S+)', replace: '****'}",
                 ["user=a password=secret x password=2"])
    assert out[0][1] == "user=a password=**** x password=****"
    out, _ = run("- regex: {expression: '(?P<ip>\\d+\\.\\d+)'}\n"
                 "- replace: {expression: '(?P<ip>\\d+)\\.', source: ip, "
                 "replace: '{{ .Value | ToUpper }}X.'}\n- labels: {ip: }", ["from 10.2"])
    assert out[0][0]["ip"] == "10X..2"


def test_match_drop_static_labels_labeldrop_labelallow():
    out, _ = run("- match: {selector: '{job=\"x\"} |= \"drop\"', action: drop}\n"
                 "- static_labels: {env: prod}\n- labeldrop: [job]", ["keep", "drop me"])
    assert out == [({"env": "prod"}, "keep", 1000)]
    out, _ = run("- labelallow: [app]", ["a"], {"app": "1", "pod": "p"})
    assert out[0][0] == {"app": "1"}
    out, _ = run("- match:\n    selector: '{app=~\"w.*\", pod!=\"skip\"} !~ \"^#\"'\n"
                 "    stages:\n    - regex: {expression: '(?P<a>\\w+)'}\n"
                 "    - labels: {a: }",
                 ["hello", "# comment"], {"app": "web", "pod": "p"})
    assert out == [({"app": "web", "pod": "p", "a": "hello"}, "hello", 1000),
                   ({"app": "web", "pod": "p"}, "# comment", 1000)]


def test_drop_conditions_are_anded():
    out, _ = run("- drop: {expression: 'debug'}", ["debug x", "info y"])
    assert [line for _, line, _ in out] == ["info y"]
    out, _ = run("- drop: {longer_than: 5, expression: 'a'}", ["a", "aaaaaaa", "bbbbbbb"])
    assert [line for _, line, _ in out] == ["a", "bbbbbbb"]
    out, _ = run("- regex: {expression: '(?P<lvl>\\w+)'}\n"
                 "- drop: {source: lvl, value: debug}", ["debug 1", "info 2"])
    assert [line for _, line, _ in out] == ["info 2"]
    out, _ = run("- drop: {older_than: 1h}", ["old"])  # ts 1000 ns after the epoch
    assert out == []


def test_multiline_blocks_and_timeout():
    out, pipe = run("- multiline: {firstline: '^\\[', max_wait_time: 3s, max_lines: 3}",
                    ["[1] a", " b", "[2] c", " d", " e", " f"])
    assert [line for _, line, _ in out] == ["[1] a\n b", "[2] c\n d\n e"]
    assert pipe.flush(0, False) == []
    tail = next(iter(pipe.stages[0].blocks))[0]
    assert pipe.held(tail) == 500  # " f" (line 5) started a block of its own
    assert [e.line for e in pipe.flush(1e12, False)] == [" f"]  # past max_wait_time
    out, _ = run("- multiline: {firstline: '^\\['}", [" lone", "[1] a"])
    assert [line for _, line, _ in out] == [" lone"]


def test_tenant_and_limit():
    out, _ = run("- tenant: {value: t1}", ["x"])
    assert out[0][0] == {"job": "x", "__tenant_id__": "t1"}
    out, _ = run("- tenant: {label: job}", ["x"])
    assert out[0][0]["__tenant_id__"] == "x"
    out, pipe = run("- limit: {rate: 1, burst: 3, drop: true}", ["a", "b", "c", "d", "e"])
    assert [line for _, line, _ in out] == ["a", "b", "c"]
    assert pipe.stages[0].dropped == 2


def test_go_templates():
    t = compile_template('{{ if eq .a "x" }}yes{{ else if .b }}b{{ else }}no{{ end }}-'
                         '{{ Replace .s "o" "0" -1 }}-{{ .missing }}-{{ TrimSpace "  t " }}')
    assert t({"a": "x", "s": "foo"}) == "yes-f00-<no value>-t"
    assert t({"a": "y", "b": "1", "s": ""}) == "b--<no value>-t"
    assert compile_template("{{- .a -}} \n {{ .b }}")({"a": 1, "b": 2}) == "12"
    assert compile_template('{{ regexReplaceAll "(a+)" .v "<${1}>" }}')({"v": "baac"}) == "b<aa>c"
    with pytest.raises(TemplateError, match="not defined"):
        compile_template("{{ Nope .a }}")
    with pytest.raises(TemplateError, match="missing"):
        compile_template("{{ if .a }}x")


@pytest.mark.parametrize("spec,message", [
    ("- bogus: {}", "pipeline_stages[0]: unknown stage type 'bogus'"),
    ("- regex: {expression: '(a'}", "pipeline_stages[0].regex: invalid regex"),
    ("- regex: {expression: 'a'}", "requires at least one named capture group"),
    ("- json: {}", "pipeline_stages[0].json: expressions is required"),
    ("- timestamp: {source: t, format: RFC3339, action_on_failure: x}",
     "invalid action_on_failure"),
    ("- match: {selector: 'app=1', stages: [{cri: {}}]}", "invalid selector"),
    ("- match: {selector: '{a=\"1\"}', action: drop, stages: [{cri: {}}]}",
     "stages are not allowed with action drop"),
    ("- match: {selector: '{a=\"1\"}', stages: [{nope: {}}]}",
     "pipeline_stages[0].match.stages[0]: unknown stage type 'nope'"),
    ("- labels: {'bad-name': }", "invalid label name"),
    ("- multiline: {}", "expression is required"),
    ("- tenant: {}", "exactly one of source, value or label"),
    ("- limit: {rate: 0, burst: 1}", "rate and burst must be > 0"),
    ("- drop: {}", "at least one of source, expression"),
    ("- cri: {}\n  docker: {}", "exactly one key"),
])
def test_invalid_stages_are_refused(spec, message):
    with pytest.raises(stages.StageError) as exc:
        stages.build(yaml.safe_load(spec))
    assert message in str(exc.value)


CONFIG = """\
server:
  http_listen_port: 9080
positions:
  filename: /tmp/positions.yaml
  sync_period: 5s
clients:
  - url: http://loki:3100/loki/api/v1/push
scrape_configs:
  - job_name: pods
    static_configs:
      - targets: [localhost]
        labels:
          job: varlogs
          __path__: /var/log/pods/*/*/*.log
    relabel_configs:
      - source_labels: [job]
        target_label: cluster
        replacement: target-cluster
    pipeline_stages:
      - cri: {}
"""


def test_config_loads_and_targets_relabel():
    cfg = log_config.load_string(CONFIG, "p.yml")
    assert cfg.positions_file == "/tmp/positions.yaml" and cfg.positions_sync == 5.0
    assert cfg.clients[0]["url"] == "http://loki:3100/loki/api/v1/push"
    [(sc, labels)] = log_config.targets_of(cfg, "node-1")
    assert sc.job_name == "pods"
    assert labels == {"__address__": "localhost", "job": "varlogs", "cluster": "target-cluster",
                      "__path__": "/var/log/pods/*/*/*.log", "__host__": "node-1"}


@pytest.mark.parametrize("edit,where", [
    (("      - cri: {}", "      - cri: {}\n      - json: {expressions: 3}"),
     "p.yml:21: scrape_configs[0].pipeline_stages[1].json: expressions is required"),
    (("      - cri: {}", "      - cri: {}\n      - regex:\n          expression: '(x'"),
     "p.yml:22: scrape_configs[0].pipeline_stages[1].regex: invalid regex"),
    (("        replacement: target-cluster", "        action: nope"),
     "p.yml:16: scrape_configs[0].relabel_configs[0]"),
    (("  sync_period: 5s", "  sync_period: five"), "p.yml:5: positions.sync_period"),
    (("  - job_name: pods", "  - job_nam: pods"), "p.yml:9: scrape_configs[0]: unknown field"),
    (("server:", "bogus: 1\nserver:"), "p.yml:1: config: unknown field 'bogus'"),
    (("    static_configs:", "    journal: {}\n    static_configs:"),
     "p.yml:10: scrape_configs[0]: journal is not supported"),
    (("  http_listen_port: 9080", "  http_listen_port: [9080"), "p.yml:3: invalid YAML"),
])
def test_config_errors_name_file_and_line(edit, where):
    with pytest.raises(log_config.LogConfigError) as exc:
        log_config.load_string(CONFIG.replace(*edit), "p.yml")
    assert str(exc.value).startswith(where), str(exc.value)
