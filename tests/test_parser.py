"""clymene.scrape.parser: Prometheus text 0.0.4 and OpenMetrics 1.0, as Prometheus 2.42.

Tables of valid documents with their exact entries and of invalid documents with the
line of the error; every document also goes through the exact scanner on its own, so the
fast path and the scanner are held to the same answers (plus a seeded random test of the
two against each other). The node-exporter test parses a real body and compares it with
prometheus_client's independent parser.
"""

from __future__ import annotations

import math
import random
import struct

import pytest
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client.core import GaugeHistogramMetricFamily
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as om_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families

from clymene.scrape import parser
from clymene.scrape.parser import ParseError, parse, parse_series
from tests.servers import Server, http_get

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"
NAN = "NaN"  # expected value: a NaN with Prometheus' value.NormalNaN bits
NORMAL_NAN_BITS = 0x7FF8000000000001
INT64_MIN = -(2**63)


def bits(value: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", value))[0]


def normalise(entries: list) -> list:
    """Entries with NaN values replaced by NAN (after checking their bits), and -0.0 by
    the string "-0.0", so lists compare exactly with =="""
    out = []
    for key, value, ts in entries:
        assert isinstance(key, str) and isinstance(value, float)
        assert ts is None or type(ts) is int
        if math.isnan(value):
            assert bits(value) == NORMAL_NAN_BITS, hex(bits(value))
            value = NAN
        elif value == 0 and math.copysign(1, value) < 0:
            value = "-0.0"
        out.append((key, value, ts))
    return out


def clear_caches() -> None:
    for cache in (parser._TEXT_KEYS, parser._TEXT_COMMENTS, parser._OM_KEYS, parser._OM_COMMENTS):
        cache.clear()


def scanner(body: bytes, content_type: str) -> list:
    """The exact scanner alone, without the fast path."""
    text = body.decode("utf-8", "surrogateescape")
    if content_type == OM:
        return parser._scan_om(text)
    return parser._scan_text(text)


def check_valid(body: bytes, content_type: str, expected: list) -> None:
    clear_caches()
    cold = parse(body, content_type)
    assert normalise(cold) == expected
    warm = parse(body, content_type)  # series keys and comments now come from the caches
    assert normalise(warm) == expected
    assert normalise(scanner(body, content_type)) == expected


def check_invalid(body: bytes, content_type: str, line: int, reason: str) -> None:
    for attempt in range(2):  # cold, then with whatever the first attempt cached
        if attempt == 0:
            clear_caches()
        with pytest.raises(ParseError) as info:
            parse(body, content_type)
        assert info.value.line == line, str(info.value)
        assert reason in info.value.reason, str(info.value)
        assert str(info.value) == f"line {line}: {info.value.reason}"
    with pytest.raises(ParseError) as info:
        scanner(body, content_type)
    assert info.value.line == line and reason in info.value.reason


# ---------------------------------------------------------------- text format: valid

VALID_TEXT = [
    (
        "help-type-and-samples",
        b"# HELP http_requests_total The total.\n"
        b"# TYPE http_requests_total counter\n"
        b'http_requests_total{method="post",code="200"} 1027 1395066363000\n'
        b'http_requests_total{method="post",code="400"}    3 1395066363000\n',
        [
            ('http_requests_total{method="post",code="200"}', 1027.0, 1395066363000),
            ('http_requests_total{method="post",code="400"}', 3.0, 1395066363000),
        ],
    ),
    (
        "all-types",
        b"# TYPE c counter\nc_total 1\n"
        b"# TYPE g gauge\ng -2.5\n"
        b'# TYPE h histogram\nh_bucket{le="0.5"} 1\nh_bucket{le="+Inf"} 2\nh_sum 0.7\nh_count 2\n'
        b'# TYPE s summary\ns{quantile="0.99"} 3e-05\ns_sum 1\ns_count 4\n'
        b"# TYPE u untyped\nu 7\n",
        [
            ("c_total", 1.0, None),
            ("g", -2.5, None),
            ('h_bucket{le="0.5"}', 1.0, None),
            ('h_bucket{le="+Inf"}', 2.0, None),
            ("h_sum", 0.7, None),
            ("h_count", 2.0, None),
            ('s{quantile="0.99"}', 3e-05, None),
            ("s_sum", 1.0, None),
            ("s_count", 4.0, None),
            ("u", 7.0, None),
        ],
    ),
    (
        "special-values",
        b"a NaN\nb nan\nc +Inf\nd -Inf\ne Inf\nf inf\ng +infinity\nh -Infinity\ni INF\n",
        [
            ("a", NAN, None),
            ("b", NAN, None),
            ("c", math.inf, None),
            ("d", -math.inf, None),
            ("e", math.inf, None),
            ("f", math.inf, None),
            ("g", math.inf, None),
            ("h", -math.inf, None),
            ("i", math.inf, None),
        ],
    ),
    (
        "number-forms",
        b"a .5\nb 5.\nc +3\nd 1E3\ne -0\nf 1e-400\ng 007\nh 1.7976931348623157e308\n",
        [
            ("a", 0.5, None),
            ("b", 5.0, None),
            ("c", 3.0, None),
            ("d", 1000.0, None),
            ("e", "-0.0", None),
            ("f", 0.0, None),  # underflow is no error in Go
            ("g", 7.0, None),
            ("h", 1.7976931348623157e308, None),
        ],
    ),
    (
        "timestamps",
        b"a 1 0\nb 2 9223372036854775807\nc 3 0123\n",
        [("a", 1.0, 0), ("b", 2.0, 9223372036854775807), ("c", 3.0, 123)],
    ),
    (
        "names-with-colons-and-underscores",
        b'some:aggregate:rate5m{a_b="c"} 1\n_under 2\nt{_l="x"} 3\n',
        [
            ('some:aggregate:rate5m{a_b="c"}', 1.0, None),
            ("_under", 2.0, None),
            ('t{_l="x"}', 3.0, None),
        ],
    ),
    (
        "escapes-kept-in-key",
        b'a{b="q\\"uote",c="back\\\\slash",d="new\\nline",e="tab\\t"} 1\n',
        [('a{b="q\\"uote",c="back\\\\slash",d="new\\nline",e="tab\\t"}', 1.0, None)],
    ),
    (
        # promparse_test.go's whitespace cases.
        "whitespace-as-prometheus-allows",
        b'go_gc{quantile="0.25",} 1\n'
        b'go_gc{quantile="0.8", a="b"} 2\n'
        b'go_gc{ quantile="0.9", a="b"} 3\n'
        b'go_gc{ quantile="1.0", a="b" } 4\n'
        b'go_gc { quantile="1.0", a="b" } 5\n'
        b'go_gc { quantile= "1.0", a= "b", } 6\n'
        b'go_gc { quantile = "1.0", a = "b" } 7\n'
        b'rate5m{a_b="c"}\t8\n'
        b"go_goroutines 33  \t123123\n"
        b"trailing 10 \t\n"
        b"trailing_ts 11 12\t \n",
        [
            ('go_gc{quantile="0.25",}', 1.0, None),
            ('go_gc{quantile="0.8", a="b"}', 2.0, None),
            ('go_gc{ quantile="0.9", a="b"}', 3.0, None),
            ('go_gc{ quantile="1.0", a="b" }', 4.0, None),
            ('go_gc { quantile="1.0", a="b" }', 5.0, None),
            ('go_gc { quantile= "1.0", a= "b", }', 6.0, None),
            ('go_gc { quantile = "1.0", a = "b" }', 7.0, None),
            ('rate5m{a_b="c"}', 8.0, None),
            ("go_goroutines", 33.0, 123123),
            ("trailing", 10.0, None),
            ("trailing_ts", 11.0, 12),
        ],
    ),
    (
        "comments-and-blank-lines",
        b"# just a comment\n#\n#no blank after the hash\n# Hrandom comment starting with H\n"
        b"# HELPER not help\n# \tTYPE go summary\n# HELP nohelp1\n# HELP nohelp2 \n"
        b"# HELP esc escaped \\n newline \\\\ and \\x\n\n   \n\t\n"
        b"  # indented comment\n# TYPE \t spaced gauge\nx 1\n\n",
        [("x", 1.0, None)],
    ),
    ("no-trailing-newline", b"a 1\nb 2", [("a", 1.0, None), ("b", 2.0, None)]),
    ("empty-document", b"", []),
    ("only-comments", b"# HELP a x\n# TYPE a gauge\n", []),
    (
        "quirk-value-right-after-name-or-brace",
        # The lexer ends the name at the first character that cannot be in one.
        b'a-1 2\nb{c="d"}3\n',
        [("a", -1.0, 2), ('b{c="d"}', 3.0, None)],
    ),
    (
        "labels-without-commas-and-empty-braces",
        b'a{b="c" d="e"} 1\nf{} 2\ng{h="i"j="k"} 3\n',
        [('a{b="c" d="e"}', 1.0, None), ("f{}", 2.0, None), ('g{h="i"j="k"}', 3.0, None)],
    ),
    (
        "label-value-with-braces-blanks-and-hash",
        b'a{b="} 1 # {x} 2"} 3 4\n',
        [('a{b="} 1 # {x} 2"}', 3.0, 4)],
    ),
    (
        "label-value-spanning-lines",
        b'a{b="x\ny"} 1\nc 2\n',
        [('a{b="x\ny"}', 1.0, None), ("c", 2.0, None)],
    ),
    (
        "nul-in-label-value-and-help",
        b'# HELP m foo\x00bar\nnull_byte_metric{a="abc\x00"} 1\n',
        [('null_byte_metric{a="abc\x00"}', 1.0, None)],
    ),
    ("nul-at-line-start-ends-document", b"a 1\n\x00 whatever{ this is\n", [("a", 1.0, None)]),
    ("nul-in-hash-comment-ends-document", b"a 1\n#x\x00y\nb ( 2\n", [("a", 1.0, None)]),
    (
        "invalid-utf8-in-plain-comment",
        b"# caf\xe9 \xff\na 1\n",
        [("a", 1.0, None)],
    ),
    (
        "utf8-label-values",
        'a{city="Zürich",emoji="🙂"} 1\n'.encode(),
        [('a{city="Zürich",emoji="🙂"}', 1.0, None)],
    ),
    (
        "identical-lines-identical-keys",
        b'a{b="c"} 1\na{b="c"} 2\n',
        [('a{b="c"}', 1.0, None), ('a{b="c"}', 2.0, None)],
    ),
]


@pytest.mark.parametrize(
    "body,expected", [c[1:] for c in VALID_TEXT], ids=[c[0] for c in VALID_TEXT]
)
def test_text_valid(body: bytes, expected: list) -> None:
    check_valid(body, TEXT, expected)


# ---------------------------------------------------------------- text format: invalid

INVALID_TEXT = [
    ("name-only", b"a", 1, 'expected value after metric, got "INVALID"'),
    ("single-quotes", b"a{b='c'} 1\n", 1, 'expected label value, got "INVALID"'),
    ("unterminated-value", b"a{b=\n", 1, 'expected label value, got "INVALID"'),
    ("bad-label-name-byte", b'a{\xff="foo"} 1\n', 1, 'expected label name, got "INVALID"'),
    ("invalid-utf8-label-value", b'a{b="\xff"} 1\n', 1, "invalid UTF-8 label value"),
    ("non-numeric-value", b"a true\n", 1, 'strconv.ParseFloat: parsing "true": invalid syntax'),
    ("unterminated-at-eof", b'something_weird{problem="', 1, 'expected label value, got "INVALID"'),
    ("empty-label-name", b'empty_label_name{=""} 0', 1, 'expected label name, got "EQUAL"'),
    ("underscore-in-float", b"foo 1_2\n", 1, "unsupported character in float"),
    ("hex-float", b"foo 0x1p-3\n", 1, "unsupported character in float"),
    ("hex-float-upper", b"foo 0x1P-3\n", 1, "unsupported character in float"),
    (
        "hex-without-exponent",
        b"foo 0x10\n",
        1,
        'strconv.ParseFloat: parsing "0x10": invalid syntax',
    ),
    ("float-timestamp", b"foo 0 1.5\n", 1, 'expected next entry after timestamp, got "INVALID"'),
    ("underscore-timestamp", b"foo 0 1_2\n", 1, "expected next entry after timestamp"),
    ("negative-timestamp", b"foo 0 -1\n", 1, 'expected timestamp or new record, got "INVALID"'),
    ("timestamp-overflow", b"a 1 9223372036854775808\n", 1, "strconv.ParseInt: parsing"),
    ("value-overflow", b"a 1e400\n", 1, 'strconv.ParseFloat: parsing "1e400": value out of range'),
    ("signed-nan", b"a +NaN\n", 1, 'strconv.ParseFloat: parsing "+NaN": invalid syntax'),
    ("inf-prefix", b"a infin\n", 1, 'strconv.ParseFloat: parsing "infin": invalid syntax'),
    ("comma-decimal", b"a 1,5\n", 1, 'strconv.ParseFloat: parsing "1,5": invalid syntax'),
    ("non-ascii-digits", "a ١٢\n".encode(), 1, "strconv.ParseFloat: parsing"),
    ("three-numbers", b"a 1 2 3\n", 1, 'expected next entry after timestamp, got "TIMESTAMP"'),
    ("no-value-after-labels", b'a{b="c"} \n', 1, 'expected value after metric, got "INVALID"'),
    ("second-label-set", b'a{b="c"}{d="e"} 1\n', 1, 'expected value after metric, got "BOPEN"'),
    ("quoted-name-unsupported", b'{b="c"} 1\n', 1, "is not a valid start token"),
    ("digit-start", b"1a 1\n", 1, "is not a valid start token"),
    ("bad-label-start", b'a{1b="c"} 1\n', 1, 'expected label name, got "INVALID"'),
    ("dash-in-label-name", b'a{b-c="d"} 1\n', 1, 'expected equal, got "INVALID"'),
    ("unquoted-label-value", b"a{b=c} 1\n", 1, 'expected label value, got "INVALID"'),
    ("double-comma", b'a{b="c",,d="e"} 1\n', 1, 'expected label name, got "COMMA"'),
    ("leading-comma", b'a{,b="c"} 1\n', 1, 'expected label name, got "COMMA"'),
    ("unclosed-label-set", b'a{b="c" 1\n', 1, 'expected label name, got "INVALID"'),
    ("escaped-closing-quote", b'a{b="c\\"} 1\n', 1, 'expected label value, got "INVALID"'),
    ("backslash-newline", b'a{b="c\\\nd"} 1\n', 1, 'expected label value, got "INVALID"'),
    ("duplicate-label", b'a{b="c",b="d"} 1\n', 1, 'label name "b" is not unique'),
    ("duplicate-name-label", b'a{__name__="x"} 1\n', 1, 'label name "__name__" is not unique'),
    ("bad-type", b"# TYPE a gauges\n", 1, 'invalid metric type "gauges"'),
    ("openmetrics-type-in-text", b"# TYPE a info\n", 1, 'invalid metric type "info"'),
    ("type-without-type", b"# TYPE a\n", 1, 'invalid metric type ""'),
    ("type-trailing-blank", b"# TYPE a counter \n", 1, 'invalid metric type "counter "'),
    ("type-two-blanks", b"# TYPE a  counter\n", 1, 'invalid metric type " counter"'),
    ("help-without-name", b"# HELP \n", 1, 'expected metric name after HELP, got "INVALID"'),
    ("help-bad-name", b"# HELP 1a text\n", 1, "expected metric name after HELP"),
    ("help-invalid-utf8", b"# HELP a caf\xe9\n", 1, "help text is not a valid utf8 string"),
    (
        "windows-line-endings",
        b"a 1\r\nb 2\r\n",
        1,
        'strconv.ParseFloat: parsing "1\\r": invalid syntax',
    ),
    (
        "windows-line-endings-type",
        b"# TYPE a gauge\r\na 1\r\n",
        1,
        'invalid metric type "gauge\\r"',
    ),
    (
        "error-line-counts-comments-and-blanks",
        b'# HELP a x\n# TYPE a gauge\n\na 1\n  \nb{c="d"} 2\nc{d=} 3\n',
        7,
        'expected label value, got "INVALID"',
    ),
    (
        "error-after-multiline-label-value",
        b'a{b="x\ny\nz"} 1\nc 1 2 3\n',
        4,
        'expected next entry after timestamp, got "TIMESTAMP"',
    ),
    ("error-on-last-line-without-newline", b"a 1\nb 2\nc", 3, "expected value after metric"),
    ("duplicate-on-third-line", b'a 1\n\nb{c="d", c="d"} 2\n', 3, 'label name "c" is not unique'),
    # Prometheus takes the blanks that start a sample line into the metric name, which
    # then fails its validity check (after the line parsed, before duplicate labels).
    ("leading-blanks", b"a 1\n  \tindented 9\n", 2, "invalid metric name or label names"),
    ("leading-blank-and-duplicate", b' b{c="d",c="d"} 2\n', 1, "invalid metric name or label"),
    ("leading-blank-parse-error-first", b" b{c='d'} 2\n", 1, 'expected label value, got "INVALID"'),
]


@pytest.mark.parametrize(
    "body,line,reason", [c[1:] for c in INVALID_TEXT], ids=[c[0] for c in INVALID_TEXT]
)
def test_text_invalid(body: bytes, line: int, reason: str) -> None:
    check_invalid(body, TEXT, line, reason)


def test_error_message_names_the_line() -> None:
    with pytest.raises(ParseError) as info:
        parse(b"ok 1\nbad{x='y'} 1\n", TEXT)
    assert str(info.value) == (
        'line 2: expected label value, got "INVALID" while parsing "bad{x=\'y\'} 1"'
    )
    assert isinstance(info.value, ValueError)
    with pytest.raises(ParseError) as info:
        parse(b"a 1\r\n", TEXT)
    assert "Windows line endings are not accepted" in str(info.value)


# ---------------------------------------------------------------- OpenMetrics: valid

VALID_OM = [
    ("minimal", b"a 1\n# EOF\n", [("a", 1.0, None)]),
    ("eof-without-newline", b"a 1\n# EOF", [("a", 1.0, None)]),
    ("only-eof", b"# EOF\n", []),
    (
        # openmetricsparse_test.go's document, less the exemplar on a gauge histogram
        # (fine there only because that test never checks the suffix).
        "prometheus-test-document",
        b"# HELP go_gc_duration_seconds A summary of the GC invocation durations.\n"
        b"# TYPE go_gc_duration_seconds summary\n"
        b"# UNIT go_gc_duration_seconds seconds\n"
        b'go_gc_duration_seconds{quantile="0"} 4.9351e-05\n'
        b'go_gc_duration_seconds{quantile="0.5",a="b"} 8.3835e-05\n'
        b"# HELP nohelp1 \n"
        b'# HELP help2 escape \\ \\n \\\\ \\" \\x chars\n'
        b"# UNIT nounit \n"
        b"go_gc_duration_seconds_count 99\n"
        b'some:aggregate:rate5m{a_b="c"} 1\n'
        b"# TYPE go_goroutines gauge\n"
        b"go_goroutines 33 123.123\n"
        b"# TYPE hh histogram\n"
        b'hh_bucket{le="+Inf"} 1\n'
        b"# TYPE gh gaugehistogram\n"
        b'gh_bucket{le="+Inf"} 1\n'
        b"# TYPE hhh histogram\n"
        b'hhh_bucket{le="+Inf"} 1 # {aa="bb"} 4\n'
        b"# TYPE ii info\n"
        b'ii{foo="bar"} 1\n'
        b"# TYPE ss stateset\n"
        b'ss{ss="foo"} 1\nss{ss="bar"} 0\nss{A="a"} 0\n'
        b"# TYPE un unknown\n"
        b"_metric_starting_with_underscore 1\n"
        b'testmetric{label="\\"bar\\""} 1\n'
        b"# TYPE foo counter\n"
        b'foo_total 17.0 1520879607.789 # {xx="yy"} 5\n'
        b"# HELP metric foo\x00bar\n"
        b'null_byte_metric{a="abc\x00"} 1\n'
        b"# EOF\n",
        [
            ('go_gc_duration_seconds{quantile="0"}', 4.9351e-05, None),
            ('go_gc_duration_seconds{quantile="0.5",a="b"}', 8.3835e-05, None),
            ("go_gc_duration_seconds_count", 99.0, None),
            ('some:aggregate:rate5m{a_b="c"}', 1.0, None),
            ("go_goroutines", 33.0, 123123),
            ('hh_bucket{le="+Inf"}', 1.0, None),
            ('gh_bucket{le="+Inf"}', 1.0, None),
            ('hhh_bucket{le="+Inf"}', 1.0, None),
            ('ii{foo="bar"}', 1.0, None),
            ('ss{ss="foo"}', 1.0, None),
            ('ss{ss="bar"}', 0.0, None),
            ('ss{A="a"}', 0.0, None),
            ("_metric_starting_with_underscore", 1.0, None),
            ('testmetric{label="\\"bar\\""}', 1.0, None),
            ("foo_total", 17.0, 1520879607789),
            ('null_byte_metric{a="abc\x00"}', 1.0, None),
        ],
    ),
    (
        "all-types-with-created",
        b"# TYPE c counter\n# UNIT c_seconds seconds\nc_total 1\nc_created 1.6e+09\n"
        b'# TYPE h histogram\nh_bucket{le="1.0"} 1\nh_bucket{le="+Inf"} 2\nh_count 2\nh_sum 1.5\nh_created 1600000000.5\n'
        b'# TYPE gh gaugehistogram\ngh_bucket{le="+Inf"} 3\ngh_gcount 3\ngh_gsum 4\n'
        b'# TYPE s summary\ns{quantile="0.5"} NaN\ns_count 0\ns_sum 0\ns_created 1.6e9\n'
        b'# TYPE i info\ni_info{version="1.0"} 1\n'
        b'# TYPE st stateset\nst{st="a"} 0\nst{st="b"} 1\n'
        b"# TYPE u unknown\nu +Inf\n# EOF\n",
        [
            ("c_total", 1.0, None),
            ("c_created", 1.6e9, None),
            ('h_bucket{le="1.0"}', 1.0, None),
            ('h_bucket{le="+Inf"}', 2.0, None),
            ("h_count", 2.0, None),
            ("h_sum", 1.5, None),
            ("h_created", 1600000000.5, None),
            ('gh_bucket{le="+Inf"}', 3.0, None),
            ("gh_gcount", 3.0, None),
            ("gh_gsum", 4.0, None),
            ('s{quantile="0.5"}', NAN, None),
            ("s_count", 0.0, None),
            ("s_sum", 0.0, None),
            ("s_created", 1.6e9, None),
            ('i_info{version="1.0"}', 1.0, None),
            ('st{st="a"}', 0.0, None),
            ('st{st="b"}', 1.0, None),
            ("u", math.inf, None),
        ],
    ),
    (
        "float-second-timestamps",
        # int64(ts * 1000): truncation toward zero after a float64 multiplication.
        b"a 1 1520879607.789\nb 1 -1.5\nc 1 1e3\nd 1 0.0005\ne 1 1.0005\nf 1 -0.0009\n"
        b"g 1 1e30\nh 1 -1e30\ni 1 0\nj 1 1.5e-400\n# EOF\n",
        [
            ("a", 1.0, 1520879607789),
            ("b", 1.0, -1500),
            ("c", 1.0, 1000000),
            ("d", 1.0, 0),
            ("e", 1.0, 1000),  # 1.0005 * 1000 == 1000.4999999999999
            ("f", 1.0, 0),
            ("g", 1.0, INT64_MIN),  # out of int64 range: what amd64 gives
            ("h", 1.0, INT64_MIN),
            ("i", 1.0, 0),
            ("j", 1.0, 0),
        ],
    ),
    (
        "exemplars",
        b'a_total 1 # {trace_id="x"} 1\n'
        b'b_total 2 3 # {trace_id="y",span="z"} 0.5 1600000000.123\n'
        b'c_bucket{le="1"} 4 # {} 1\n'
        b'd_total 5 # {a="# {"} NaN\n'
        b"# EOF\n",
        [
            ("a_total", 1.0, None),
            ("b_total", 2.0, 3000),
            ('c_bucket{le="1"}', 4.0, None),
            ("d_total", 5.0, None),
        ],
    ),
    (
        "label-values-with-hash-and-blanks",
        b'a{b=" # {x} 1 2"} 3\nc{} 4\n# EOF\n',
        [('a{b=" # {x} 1 2"}', 3.0, None), ("c{}", 4.0, None)],
    ),
    (
        "special-values",
        b"a NaN\nb -Inf\nc +Inf\nd infinity\n# EOF\n",
        [("a", NAN, None), ("b", -math.inf, None), ("c", math.inf, None), ("d", math.inf, None)],
    ),
    (
        "empty-help-and-unit",
        b"# HELP a \n# UNIT a \n# TYPE a gauge\na 1\n# EOF\n",
        [("a", 1.0, None)],
    ),
]


@pytest.mark.parametrize("body,expected", [c[1:] for c in VALID_OM], ids=[c[0] for c in VALID_OM])
def test_openmetrics_valid(body: bytes, expected: list) -> None:
    check_valid(body, OM, expected)


# ---------------------------------------------------------------- OpenMetrics: invalid

INVALID_OM = [
    ("empty", b"", 1, "data does not end with # EOF"),
    ("newline-only", b"\n", 1, '"INVALID" "\\n" is not a valid start token'),
    ("name-only-at-eof", b"metric", 1, 'expected value after metric, got "EOF"'),
    ("no-eof", b"metric 1", 1, "data does not end with # EOF"),
    ("no-eof-after-newline", b"metric 1\n", 2, "data does not end with # EOF"),
    ("no-eof-after-exemplar", b'metric_total 1 # {aa="bb"} 4', 1, "data does not end with # EOF"),
    ("eof-without-blank", b"a 1\n#EOF\n", 2, "is not a valid start token"),
    ("blank-line", b"a 1\n\n# EOF\n", 2, '"INVALID" "\\n" is not a valid start token'),
    ("leading-blank", b" a 1\n# EOF\n", 1, "is not a valid start token"),
    ("digit-start", b"9\n# EOF\n", 1, "is not a valid start token"),
    ("plain-comment", b"# a comment\n# EOF\n", 1, "is not a valid start token"),
    ("untyped-type", b"# TYPE u untyped\n# EOF\n", 1, 'invalid metric type "untyped"'),
    ("type-trailing-blank", b"# TYPE c counter \n# EOF\n", 1, 'invalid metric type "counter "'),
    ("type-two-blanks", b"# TYPE c  counter\n# EOF\n", 1, 'invalid metric type " counter"'),
    ("two-blanks-after-hash", b"#  TYPE c counter\n# EOF\n", 1, "is not a valid start token"),
    ("tab-after-hash", b"#\tTYPE c counter\n# EOF\n", 1, "is not a valid start token"),
    ("type-without-name", b"# TYPE \n# EOF\n", 1, 'expected metric name after TYPE, got "INVALID"'),
    ("type-without-text", b"# TYPE m\n# EOF\n", 1, "expected text in TYPE"),
    (
        "unit-not-suffix",
        b"# UNIT metric suffix\n# EOF\n",
        1,
        'unit not a suffix of metric "metric"',
    ),
    (
        "unit-no-underscore",
        b"# UNIT metricsuffix suffix\n# EOF\n",
        1,
        "unit not a suffix of metric",
    ),
    ("unit-longer", b"# UNIT m suffix\n# EOF\n", 1, 'unit not a suffix of metric "m"'),
    ("unit-on-total", b"# UNIT a_seconds_total seconds\n# EOF\n", 1, "unit not a suffix of metric"),
    ("unit-without-name", b"# UNIT \n# EOF\n", 1, "expected metric name after UNIT"),
    ("unit-without-text", b"# UNIT m\n# EOF\n", 1, "expected text in UNIT"),
    ("help-without-name", b"# HELP \n# EOF\n", 1, "expected metric name after HELP"),
    ("help-without-text", b"# HELP m\n# EOF\n", 1, "expected text in HELP"),
    ("help-invalid-utf8", b"# HELP m \xff\n# EOF\n", 1, "help text is not a valid utf8 string"),
    ("tab-separator", b"a\t1\n# EOF\n", 1, 'expected value after metric, got "INVALID"'),
    ("tab-in-value", b"a 1\t2\n# EOF\n", 1, 'strconv.ParseFloat: parsing "1\\t2": invalid syntax'),
    ("two-blanks", b"a  1\n# EOF\n", 1, 'expected value after metric, got "INVALID"'),
    ("trailing-blank", b"a 1 \n# EOF\n", 1, 'expected timestamp or # symbol, got "INVALID"'),
    (
        "trailing-blank-after-ts",
        b"a 1 2 \n# EOF\n",
        1,
        'expected next entry after timestamp, got "INVALID"',
    ),
    (
        "hash-after-ts",
        b"a 1 2 #\n# EOF\n",
        1,
        'expected next entry after timestamp, got "TIMESTAMP"',
    ),
    ("bad-timestamp", b"a 1 1z\n# EOF\n", 1, 'strconv.ParseFloat: parsing "1z": invalid syntax'),
    ("underscore-timestamp", b"foo 0 1_2\n# EOF\n", 1, "unsupported character in float"),
    (
        "four-numbers",
        b"a 1 1 1\n# EOF\n",
        1,
        'expected next entry after timestamp, got "TIMESTAMP"',
    ),
    ("nan-timestamp", b"a 1 NaN\n# EOF\n", 1, "invalid timestamp"),
    ("inf-timestamp", b"a 1 -Inf\n# EOF\n", 1, "invalid timestamp"),
    (
        "no-blank-before-value",
        b'a{b="c"}1\n# EOF\n',
        1,
        'expected value after metric, got "INVALID"',
    ),
    # After the name, ' {b="c"}' lexes as the value.
    ("blank-before-brace", b'a {b="c"} 1\n# EOF\n', 1, 'strconv.ParseFloat: parsing "{b=\\"c\\"}"'),
    ("single-quotes", b"a{b='c'} 1\n# EOF\n", 1, 'expected label value, got "INVALID"'),
    ("trailing-comma", b'a{b="c",} 1\n# EOF\n', 1, 'expected label name, got "BCLOSE"'),
    ("leading-comma", b'a{,b="c"} 1\n# EOF\n', 1, 'expected label name or left brace, got "COMMA"'),
    ("missing-comma", b'a{b="c"d="e"} 1\n# EOF\n', 1, 'expected comma, got "LNAME"'),
    ("double-comma", b'a{b="c",,d="e"} 1\n# EOF\n', 1, 'expected label name, got "COMMA"'),
    ("blank-in-labels", b'a{b = "c"} 1\n# EOF\n', 1, 'expected equal, got "INVALID"'),
    ("value-newline", b"a{b=\n# EOF\n", 1, 'expected label value, got "INVALID"'),
    ("bad-label-name-byte", b'a{\xff="foo"} 1\n# EOF\n', 1, "expected label name or left brace"),
    ("invalid-utf8-label-value", b'a{b="\xff"} 1\n# EOF\n', 1, "invalid UTF-8 label value"),
    (
        "non-numeric-value",
        b"a true\n# EOF\n",
        1,
        'strconv.ParseFloat: parsing "true": invalid syntax',
    ),
    ("empty-label-name", b'e{=""} 0\n# EOF\n', 1, 'expected label name or left brace, got "EQUAL"'),
    ("hex-float", b"foo 0x1p-3\n# EOF\n", 1, "unsupported character in float"),
    (
        "quoted-name-unsupported",
        b'{b="c",} 1\n# EOF\n',
        1,
        '"INVALID" "{" is not a valid start token',
    ),
    ("duplicate-label", b'a{b="c",b="d"} 1\n# EOF\n', 1, 'label name "b" is not unique'),
    (
        "duplicate-on-third-line",
        b'a 1\nb 2\nc{__name__="x"} 3\n# EOF\n',
        3,
        'label name "__name__"',
    ),
    ("data-after-eof", b"# EOF\na 1", 2, "unexpected data after # EOF"),
    ("blank-after-eof", b"# EOF\n\n", 2, "unexpected data after # EOF"),
    ("text-after-eof-word", b"# EOFa 1", 1, "unexpected data after # EOF"),
    ("eof-in-the-middle", b"a 1\n# EOF\nb 2\n# EOF\n", 3, "unexpected data after # EOF"),
    ("windows-line-endings", b"a 1\r\n# EOF\r\n", 1, 'strconv.ParseFloat: parsing "1\\r"'),
    (
        "exemplar-unquoted",
        b"c_total 1 # {aa=bb}\n# EOF\n",
        1,
        'expected label value, got "INVALID"',
    ),
    (
        "exemplar-no-value",
        b'c_total 1 # {aa="bb"}\n# EOF\n',
        1,
        'expected value after exemplar labels, got "INVALID"',
    ),
    (
        "exemplar-no-value-eof",
        b'c_total 1 # {aa="bb"}',
        1,
        'expected value after exemplar labels, got "EOF"',
    ),
    (
        # Prometheus 2.42 allows exemplars on _total and _bucket only (lifted in 2.43).
        "exemplar-on-gauge",
        b'# TYPE g gauge\ng 1 # {aa="bb"} 1\n# EOF\n',
        2,
        "metric name g does not support exemplars",
    ),
    (
        "exemplar-on-count",
        b'h_count 1 # {aa="bb"} 1\n# EOF\n',
        1,
        "metric name h_count does not support exemplars",
    ),
    (
        "exemplar-double-comma",
        b'c_total 1 # {aa="bb",,cc="dd"} 1\n# EOF\n',
        1,
        'expected label name, got "COMMA"',
    ),
    (
        "exemplar-bad-value",
        b'c_total 1 # {aa="bb"} 1_2\n# EOF\n',
        1,
        "unsupported character in float",
    ),
    (
        "exemplar-hex-value",
        b'c_total 1 # {aa="bb"} 0x1p-3\n# EOF\n',
        1,
        "unsupported character in float",
    ),
    (
        "exemplar-word-value",
        b'c_total 1 # {aa="bb"} true\n# EOF\n',
        1,
        "strconv.ParseFloat: parsing",
    ),
    (
        "exemplar-empty-value",
        b'c_total 1 # {aa="bb",cc=}\n# EOF\n',
        1,
        'expected label value, got "INVALID"',
    ),
    (
        "exemplar-nul",
        b'c_total 1 # {b="\x00ss"} 1\n# EOF\n',
        1,
        'expected label value, got "INVALID"',
    ),
    (
        "exemplar-nan-timestamp",
        b'h_bucket{le="+Inf"} 1 # {aa="bb"} 4 NaN\n# EOF\n',
        1,
        "invalid exemplar timestamp",
    ),
    (
        "exemplar-inf-timestamp",
        b'h_bucket{le="+Inf"} 1 # {aa="bb"} 4 Inf\n# EOF\n',
        1,
        "invalid exemplar timestamp",
    ),
    (
        "exemplar-trailing",
        b'c_total 1 # {a="b"} 1 2 3\n# EOF\n',
        1,
        "expected next entry after exemplar timestamp",
    ),
    (
        # golex never backs up: ' # ' without '{' is no token (while ' #' alone is one).
        "hash-without-brace",
        b"c_total 1 # x\n# EOF\n",
        1,
        'expected timestamp or # symbol, got "INVALID"',
    ),
    (
        "hash-after-ts",
        b"a 1 2 # x\n# EOF\n",
        1,
        'expected next entry after timestamp, got "INVALID"',
    ),
    (
        "hash-word-timestamp",
        b"a 1 #x\n# EOF\n",
        1,
        'strconv.ParseFloat: parsing "#x": invalid syntax',
    ),
    (
        "error-line-number",
        b'# HELP a x\n# TYPE a gauge\na 1\na{b="c"} 2\na{b="c" } 3\n# EOF\n',
        5,
        'expected comma or left brace, got "INVALID"',
    ),
]


@pytest.mark.parametrize(
    "body,line,reason", [c[1:] for c in INVALID_OM], ids=[c[0] for c in INVALID_OM]
)
def test_openmetrics_invalid(body: bytes, line: int, reason: str) -> None:
    check_invalid(body, OM, line, reason)


# ---------------------------------------------------------------- content type


@pytest.mark.parametrize(
    "content_type,openmetrics",
    [
        ("", False),
        ("text/plain; version=0.0.4; charset=utf-8", False),
        ("text/plain", False),
        ("application/json", False),
        ("application/openmetrics-textx", False),
        ("application/openmetrics-text; version=1.0.0; charset=utf-8", True),
        ("application/openmetrics-text", True),
        ("Application/OpenMetrics-Text ; version=0.0.1", True),
    ],
)
def test_content_type_selects_the_format(content_type: str, openmetrics: bool) -> None:
    # Valid only as text (no # EOF) and only as OpenMetrics (float timestamp).
    if openmetrics:
        assert parse(b"a 1 1.5\n# EOF\n", content_type) == [("a", 1.0, 1500)]
        with pytest.raises(ParseError, match="data does not end with # EOF"):
            parse(b"a 1\n", content_type)
    else:
        assert parse(b"a 1\n", content_type) == [("a", 1.0, None)]
        with pytest.raises(ParseError):
            parse(b"a 1 1.5\n# EOF\n", content_type)


# ---------------------------------------------------------------- parse_series


@pytest.mark.parametrize(
    "key,labels",
    [
        ("up", (("__name__", "up"),)),
        ('a{b="c"}', (("__name__", "a"), ("b", "c"))),
        ('a{z="1",b="2",m="3"}', (("__name__", "a"), ("z", "1"), ("b", "2"), ("m", "3"))),
        ("a{}", (("__name__", "a"),)),
        ('a{b="",}', (("__name__", "a"), ("b", ""))),
        ('a { b = "c" , d="e" }', (("__name__", "a"), ("b", "c"), ("d", "e"))),
        ('a{b="c"d="e"}', (("__name__", "a"), ("b", "c"), ("d", "e"))),
        # Only \" \\ and \n are escapes; anything else stays as written.
        (r'a{b="q\"x\\y\nz\tw\\n"}', (("__name__", "a"), ("b", 'q"x\\y\nz\\tw\\n'))),
        ('a:b_c{_d="Zürich 🙂"}', (("__name__", "a:b_c"), ("_d", "Zürich 🙂"))),
        ('a{b="x\ny"}', (("__name__", "a"), ("b", "x\ny"))),
        ('a{b="} {"}', (("__name__", "a"), ("b", "} {"))),
    ],
)
def test_parse_series(key: str, labels: tuple) -> None:
    assert parse_series(key) == labels


@pytest.mark.parametrize(
    "key,reason",
    [
        ("", "is not a valid start token"),
        ("1a", "is not a valid start token"),
        (" a", "is not a valid start token"),
        ("a ", "unexpected text after the series"),
        ("a-b", "unexpected text after the series"),
        ("a{", 'expected label name, got "EOF"'),
        ('a{b="c"', 'expected label name, got "EOF"'),
        ('a{b="c}', 'expected label value, got "INVALID"'),
        ('a{b="c\\"}', 'expected label value, got "INVALID"'),
        ("a{b=c}", 'expected label value, got "INVALID"'),
        ('a{1b="c"}', "expected label name"),
        ('a{b.c="d"}', "expected equal"),
        ('a{b="c",b="d"}', 'label name "b" is not unique'),
        ('a{b="c",d="e",b="f"}', 'label name "b" is not unique'),
        ('a{__name__="b"}', 'label name "__name__" is not unique'),
        ('a{b="c"} 1', "unexpected text after the series"),
        ('a{b="\udcff"}', "invalid UTF-8 label value"),
    ],
)
def test_parse_series_invalid(key: str, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_series(key)
    assert info.value.line == 0
    assert reason in str(info.value)


def test_parse_series_of_every_parsed_key() -> None:
    body = b'a{b="c\\"d"} 1\ne { f = "g" , } 2\nh 3\n'
    assert [parse_series(key) for key, _, _ in parse(body, TEXT)] == [
        (("__name__", "a"), ("b", 'c"d')),
        (("__name__", "e"), ("f", "g")),
        (("__name__", "h"),),
    ]


# ---------------------------------------------------------------- caches


def test_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_caches()
    monkeypatch.setattr(parser, "_CACHE_MAX", 3)
    body = b"".join(b'm%d{i="%d"} %d\n' % (i, i, i) for i in range(10))
    expected = [(f'm{i}{{i="{i}"}}', float(i), None) for i in range(10)]
    assert parse(body, TEXT) == expected
    assert 0 < len(parser._TEXT_KEYS) <= 3
    assert parse(body, TEXT) == expected


def test_key_valid_in_text_is_not_trusted_for_openmetrics() -> None:
    clear_caches()
    assert parse(b'a{b="c",} 1\n', TEXT) == [('a{b="c",}', 1.0, None)]
    with pytest.raises(ParseError, match='expected label name, got "BCLOSE"'):
        parse(b'a{b="c",} 1\n# EOF\n', OM)


# ---------------------------------------------------------------- fast path vs scanner

_FRAGMENTS = [
    "a 1",
    "a 1 2",
    'a{b="c"} 1',
    'a{b="c",} 1',
    'a { b = "c" } 1',
    'a{b="c d"} 1 2',
    'a{b="x\\"y"} NaN',
    "a +Inf",
    "a -inf",
    "a nan",
    "a +nan",
    "a 1e400",
    "a 1_0",
    "a .5",
    "a 1\t2",
    "a\t1",
    "  a 1",
    "a 1 ",
    "a  1",
    "a 1 -2",
    "a 1 1.5",
    "# HELP a x",
    "# TYPE a gauge",
    "# TYPE a info",
    "# TYPE a  gauge",
    "#x",
    "# x",
    "",
    " ",
    'a{b="c"}1',
    "a-1 2",
    'a{b="c",b="d"} 1',
    'a{b="c" 1',
    "a{b='c'} 1",
    '{b="c"} 1',
    "a 1\r",
    "a 0x1p3",
    "a 1 9223372036854775808",
    'a_total 1 # {t="x"} 1',
    'a_total 1 # {t="x"} 1 2.5',
    'a 1 # {t="x"} 1',
    "# UNIT a_s s",
    "# UNIT a x",
    "a{} 1",
    "a{,} 1",
    'a{b="\x00"} 1',
    "a 1 1e30",
    "a ١",
    'a{b="x',
    'y"} 1',
    "# EOF",
]


def _both(text: str, openmetrics: bool) -> tuple[object, object]:
    fast = parser._fast_om(text) if openmetrics else parser._fast_text(text)
    try:
        slow: object = normalise(parser._scan_om(text) if openmetrics else parser._scan_text(text))
    except ParseError as exc:
        slow = exc
    return (None if fast is None else normalise(fast)), slow


def test_fast_path_agrees_with_scanner() -> None:
    """Random documents from valid and invalid lines: whenever the fast path answers,
    the scanner gives the same entries; and it answers for the plain valid ones."""
    rng = random.Random(42)
    answered = 0
    for round_ in range(3000):
        if round_ % 500 == 0:
            clear_caches()
        openmetrics = rng.random() < 0.5
        lines = [rng.choice(_FRAGMENTS) for _ in range(rng.randint(0, 6))]
        if openmetrics and rng.random() < 0.8:
            lines.append("# EOF")
        text = "\n".join(lines) + ("\n" if rng.random() < 0.7 else "")
        fast, slow = _both(text, openmetrics)
        if fast is not None:
            answered += 1
            assert fast == slow, (openmetrics, text)
    assert answered > 300


def test_fast_path_handles_plain_documents() -> None:
    clear_caches()
    text = "# HELP a x\n# TYPE a gauge\n" + "".join(f'a{{i="{i}"}} {i}.5 {i}\n' for i in range(50))
    assert parser._fast_text(text) is not None
    om = "# TYPE a gauge\n" + "".join(f'a{{i="{i}"}} {i}.5 {i}.25\n' for i in range(50)) + "# EOF\n"
    assert parser._fast_om(om) is not None
    assert normalise(parser._fast_om(om)) == normalise(parser._scan_om(om))


# ---------------------------------------------------------------- real bodies


def _family_samples(families) -> list[tuple[str, frozenset, object]]:
    out = []
    for family in families:
        for sample in family.samples:
            value = NAN if math.isnan(sample.value) else sample.value
            out.append((sample.name, frozenset(sample.labels.items()), value))
    return out


def _our_samples(entries) -> list[tuple[str, frozenset, object]]:
    out = []
    for key, value, _ in entries:
        labels = dict(parse_series(key))
        name = labels.pop("__name__")
        out.append((name, frozenset(labels.items()), NAN if math.isnan(value) else value))
    return out


def test_node_exporter_body(node_exporter: Server) -> None:
    status, body = http_get(node_exporter.url + "/metrics")
    assert status == 200
    text = body.decode()
    sample_lines = [line for line in text.split("\n") if line and not line.startswith("#")]
    assert len(sample_lines) > 100

    clear_caches()
    entries = parse(body, "text/plain; version=0.0.4; charset=utf-8")
    assert len(entries) == len(sample_lines)
    assert [key for key, _, _ in entries] == [line.rpartition(" ")[0] for line in sample_lines]
    assert normalise(parse(body, TEXT)) == normalise(entries)  # warm caches
    assert normalise(parser._scan_text(text)) == normalise(entries)

    ours = _our_samples(entries)
    theirs = _family_samples(text_families(text))
    assert sorted(ours, key=repr) == sorted(theirs, key=repr)
    assert len(set(ours)) == len(ours)


def test_openmetrics_body_from_prometheus_client() -> None:
    registry = CollectorRegistry()
    counter = Counter("reqs", "Requests.", ["code"], registry=registry)
    counter.labels("200").inc(3, exemplar={"trace_id": "abc"})
    counter.labels('we"ird\\').inc()
    histogram = Histogram("lat_seconds", 'Latency "q"\\ x.', registry=registry, buckets=(0.1, 1))
    histogram.observe(0.05, exemplar={"trace_id": "def"})
    Gauge("temp", "T", unit="celsius", registry=registry).set(float("nan"))
    Summary("size_bytes", "S", registry=registry).observe(3)
    Info("build", "B", registry=registry).info({"version": "1.0"})
    Enum("state", "E", states=["a", "b"], registry=registry).state("b")

    class GaugeHistogram:
        def collect(self):
            yield GaugeHistogramMetricFamily(
                "queue", "Q", buckets=[("1", 2), ("+Inf", 3)], gsum_value=4
            )

    registry.register(GaugeHistogram())
    body = generate_openmetrics(registry)
    text = body.decode()
    assert text.endswith("# EOF\n") and " # {" in text

    clear_caches()
    entries = parse(body, OM)
    sample_lines = [line for line in text.split("\n") if line and not line.startswith("#")]
    assert len(entries) == len(sample_lines) == 21
    assert normalise(parser._scan_om(text)) == normalise(entries)
    assert {key for key, _, _ in entries} >= {
        'reqs_total{code="200"}',
        'reqs_created{code="200"}',
        'reqs_total{code="we\\"ird\\\\"}',
        'lat_seconds_bucket{le="0.1"}',
        "temp_celsius",
        "size_bytes_created",
        'build_info{version="1.0"}',
        'state{state="b"}',
        "queue_gcount",
        "queue_gsum",
    }
    ours = _our_samples(entries)
    theirs = _family_samples(om_families(text))
    assert sorted(ours, key=repr) == sorted(theirs, key=repr)
