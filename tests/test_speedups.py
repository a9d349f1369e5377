"""The C loops (clymene/_speedups.c) against the Python code they replace.

Each C function is used only where it gives what the Python path gives; when it returns
None the Python path decides. So every case here runs both ways (with the extension, and
with the module attribute set to None) and requires identical results, plus the
independent reference where there is one: the parser for values, the official protobuf
runtime for the encoding."""

from __future__ import annotations

import random
import struct

import pytest

from clymene.scrape import parser
from clymene.storage import remote_write_pb as pb
from tests.test_storage_prometheus import SPECIAL_VALUES, official_encoding, random_batch

TEXT = "text/plain; version=0.0.4; charset=utf-8"


def test_the_installed_package_has_the_c_loops():
    # `pip install` builds the extension; without it every figure in bench/RESULTS.md
    # from this commit on would be wrong.
    from clymene import _speedups

    assert parser._speedups is _speedups and pb._speedups is _speedups


def _bits(values: list[float] | None) -> list[int] | None:
    if values is None:
        return None
    return [struct.unpack("<Q", struct.pack("<d", v))[0] for v in values]


def _both(monkeypatch, fn, *args):
    with_c = fn(*args)
    with monkeypatch.context() as m:
        m.setattr(parser, "_speedups", None)
        m.setattr(pb, "_speedups", None)
        without = fn(*args)
    return with_c, without


# ---------------------------------------------------------------- values


def _shape(body: bytes) -> parser.TextShape | None:
    parser.parse(body, TEXT)  # as a scrape does: the full parse validates the lines first
    return parser.text_shape(body, TEXT)


HEAD = ("# HELP a_total A counter.\n# TYPE a_total counter\n"
        'a_total{x="1"} {a}\na_total{x="ü"} {b}\n\n# TYPE g gauge\ng {c}\n')


def _doc(a: str, b: str = "2", c: str = "3", tail: str = "") -> bytes:
    return (HEAD.replace("{a}", a).replace("{b}", b).replace("{c}", c) + tail).encode()


VALUE_TEXTS = [
    "0", "-0", "+0", "1", "1.", ".5", "-.5", "+1.5e3", "1E-3", "1e+300", "5e-324",
    "123456789012345678901234567890", "0.1", "3.14159265358979323846", "NaN", "+Inf",
    "-Inf", "Inf", "nan", "inf", "+inf", "INF", "Infinity", "-infinity", "0x1p-2", "1_000",
    "1e", "e1", ".", "+", "-", "--1", "1..2", "1e999", "-1e999", "1e-999", "abc", "",
    "1 2", "1\t", "١", "1" * 70, "0." + "0" * 80 + "1",
]


@pytest.mark.parametrize("text", VALUE_TEXTS)
def test_values_of_one_text_as_the_python_path_and_the_parser(monkeypatch, text):
    shape = _shape(_doc("1"))
    assert shape is not None
    body = _doc(text)
    with_c, without = _both(monkeypatch, parser.values_in_shape, body, TEXT, shape)
    assert _bits(with_c) == _bits(without)
    if with_c is not None:
        assert _bits(with_c) == _bits([v for _, v, _ in parser.parse(body, TEXT)])


@pytest.mark.parametrize("body", [
    _doc("1", tail="h 1\n"),  # a line more
    _doc("1")[:-1],  # no trailing newline: one line fewer
    _doc("1") + b"\n",  # a blank line more
    _doc("1").replace(b"# TYPE g gauge", b"# TYPE g counter"),  # a comment changed
    _doc("1").replace(b'x="1"', b'x="2"'),  # a key changed
    _doc("1").replace(b"\n", b"\r\n"),
    _doc("1").replace(b"a_total{x", b"a_total{ x"),
    _doc("1").replace(b"g 3", b"g  3"),
    _doc("1").replace(b"g 3", b"g\t3"),
    _doc("1").replace(b"g 3", b"g 3 1700000000000"),
    _doc("1").replace(b"g 3", b"g 3\x00"),
    _doc("1").replace("ü".encode(), b"\xfc"),  # invalid UTF-8
    _doc("1").replace(b"\n\n", b"\n"),
    b"",
    b"\n",
])
def test_documents_off_the_shape_are_refused_by_both(monkeypatch, body):
    shape = _shape(_doc("1"))
    with_c, without = _both(monkeypatch, parser.values_in_shape, body, TEXT, shape)
    assert with_c is None and without is None


def test_random_documents_and_values(monkeypatch):
    rng = random.Random(11)
    plain = [t for t in VALUE_TEXTS if t and " " not in t and "\t" not in t]
    for _ in range(300):
        n = rng.randrange(1, 40)
        keys = [f'm_{rng.randrange(5)}{{i="{i}",s="{rng.choice(["", "é", "x y"])}"}}'
                for i in range(n)]
        comments = ["# HELP m_0 Some help.", "# TYPE m_1 gauge", "# just a comment", ""]
        lines = []
        for key in keys:
            if rng.random() < 0.2:
                lines.append(rng.choice(comments))
            lines.append(f"{key} {rng.random() * 10 ** rng.randrange(-5, 20)!r}")
        first = ("\n".join(lines) + rng.choice(["\n", ""])).encode()
        shape = _shape(first)
        if shape is None:
            continue
        changed = [line if line.startswith("#") or not line
                   else f"{line.rpartition(' ')[0]} {rng.choice(plain)}" for line in lines]
        body = ("\n".join(changed) + ("\n" if first.endswith(b"\n") else "")).encode()
        with_c, without = _both(monkeypatch, parser.values_in_shape, body, TEXT, shape)
        assert _bits(with_c) == _bits(without), body


# ---------------------------------------------------------------- encoding


def _encode_twice(batch):
    pb.encode_write_request(batch)  # the first sight caches each labels' head
    known = pb.encode_write_request(batch)  # with the heads known (and the run kept)
    assert pb.encode_write_request(batch) == known  # as a run
    return known


def test_scrape_batches_byte_for_byte(monkeypatch):
    rng = random.Random(5)
    for n in [1, 2, 10, 300]:
        for _ in range(15):
            series = list(dict.fromkeys(labels for labels, _, _ in random_batch(rng, n)))
            for ts in [0, 1, -1, 1_700_000_000_123, 2**63 - 1, -(2**63)]:
                values = [rng.choice(SPECIAL_VALUES) if rng.random() < 0.4
                          else rng.uniform(-1e9, 1e9) for _ in series]
                batch = [(labels, v, ts) for labels, v in zip(series, values, strict=True)]
                with_c, without = _both(monkeypatch, _encode_twice, batch)
                assert with_c == without == official_encoding(batch)


def test_batches_that_are_not_the_plain_case(monkeypatch):
    a = (("__name__", "a"), ("job", "j"))
    b = (("__name__", "b"), ("job", "j"))
    twin = tuple(list(a))  # equal to a, another object
    unseen = (("__name__", "never"),)
    for batch in [
        [(a, 1.0, 10), (b, 2.0, 10), (a, 3.0, 10)],  # a labels twice
        [(a, 1.0, 10), (twin, 2.0, 10)],  # equal labels in two tuples
        [(a, 1.0, 10), (b, 2.0, 20)],  # two timestamps
        [(a, 0.0, 10), (b, -0.0, 10), (a, 5.0, 20)],
        [(a, 1.0, 10), (unseen, 2.0, 10)],
        [(a, 1, 10), (b, True, 10)],  # ints are numbers too
    ]:
        pb.encode_write_request([(a, 1.0, 10), (b, 1.0, 10), (twin, 1.0, 10)])
        with_c, without = _both(monkeypatch, pb.encode_write_request, batch)
        assert with_c == without == official_encoding(batch)
        assert pb.decode_write_request(with_c)  # well formed


def test_a_value_that_is_not_a_number_raises_both_ways(monkeypatch):
    a = (("__name__", "a"),)
    pb.encode_write_request([(a, 1.0, 10)])
    for use_c in (True, False):
        with monkeypatch.context() as m:
            if not use_c:
                m.setattr(pb, "_speedups", None)
            with pytest.raises((TypeError, struct.error)):  # never encoded quietly
                pb.encode_write_request([(a, "1", 10)])


@pytest.mark.parametrize("text", ["0", "-0", "1.", ".5", "+1.5e3", "NaN", "+Inf", "-Inf",
                                  "123456789012345678901234567890"])
def test_the_usual_values_are_read_in_c(text):
    # Not only equal results: the C loop itself must take these (else no speed-up).
    shape = _shape(_doc("1"))
    values = parser._speedups.shape_values(_doc(text), shape._c_text, shape._c_ends, shape._c_flags)
    assert _bits(values) == _bits([v for _, v, _ in parser.parse(_doc(text), TEXT)])


def test_scrape_batches_are_encoded_in_c():
    a = (("__name__", "a"), ("job", "j"))
    b = (("__name__", "b"), ("job", "j"))
    pb.encode_write_request([(a, 1.0, 10), (b, 1.0, 10)])
    heads = pb._head_cache[9 + 2]
    batch = [(a, 0.0, 10), (b, 2.5, 10)]
    assert pb._speedups.encode_known(batch, heads, 10, b"\x10\x0a") == official_encoding(batch)


def test_decimal_texts_convert_exactly_as_float_does():
    # The C reader converts short decimals itself (Clinger's fast path) and gives the
    # rest to the correctly rounded strtod: either way, float()'s bits.
    rng = random.Random(17)
    texts = ["0.1", "0.3", "9007199254740993", "999999999999999", "1000000000000000",
             "0.000000000000000000001", "0.0000000000000000000001", "123456789.012345",
             "-0.0", "+.000001", "4.35", "5000.37", "1.7976931348623157"]
    for _ in range(3000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 20)))
        point = rng.randrange(0, len(digits) + 1)
        texts.append(rng.choice(["", "-", "+"]) + digits[:point] + "." + digits[point:]
                     if rng.random() < 0.7 else digits)
    shape = _shape(_doc("1"))
    for text in texts:
        values = parser._speedups.shape_values(_doc(text), shape._c_text, shape._c_ends, shape._c_flags)
        assert values is not None, text
        assert _bits(values[:1]) == _bits([float(text)]), text


def test_runs_follow_the_labels_objects_in_order(monkeypatch):
    series = [(("__name__", "m"), ("i", str(i))) for i in range(50)]
    ts = 1_700_000_000_000
    first = [(labels, float(i), ts) for i, labels in enumerate(series)]
    pb.encode_write_request(first)
    pb.encode_write_request(first)
    key = (id(series[0]), len(series), len(b"\x10" + pb._varint(ts)))
    assert pb._runs[key][0] == series
    calls = []
    real_run = pb._speedups.encode_run
    monkeypatch.setattr(pb._speedups, "encode_run",
                        lambda *a: calls.append(1) or real_run(*a), raising=False)
    swapped = series[:]
    swapped[3], swapped[4] = swapped[4], swapped[3]  # same first labels, another order
    twin = [tuple(list(series[0]))] + series[1:]  # equal labels, other first object
    for labels_list, value in [(series, 0.0), (swapped, 2.5), (series, -0.0),
                               (twin, 1.0), (series, 7.0)]:
        batch = [(labels, value, ts) for labels in labels_list]
        assert pb.encode_write_request(batch) == official_encoding(batch)
    assert len(calls) == 4  # the twin's first labels is another object: no run looked up
