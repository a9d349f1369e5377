"""clymene.relabel: Prometheus 2.42 relabeling semantics, validation and the RE2 translation.

Cases marked "prometheus" restate model/relabel/relabel_test.go; the others were checked
against the Debian Prometheus 2.42 binary (promtool check config, /api/v1/targets).
"""

import hashlib

import pytest

from clymene.relabel import RelabelConfigError, Rule, compile_rules, relabel


def run(labels: dict[str, str], *rules: dict) -> dict[str, str] | None:
    return relabel(labels, compile_rules(list(rules), "relabel_configs"))


def error(*rules: dict, where: str = "relabel_configs") -> RelabelConfigError:
    with pytest.raises(RelabelConfigError) as info:
        compile_rules(list(rules), where)
    return info.value


# --- Prometheus' TestRelabel, restated ---------------------------------------------------------

PROMETHEUS_CASES = [
    pytest.param(
        {"a": "foo", "b": "bar", "c": "baz"},
        [{"source_labels": ["a"], "regex": "f(.*)", "target_label": "d",
          "replacement": "ch${1}-ch${1}"}],
        {"a": "foo", "b": "bar", "c": "baz", "d": "choo-choo"}, id="replace-braced-groups"),
    pytest.param(
        {"a": "foo", "b": "bar", "c": "baz"},
        [{"source_labels": ["a", "b"], "regex": "f(.*);(.*)r", "target_label": "a",
          "replacement": "b${1}${2}m"},
         {"source_labels": ["c", "a"], "regex": "(b).*b(.*)ba(.*)", "target_label": "d",
          "replacement": "$1$2$2$3"}],
        {"a": "boobam", "b": "bar", "c": "baz", "d": "boooom"}, id="replace-chained"),
    pytest.param(
        {"a": "foo"},
        [{"source_labels": ["a"], "regex": ".*o.*", "action": "drop"},
         {"source_labels": ["a"], "regex": "f(.*)", "target_label": "d",
          "replacement": "ch$1-ch$1"}],
        None, id="drop-stops-processing"),
    pytest.param(
        {"a": "foo", "b": "bar"},
        [{"source_labels": ["a"], "regex": ".*o.*", "action": "drop"}],
        None, id="drop-match"),
    pytest.param(
        {"a": "abc"},
        [{"source_labels": ["a"], "regex": ".*(b).*", "target_label": "d"}],
        {"a": "abc", "d": "b"}, id="replace-default-replacement"),
    pytest.param(
        {"a": "foo"}, [{"source_labels": ["a"], "regex": "no-match", "action": "drop"}],
        {"a": "foo"}, id="drop-no-match"),
    pytest.param(
        {"a": "foo"}, [{"source_labels": ["a"], "regex": "f|o", "action": "drop"}],
        {"a": "foo"}, id="drop-regex-is-anchored"),
    pytest.param(
        {"a": "foo"}, [{"source_labels": ["a"], "regex": "no-match", "action": "keep"}],
        None, id="keep-no-match"),
    pytest.param(
        {"a": "foo"}, [{"source_labels": ["a"], "regex": "f.*", "action": "keep"}],
        {"a": "foo"}, id="keep-match"),
    pytest.param(
        {"a": "boo"},
        [{"source_labels": ["a"], "regex": "f", "target_label": "b", "replacement": "bar"}],
        {"a": "boo"}, id="replace-no-match-no-change"),
    pytest.param(
        {"a": "foo", "b": "bar", "c": "baz"},
        [{"source_labels": ["c"], "target_label": "d", "action": "hashmod", "modulus": 1000}],
        {"a": "foo", "b": "bar", "c": "baz", "d": "976"}, id="hashmod"),
    pytest.param(
        {"a": "foo\nbar"},
        [{"source_labels": ["a"], "target_label": "b", "action": "hashmod", "modulus": 1000}],
        {"a": "foo\nbar", "b": "734"}, id="hashmod-newline"),
    pytest.param(
        {"a": "foo", "b1": "bar", "b2": "baz"},
        [{"regex": "(b.*)", "replacement": "bar_${1}", "action": "labelmap"}],
        {"a": "foo", "b1": "bar", "b2": "baz", "bar_b1": "bar", "bar_b2": "baz"},
        id="labelmap"),
    pytest.param(
        {"a": "foo", "__meta_my_bar": "aaa", "__meta_my_baz": "bbb", "__meta_other": "ccc"},
        [{"regex": "__meta_(my.*)", "replacement": "${1}", "action": "labelmap"}],
        {"a": "foo", "__meta_my_bar": "aaa", "__meta_my_baz": "bbb", "__meta_other": "ccc",
         "my_bar": "aaa", "my_baz": "bbb"}, id="labelmap-meta"),
    pytest.param(
        {"a": "some-name-value"},
        [{"source_labels": ["a"], "regex": "some-([^-]+)-([^,]+)", "replacement": "${2}",
          "target_label": "${1}"}],
        {"a": "some-name-value", "name": "value"}, id="replace-target-template"),
    pytest.param(
        {"a": "some-name-value"},
        [{"source_labels": ["a"], "regex": "some-([^-]+)-([^,]+)", "replacement": "${3}",
          "target_label": "${1}"}],
        {"a": "some-name-value"}, id="replace-empty-result-deletes-missing"),
    pytest.param(
        {"a": "some-name-0"},
        [{"source_labels": ["a"], "regex": "some-([^-]+)-([^,]+)", "replacement": "${1}",
          "target_label": "${3}"},
         {"source_labels": ["a"], "regex": "some-([^-]+)(-[^,]+)", "replacement": "${1}",
          "target_label": "${3}"}],
        {"a": "some-name-0"}, id="replace-invalid-expanded-target-skipped"),
    pytest.param(
        {"__meta_sd_tags": "path:/secret,job:some-job,label:foo=bar"},
        [{"source_labels": ["__meta_sd_tags"], "regex": "(?:.+,|^)path:(/[^,]+).*",
          "replacement": "${1}", "target_label": "__metrics_path__"},
         {"source_labels": ["__meta_sd_tags"], "regex": "(?:.+,|^)job:([^,]+).*",
          "replacement": "${1}", "target_label": "job"},
         {"source_labels": ["__meta_sd_tags"], "regex": "(?:.+,|^)label:([^=]+)=([^,]+).*",
          "replacement": "${2}", "target_label": "${1}"}],
        {"__meta_sd_tags": "path:/secret,job:some-job,label:foo=bar",
         "__metrics_path__": "/secret", "job": "some-job", "foo": "bar"}, id="real-life"),
    pytest.param(
        {"__meta_kubernetes_pod_container_port_name": "foo",
         "__meta_kubernetes_pod_annotation_XXX_metrics_port": "9091"},
        [{"regex": "^__meta_kubernetes_pod_container_port_name$", "action": "labeldrop"},
         {"source_labels": ["__meta_kubernetes_pod_annotation_XXX_metrics_port"],
          "regex": "(.+)", "replacement": "metrics",
          "target_label": "__meta_kubernetes_pod_container_port_name"},
         {"source_labels": ["__meta_kubernetes_pod_container_port_name"],
          "regex": "^metrics$", "action": "keep"}],
        {"__meta_kubernetes_pod_annotation_XXX_metrics_port": "9091",
         "__meta_kubernetes_pod_container_port_name": "metrics"}, id="issue-12283"),
    pytest.param(
        {"a": "foo", "b1": "bar", "b2": "baz"}, [{"regex": "(b.*)", "action": "labelkeep"}],
        {"b1": "bar", "b2": "baz"}, id="labelkeep"),
    pytest.param(
        {"a": "foo", "b1": "bar", "b2": "baz"}, [{"regex": "(b.*)", "action": "labeldrop"}],
        {"a": "foo"}, id="labeldrop"),
    pytest.param(
        {"foo": "bAr123Foo"},
        [{"source_labels": ["foo"], "action": "uppercase", "target_label": "foo_uppercase"},
         {"source_labels": ["foo"], "action": "lowercase", "target_label": "foo_lowercase"}],
        {"foo": "bAr123Foo", "foo_lowercase": "bar123foo", "foo_uppercase": "BAR123FOO"},
        id="lowercase-uppercase"),
    pytest.param(
        {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
        [{"source_labels": ["__tmp_port"], "action": "keepequal", "target_label": "__port1"}],
        {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"}, id="keepequal-equal"),
    pytest.param(
        {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
        [{"source_labels": ["__tmp_port"], "action": "dropequal", "target_label": "__port1"}],
        None, id="dropequal-equal"),
    pytest.param(
        {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
        [{"source_labels": ["__tmp_port"], "action": "dropequal", "target_label": "__port2"}],
        {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"}, id="dropequal-differ"),
    pytest.param(
        {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
        [{"source_labels": ["__tmp_port"], "action": "keepequal", "target_label": "__port2"}],
        None, id="keepequal-differ"),
]


@pytest.mark.parametrize(("labels", "rules", "expected"), PROMETHEUS_CASES)
def test_prometheus_relabel_cases(labels, rules, expected):
    before = dict(labels)
    assert run(labels, *rules) == expected
    assert labels == before  # the input is never modified


# --- defaults and the public shapes ---------------------------------------------------------------

def test_defaults():
    (rule,) = compile_rules([{"source_labels": ["a"], "target_label": "b"}], "relabel_configs")
    assert isinstance(rule, Rule)
    assert (rule.action, rule.source_labels, rule.separator, rule.regex, rule.modulus,
            rule.target_label, rule.replacement) == ("replace", ("a",), ";", "(.*)", 0, "b", "$1")
    assert relabel({"a": "x"}, [rule]) == {"a": "x", "b": "x"}


def test_default_separator_and_missing_sources_are_empty():
    assert run({"a": "foo"}, {"source_labels": ["a", "nope", "a"], "target_label": "e"}) == \
        {"a": "foo", "e": "foo;;foo"}
    assert run({"a": "foo"}, {"source_labels": ["a", "nope", "a"], "separator": "::",
                              "target_label": "e"}) == {"a": "foo", "e": "foo::::foo"}


def test_action_is_case_insensitive():
    rules = compile_rules([{"action": "KeEp", "source_labels": ["a"], "regex": "x"}], "r")
    assert rules[0].action == "keep"
    assert relabel({"a": "y"}, rules) is None


def test_no_rules_returns_a_copy():
    labels = {"a": "1"}
    out = relabel(labels, [])
    assert out == labels and out is not labels
    assert compile_rules(None, "relabel_configs") == []
    assert compile_rules([], "relabel_configs") == []


def test_null_fields_take_go_zero_values():
    # go-yaml resets a field given as null: the separator and replacement become "",
    # the regex becomes the empty regex (matches only "").
    assert run({"a": "x", "b": "y"}, {"source_labels": ["a", "b"], "separator": None,
                                      "target_label": "c"}) == {"a": "x", "b": "y", "c": "xy"}
    assert run({"a": "x", "c": "old"},
               {"source_labels": ["a"], "replacement": None, "target_label": "c"}) == {"a": "x"}
    assert run({"a": "x"}, {"source_labels": ["a"], "regex": None, "action": "keep"}) is None
    assert run({"a": "x"}, {"source_labels": ["nope"], "regex": None, "action": "keep"}) == \
        {"a": "x"}


def test_integer_scalars_are_text():
    assert run({"a": "200"}, {"source_labels": ["a"], "regex": 200, "action": "keep"}) == \
        {"a": "200"}


def test_rules_compare_by_configuration():
    one = compile_rules([{"source_labels": ["a"], "target_label": "b"}], "x")
    two = compile_rules([{"source_labels": ["a"], "target_label": "b", "separator": ";"}], "y")
    assert one == two


# --- replace --------------------------------------------------------------------------------------

def test_replace_empty_value_with_default_regex_sets_or_deletes():
    assert run({"a": "foo", "d": "x"},
               {"source_labels": ["nope"], "target_label": "d", "replacement": ""}) == {"a": "foo"}
    assert run({"a": "foo", "d": "x"},
               {"source_labels": ["nope"], "target_label": "e", "replacement": "new"}) == \
        {"a": "foo", "d": "x", "e": "new"}


def test_replace_empty_group_deletes_target():
    assert run({"a": "foo", "d": "x"}, {"source_labels": ["a"], "regex": "f(x?)oo",
                                        "target_label": "d"}) == {"a": "foo"}


def test_replace_target_templates():
    rule = {"source_labels": ["a"], "regex": "(.*)", "target_label": "x_$1", "replacement": "$1"}
    assert run({"a": "a_b"}, rule) == {"a": "a_b", "x_a_b": "a_b"}
    assert run({"a": "a-b"}, rule) == {"a": "a-b"}  # "x_a-b" is no label name: skipped
    assert run({"a": "some-9-value"},
               {"source_labels": ["a"], "regex": "some-([^-]+)-([^,]+)", "target_label": "${1}",
                "replacement": "${2}"}) == {"a": "some-9-value"}


def test_default_regex_does_not_match_newline():
    # Prometheus 2.x anchors with ^(?:...)$ and no (?s): `.` stops at a newline.
    assert run({"a": "x\ny"}, {"source_labels": ["a"], "target_label": "b"}) == {"a": "x\ny"}


def test_unbalanced_regex_escapes_the_anchors_as_in_go():
    # "^(?:" + "x)|(z" + ")$": either x at the start or z at the end, found anywhere.
    rule = {"source_labels": ["a"], "regex": "x)|(z", "target_label": "r",
            "replacement": "[$1]"}
    assert run({"a": "xyz"}, rule) == {"a": "xyz", "r": "[]"}
    assert run({"a": "yyz"}, rule) == {"a": "yyz", "r": "[z]"}
    assert run({"a": "zzx"}, rule) == {"a": "zzx"}


# --- $ expansion (Go's Regexp.Expand) ----------------------------------------------------------

@pytest.mark.parametrize(("regex", "replacement", "expected"), [
    ("f(.*)", "ch${1}-ch$1x", "choo-ch"),  # $1x is the group named "1x": empty
    ("(?P<x>f)(o+)", "$x|${2}|$$|$|${|$0|$00|$3|${x}y", "f|oo|$|$|${|foo|||fy"),
    ("(f)(o)(o)", "$3$2$1", "oof"),
    ("(f)(o)(o)", "${1}_$2_${3}", "f_o"),  # $2_ is the group named "2_": empty
    ("(f)oo", "$$1", "$1"),
    ("(f)oo", "${1", "${1"),  # no closing brace: the $ is text
    ("(f)oo", "$-1", "$-1"),
    ("(f)oo", "$", "$"),
    ("(?P<n>x)?(?P<n>f)oo", "<$n>", "<f>"),  # a repeated name: the first group that matched
    ("(?P<n>x)?f(?P<n>y)?oo", "<$n>", "<>"),
    ("(?P<1>f)oo", "$1", "f"),
    ("(f)oo", "${1}é${1é}", "fé"),  # names run over Unicode letters
    ("(f)o(o)", "$01$1", "f"),  # leading zero: the name "01"
])
def test_expand(regex, replacement, expected):
    out = run({"a": "foo"}, {"source_labels": ["a"], "regex": regex, "target_label": "r",
                             "replacement": replacement})
    assert out == {"a": "foo", "r": expected}


def test_expand_to_empty_deletes():
    assert run({"a": "v", "r": "old"}, {"source_labels": ["a"], "regex": "(v)",
                                        "target_label": "r", "replacement": "$1é$1_é"}) == \
        {"a": "v"}


# --- hashmod ---------------------------------------------------------------------------------------

def go_sum64_mod(value: str, modulus: int) -> int:
    """Prometheus' hashmod by hand: sum64 ORs each md5 byte shifted by (15 - i) * 8 bits;
    Go shifts of 64 bits or more give 0, so only the last 8 bytes count."""
    digest = hashlib.md5(value.encode()).digest()
    total = 0
    for i, byte in enumerate(digest):
        shift = (len(digest) - i - 1) * 8
        if shift < 64:
            total |= byte << shift
    return (total & (1 << 64) - 1) % modulus


@pytest.mark.parametrize(("value", "modulus", "expected"), [
    ("baz", 1000, "976"),
    ("foo\nbar", 1000, "734"),
    ("x;y", 18446744073709551615, "15403037210241300238"),
    ("", 7, str(go_sum64_mod("", 7))),
    ("ünïcödé", 97, str(go_sum64_mod("ünïcödé", 97))),
])
def test_hashmod(value, modulus, expected):
    assert str(go_sum64_mod(value, modulus)) == expected
    out = run({"a": value}, {"source_labels": ["a"], "target_label": "h", "action": "hashmod",
                             "modulus": modulus})
    assert out["h"] == expected


def test_hashmod_joins_sources():
    out = run({"a": "x", "b": "y"}, {"source_labels": ["a", "b"], "target_label": "h",
                                     "action": "hashmod", "modulus": 18446744073709551615})
    assert out == {"a": "x", "b": "y", "h": "15403037210241300238"}


# --- lowercase / uppercase ----------------------------------------------------------------------

def test_case_mapping_is_go_simple_case_mapping():
    value = "ÀßİΣAΣ ǅ ᾳ ﬁ"  # Go maps rune by rune: ß and ﬁ stay, no final sigma
    out = run({"a": value}, {"source_labels": ["a"], "target_label": "lo", "action": "lowercase"},
              {"source_labels": ["a"], "target_label": "up", "action": "uppercase"})
    assert out == {"a": value, "lo": "àßiσaσ ǆ ᾳ ﬁ", "up": "ÀßİΣAΣ Ǆ ᾼ ﬁ"}


def test_lowercase_of_empty_deletes_target():
    assert run({"a": "x", "lo": "keep"},
               {"source_labels": ["nope"], "target_label": "lo", "action": "lowercase"}) == \
        {"a": "x"}


# --- labelmap / labeldrop / labelkeep -------------------------------------------------------

def test_labelmap_prefix():
    assert run({"mx_b1": "1", "mx_b2": "2", "c": "3"}, {"regex": "mx_(.*)", "action": "labelmap"}) \
        == {"mx_b1": "1", "mx_b2": "2", "b1": "1", "b2": "2", "c": "3"}


def test_labelmap_optional_group():
    assert run({"ab": "1", "b": "2", "xb": "3"},
               {"regex": "(.)?b", "replacement": "z_${1}", "action": "labelmap"}) == \
        {"ab": "1", "b": "2", "xb": "3", "z_": "2", "z_a": "1", "z_x": "3"}


def test_labelmap_collision_last_in_name_order_wins():
    assert run({"k_b": "2", "k_a": "1"},
               {"regex": "k_.*", "replacement": "same", "action": "labelmap"}) == \
        {"k_a": "1", "k_b": "2", "same": "2"}


def test_labelmap_unanchored_regex_replaces_all_matches_like_go():
    assert run({"aXb": "1", "job": "j"}, {"regex": "X)|(b", "replacement": "Q",
                                          "action": "labelmap"}) == \
        {"aXb": "1", "aXQ": "1", "job": "j", "joQ": "j"}
    # An empty match right after a match is not replaced (Go's ReplaceAllString).
    assert run({"abc": "1", "job": "j"}, {"regex": "a)|(x*", "replacement": "Y",
                                          "action": "labelmap"}) == \
        {"abc": "1", "YbcY": "1", "job": "j", "jobY": "j"}


def test_labeldrop_and_labelkeep_are_anchored():
    labels = {"a": "1", "ab": "2", "ba": "3"}
    assert run(labels, {"regex": "a", "action": "labeldrop"}) == {"ab": "2", "ba": "3"}
    assert run(labels, {"regex": "a", "action": "labelkeep"}) == {"a": "1"}
    assert run(labels, {"regex": "(?i)A.", "action": "labelkeep"}) == {"ab": "2"}


def test_keepequal_dropequal_missing_labels_are_empty():
    assert run({"a": "p"}, {"source_labels": ["nope"], "target_label": "nope2",
                            "action": "dropequal"}) is None
    assert run({"a": "p"}, {"source_labels": ["nope"], "target_label": "nope2",
                            "action": "keepequal"}) == {"a": "p"}


# --- RE2 syntax translated to Python re --------------------------------------------------------

@pytest.mark.parametrize(("regex", "value", "matches"), [
    ("1.2", "1\n2", False),
    ("(?s)1.2", "1\n2", True),
    ("1$", "1\n", False),  # Go's $ is the end of the text only
    ("1\n", "1\n", True),
    ("(?m)x$\n^y", "x\ny", True),
    ("x$\n^y", "x\ny", False),
    (r"x\z", "x", True),
    ("(?i)kK", "Kk", True),
    ("a(?i)b|c", "AB", False),  # (?i) lasts to the end of the group, across the |
    ("a(?i)b|c", "aB", True),
    ("a(?i)b|c", "C", True),
    ("(?i:a)b", "Ab", True),
    ("(?i:a)b", "AB", False),
    ("(?i)a(?-i)b", "Ab", True),
    ("(?i)a(?-i)b", "AB", False),
    ("(?i)a(?-i:b)c", "AbC", True),
    ("(?i)[^k]", "K", False),
    (r"\d+", "0123456789", True),
    (r"\d", "٣", False),  # ASCII digits only
    (r"\w+", "a_Z9", True),
    (r"\w", "é", False),
    (r"\s", " ", True),
    (r"\s", "\v", False),  # RE2's \s has no \v
    (r"\S\D\W", "xx-", True),
    (r".*\bbar", "foo bar", True),
    (r".*\bbar", "foobar", False),
    (r"é\b", "é", False),  # \b is ASCII: é is no word character
    (r"o\Bo", "oo", True),
    (r"\pL+", "aé\u03b1", True),
    (r"\pL", "1", False),
    (r"\PL", "1", True),
    (r"\p{Lu}", "A", True),
    (r"\p{Lu}", "a", False),
    (r"\pN\p{Nd}", "²3", True),
    (r"\p{Greek}+", "αβγ", True),
    (r"\p{Greek}", "a", False),
    (r"\p{^Greek}", "a", True),
    (r"\P{Greek}", "α", False),
    (r"\p{Han}\p{Cyrillic}", "中ж", True),
    (r"\p{Any}", "\n", True),
    (r"[[:alpha:]]\d", "x1", True),
    (r"[[:alpha:]]", "é", False),
    (r"[[:^digit:]]", "x", True),
    (r"[[:^digit:]]", "5", False),
    (r"[[:space:]]", "\v", True),
    (r"[[:punct:]]+", "!-/:@[`{~", True),
    (r"[[:xdigit:]]+", "09afAF", True),
    (r"[\d\p{Greek}_]+", "1α_", True),
    (r"[^\D]", "7", True),
    (r"[^\D]", "x", False),
    (r"[\PL]", "a", False),
    (r"[]a]+", "]a", True),
    (r"[^]a]", "b", True),
    (r"[a-]+", "-a", True),
    (r"[-a]", "-", True),
    (r"[\x{41}-\x{43}]+", "ABC", True),
    (r"[.*+?]+", ".*+?", True),
    (r"[[]", "[", True),
    (r"\Qa.b\E", "a.b", True),
    (r"\Qa.b\E", "axb", False),
    (r"\Qab\E*", "abbb", True),  # the star repeats the last literal only
    (r"\x{41}\x42\101\0", "ABA\x00", True),
    (r"\12", "\n", True),  # octal, not a backreference
    (r"\a\f\t\n\r\v", "\a\f\t\n\r\v", True),
    (r"\_\ \-\#", "_ -#", True),
    ("a{,3}", "a{,3}", True),  # no repeat in Go: literal text
    ("a{01}", "a{01}", True),
    ("a{2}", "aa", True),
    ("a{2,}", "aaaa", True),
    ("a{1,2}", "aaa", False),
    ("a{", "a{", True),
    ("}", "}", True),
    ("x*", "", True),
    ("", "", True),
    ("", "x", False),
    ("^*a", "a", True),
    ("a(?i)*", "aaA", False),  # Go: the star repeats `a`, the flag changes no atom
    ("a(?i)*", "aaa", True),
    ("(?:a*)*", "aa", True),
    ("(a*)+$", "aa", True),
    ("(a)(?:b)(?P<x>c)", "abc", True),
])
def test_re2_matching(regex, value, matches):
    assert (run({"a": value}, {"source_labels": ["a"], "regex": regex, "action": "keep"})
            is not None) is matches


@pytest.mark.parametrize(("regex", "value", "groups"), [
    ("(?U)(a+)(a*)", "aaa", "a,aa"),
    ("(?U)(a+?)(a*)", "aaa", "aaa,"),
    ("(a+?)(a*)", "aaa", "a,aa"),
    ("(a*?)(a{1,2}?)", "aaa", "a,aa"),
    ("(?U)(a{1,2})(a*)", "aaa", "a,aa"),
    ("(?i)(A)(b)", "ab", "a,b"),
])
def test_re2_greediness(regex, value, groups):
    out = run({"a": value}, {"source_labels": ["a"], "regex": regex, "target_label": "g",
                             "replacement": "$1,$2"})
    assert out["g"] == groups


@pytest.mark.parametrize(("regex", "message"), [
    ("(?=a)", "lookahead `(?=` is not supported"),
    ("(?!a)", "negative lookahead `(?!` is not supported"),
    ("(?<=a)", "lookbehind `(?<=` is not supported"),
    ("(?<!a)", "negative lookbehind `(?<!` is not supported"),
    ("(?>a)", "atomic group `(?>` is not supported"),
    ("(a)\\1", "backreference `\\1` is not supported"),
    ("(a)\\9", "backreference `\\9` is not supported"),
    ("(?P<n>a)(?P=n)", "backreference `(?P=name)` is not supported"),
    ("a*+", "invalid nested repetition operator `*+`"),
    ("a++", "invalid nested repetition operator `++`"),
    ("a{2}+", "invalid nested repetition operator `{2}+`"),
    ("a**", "invalid nested repetition operator `**`"),
    ("a*??", "invalid nested repetition operator `*??`"),
    ("*a", "missing argument to repetition operator `*`"),
    ("a|*b", "missing argument to repetition operator `*`"),
    ("(?i)*", "missing argument to repetition operator `*`"),
    ("{1}", "missing argument to repetition operator `{1}`"),
    ("a{1001}", "invalid repeat count `{1001}`"),
    ("a{3,2}", "invalid repeat count `{3,2}`"),
    ("(a{100}){11}", "invalid repeat count `{11}`"),
    ("((a{10}){10}){11}", "invalid repeat count `{11}`"),
    ("[z-a]", "invalid character class range `z-a`"),
    ("[a", "missing closing ]"),
    ("[]", "missing closing ]"),
    ("(", "missing closing )"),
    (")", "unexpected )"),
    ("a\\", "missing closing )"),  # the backslash escapes Prometheus' closing paren
    ("\\Qa.b", "missing closing )"),
    ("(?#c)", "comment group"),
    ("(?i-)a", "invalid or unsupported Perl syntax `(?i-)`"),
    ("(?x)a", "invalid or unsupported Perl syntax `(?x`"),
    ("(?P<a-b>x)", "invalid named capture `(?P<a-b>`"),
    ("(?P<>x)", "invalid named capture `(?P<>`"),
    ("\\Z", "invalid escape sequence `\\Z`"),
    ("\\C", "invalid escape sequence `\\C`"),
    ("\\e", "invalid escape sequence `\\e`"),
    ("\\k<n>", "invalid escape sequence `\\k`"),
    ("[\\b]", "invalid escape sequence `\\b`"),
    ("\\x{110000}", "invalid escape sequence"),
    ("[[:foo:]]", "invalid character class range `[:foo:]`"),
    ("\\p{Foo}", "unknown Unicode class `\\p{Foo}`"),
    ("\\pX", "unknown Unicode class `\\pX`"),
    ("\\p{Cn}", "unknown Unicode class `\\p{Cn}`"),
])
def test_re2_refusals(regex, message):
    err = error({"source_labels": ["a"], "regex": regex, "action": "keep"},
                where="scrape_configs[0].relabel_configs")
    assert str(err).startswith(
        f'scrape_configs[0].relabel_configs[0].regex: invalid regex "{regex}": '.replace(
            "\\", "\\\\"))
    assert message in str(err)
    assert (err.where, err.index, err.field) == ("scrape_configs[0].relabel_configs", 0, "regex")


@pytest.mark.parametrize("regex", [
    "a{1000}", "((a{10}){10}){10}", "(a{0}){1000}", "(a{2,}){500}", "(?:a{1000}){1}",
    "(?P<n>a)(?P<n>b)", "(?<n>a)", "(?i-s:a)", "(?imsU)a", "(?)a", "x{2}?", "[[:word:]]",
    r"\p{Co}\p{Cs}\pC\pZ\p{Zs}", r"[\x{0}-\x{10FFFF}]", r"\x{10FFFF}",
])
def test_re2_accepted(regex):
    assert len(compile_rules([{"source_labels": ["a"], "regex": regex, "action": "keep"}],
                             "r")) == 1


# --- validation --------------------------------------------------------------------------------

@pytest.mark.parametrize(("rule", "field", "message"), [
    ({}, "target_label", "relabel configuration for replace action requires 'target_label' value"),
    ({"target_label": None}, "target_label", "requires 'target_label' value"),
    ({"action": None}, "action", "relabel action cannot be empty"),
    ({"action": ""}, "action", "relabel action cannot be empty"),
    ({"action": "nope"}, "action", 'unknown relabel action "nope"'),
    ({"target_label": "1x"}, "target_label", "\"1x\" is invalid 'target_label' for replace action"),
    ({"target_label": "x-y"}, "target_label", "\"x-y\" is invalid 'target_label'"),
    ({"target_label": "0${1}"}, "target_label", "\"0${1}\" is invalid 'target_label'"),
    ({"target_label": "-${3}"}, "target_label",
     "\"-${3}\" is invalid 'target_label' for replace action"),
    ({"target_label": "$"}, "target_label", "is invalid 'target_label'"),
    ({"target_label": "${}"}, "target_label", "is invalid 'target_label'"),
    ({"target_label": "${"}, "target_label", "is invalid 'target_label'"),
    ({"target_label": "foo${"}, "target_label", "is invalid 'target_label'"),
    ({"target_label": "a$$b"}, "target_label", "is invalid 'target_label'"),
    ({"target_label": "-foo${1}bar-"}, "target_label", "is invalid 'target_label'"),
    ({"action": "hashmod", "target_label": "x"}, "modulus",
     "relabel configuration for hashmod requires non-zero modulus"),
    ({"action": "hashmod", "modulus": 2}, "target_label",
     "relabel configuration for hashmod action requires 'target_label' value"),
    ({"action": "hashmod", "modulus": 2, "target_label": "x$1"}, "target_label",
     "\"x$1\" is invalid 'target_label' for hashmod action"),
    ({"action": "hashmod", "modulus": -1, "target_label": "x"}, "modulus",
     "must be an unsigned 64-bit integer"),
    ({"action": "hashmod", "modulus": 1 << 64, "target_label": "x"}, "modulus",
     "must be an unsigned 64-bit integer"),
    ({"action": "hashmod", "modulus": "5", "target_label": "x"}, "modulus",
     "must be an unsigned 64-bit integer"),
    ({"action": "lowercase"}, "target_label",
     "relabel configuration for lowercase action requires 'target_label' value"),
    ({"action": "uppercase", "target_label": "${3}"}, "target_label",
     "\"${3}\" is invalid 'target_label' for uppercase action"),
    ({"action": "lowercase", "target_label": "y", "replacement": "z"}, "replacement",
     "'replacement' can not be set for lowercase action"),
    ({"action": "keepequal"}, "target_label",
     "relabel configuration for keepequal action requires 'target_label' value"),
    ({"action": "dropequal", "target_label": "a-b"}, "target_label",
     "\"a-b\" is invalid 'target_label' for dropequal action"),
    ({"action": "keepequal", "target_label": "y", "regex": "(.*)"}, "regex",
     "keepequal action requires only 'source_labels' and `target_label`, and no other fields"),
    ({"action": "keepequal", "target_label": "y", "separator": ","}, "separator",
     "keepequal action requires only 'source_labels' and `target_label`"),
    ({"action": "dropequal", "target_label": "y", "modulus": 3}, "modulus",
     "dropequal action requires only 'source_labels' and `target_label`"),
    ({"action": "dropequal", "target_label": "y", "replacement": "x"}, "replacement",
     "'replacement' can not be set for dropequal action"),
    ({"action": "labeldrop", "source_labels": []}, "source_labels",
     "labeldrop action requires only 'regex', and no other fields"),
    ({"action": "labeldrop", "source_labels": ["a"]}, "source_labels",
     "labeldrop action requires only 'regex'"),
    ({"action": "labelkeep", "target_label": "a"}, "target_label",
     "labelkeep action requires only 'regex'"),
    ({"action": "labelkeep", "replacement": "a"}, "replacement",
     "labelkeep action requires only 'regex'"),
    ({"action": "labelkeep", "separator": ","}, "separator", "labelkeep action requires only"),
    ({"action": "labelkeep", "modulus": 1}, "modulus", "labelkeep action requires only"),
    ({"action": "labelmap", "replacement": "x-$1"}, "replacement",
     "\"x-$1\" is invalid 'replacement' for labelmap action"),
    ({"action": "labelmap", "replacement": ""}, "replacement",
     "\"\" is invalid 'replacement' for labelmap action"),
    ({"action": "keep", "source_labels": ["a-b"]}, "source_labels",
     "\"a-b\" is not a valid label name"),
    ({"action": "keep", "source_labels": "a"}, "source_labels", "must be a list of label names"),
    ({"action": "keep", "source_labels": [1]}, "source_labels", "\"1\" is not a valid label name"),
    ({"action": "keep", "bogus": 1}, "bogus", "unknown field 'bogus'"),
    ({"action": "keep", "regex": ["a"]}, "regex", "must be a string, got list"),
    ({"action": "keep", "regex": 1.5}, "regex", "must be a string, got float"),
    ({"action": "keep", "regex": "(?=x)"}, "regex", "lookahead"),
])
def test_validation_errors(rule, field, message):
    rules = [{"source_labels": ["a"], "action": "keep", "regex": "x"}, rule]
    err = error(*rules, where="scrape_configs[3].relabel_configs")
    assert str(err).startswith(f"scrape_configs[3].relabel_configs[1].{field}: ")
    assert message in str(err)
    assert (err.where, err.index, err.field) == ("scrape_configs[3].relabel_configs", 1, field)


@pytest.mark.parametrize("rule", [
    {"target_label": "x"},
    {"target_label": "${1}"},
    {"target_label": "label${1}"},
    {"target_label": "${1}label"},
    {"target_label": "$1"},
    {"target_label": "asd$2asd"},
    {"target_label": "_${1}_"},
    {"target_label": "foo${bar}foo"},
    {"source_labels": ["a"], "regex": "some-([^-]+)-([^,]+)", "replacement": "${1}",
     "target_label": "${3}"},
    {"action": "Replace", "target_label": "x"},
    {"action": "lowercase", "target_label": "y", "replacement": "$1"},
    {"action": "keepequal", "target_label": "y", "separator": ";"},
    {"action": "dropequal", "target_label": "y", "replacement": "$1", "modulus": 0},
    {"action": "labeldrop", "source_labels": None},
    {"action": "labeldrop", "regex": "x"},
    {"action": "labelmap"},
    {"action": "labelmap", "replacement": "abc"},
    {"action": "keep", "target_label": "x-y", "replacement": "q", "modulus": 5},
    {"action": "keep", "source_labels": ["__a"]},
])
def test_valid_rules(rule):
    assert len(compile_rules([rule], "relabel_configs")) == 1


def test_list_level_errors():
    err = error(None)
    assert str(err) == "relabel_configs[0]: empty or null relabeling rule"
    assert (err.index, err.field) == (0, "")
    err = error({"target_label": "x"}, "keep")
    assert str(err).startswith("relabel_configs[1]: must be a mapping")
    with pytest.raises(RelabelConfigError) as info:
        compile_rules({"action": "keep"}, "metric_relabel_configs")  # type: ignore[arg-type]
    assert str(info.value) == "metric_relabel_configs: must be a list of relabel rules, got dict"
    assert info.value.index == -1


def test_error_is_a_value_error():
    assert issubclass(RelabelConfigError, ValueError)
