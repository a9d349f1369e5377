"""Exposition parsers: Prometheus text format 0.0.4 and OpenMetrics 1.0.

The semantics are those of Prometheus 2.42's `model/textparse` (promparse.go,
openmetricsparse.go and their lexers): what Prometheus accepts is accepted with the same
result, what it rejects is rejected, with its error wording where it has one.

    parse(body, content_type) -> [(series_key, value, timestamp_ms | None), ...]
    parse_series(series_key)  -> (("__name__", name), (label, value), ...)
    text_shape(body, content_type) -> TextShape | None
    values_in_shape(body, content_type, shape) -> [value, ...] | None

There are two paths through a document. The fast path handles the usual shapes of lines
with str methods, keeps sets of series keys and comment lines it has already validated
(a target exposes the same ones on every scrape), and converts values in bulk. The
scanner follows the lexer rules token by token; it is the reference. The fast path hands
every line it does not recognise to the scanner, and when anything is wrong the whole
document goes through the scanner, which raises the error with its line number.

Prometheus 2.42 behaviours worth knowing (checked against the real binary):
- text: CRLF line endings are rejected (the CR ends up in the value or the type); blanks
  before a sample fail the scrape (Prometheus makes them part of the metric name), blanks
  before a comment do not; a label value may span lines; `foo-1` is `foo` with value -1;
  blanks around every token inside braces and a trailing comma are fine; timestamps are
  unsigned integers; a NUL byte at the start of a line ends the document quietly.
- OpenMetrics: `# EOF` must end the data; no blank lines, no other comments, single
  blanks only; timestamps are float seconds, converted as `int64(ts * 1000)`; exemplars
  only on names ending in `_total` or `_bucket` (lifted in 2.43); `_created`, info,
  stateset and gaugehistogram samples are ordinary series.
- Duplicate label names are rejected here (Prometheus fails the append of such a sample,
  which fails the scrape).
"""

from __future__ import annotations

import json
import math
import re
import struct
from array import array
from collections.abc import Callable
from itertools import accumulate, repeat
from operator import itemgetter
from typing import Any

try:
    from clymene import _speedups  # built by `pip install`; see clymene/_speedups.c
except ImportError:  # a source tree without the build: the Python path alone
    _speedups = None

__all__ = ["ParseError", "TextShape", "parse", "parse_series", "picker", "text_shape",
           "values_in_shape"]

Entry = tuple[str, float, int | None]


class ParseError(ValueError):
    """A document or series key that Prometheus would not accept.

    `line` is the 1-based line of the body where the problem is (0 when unknown, as for
    `parse_series`); `reason` is the message without the line prefix. Prometheus appends
    sample by sample while it parses, so what comes before the error counts: `entries`
    are the samples parsed before the failing line, and `counted` says whether the
    failing line is itself a sample Prometheus counts as scraped (its error comes when
    the sample is appended: a duplicate label name, or a metric name that blanks at the
    start of the line made invalid); `labels` are then that sample's labels."""

    def __init__(self, reason: str, line: int = 0, entries: list[Entry] | None = None,
                 counted: bool = False,
                 labels: list[tuple[str, str]] | None = None) -> None:
        super().__init__(f"line {line}: {reason}" if line else reason)
        self.reason = reason
        self.line = line
        self.entries: list[Entry] = entries or []
        self.counted = counted
        self.labels = labels


class _Invalid(Exception):
    """Internal: a scanner error at index `pos` of the string being scanned. `labels`
    is set for errors Prometheus raises when it appends the (parsed) sample."""

    def __init__(self, msg: str, pos: int = 0,
                 labels: list[tuple[str, str]] | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.pos = pos
        self.labels = labels


# value.NormalNaN: the NaN Prometheus stores for every parsed NaN (text normalises to it,
# and Go's ParseFloat returns exactly these bits for OpenMetrics).
NORMAL_NAN: float = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0]
_INF = math.inf
_NINF = -math.inf
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_TWO63 = float(2**63)

_TEXT_TYPES = frozenset(("counter", "gauge", "histogram", "summary", "untyped"))
_OM_TYPES = frozenset(
    ("counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset", "unknown")
)
# Go's strconv.ParseFloat specials, lower-cased: signed infinities, unsigned NaN only.
_SPECIALS = {
    "inf": _INF,
    "+inf": _INF,
    "-inf": _NINF,
    "infinity": _INF,
    "+infinity": _INF,
    "-infinity": _NINF,
    "nan": NORMAL_NAN,
}
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_NAME_START = frozenset(_LETTERS + "_:")
_LNAME_START = frozenset(_LETTERS + "_")

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_WS = re.compile(r"[ \t]*")
_DIGITS = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Quoted label values. Text: anything but an unescaped quote, newlines included; an
# escape is a backslash and any character but a newline. OpenMetrics: no newlines, and
# no NUL inside exemplar label values (the lexer skips NULs only in sample labels).
_TEXT_QSTR = re.compile(r'"(?:[^"\\]++|\\[^\n])*+"')
_OM_QSTR = re.compile(r'"(?:[^"\\\n]++|\\[^\n])*+"')
_OM_EXEMPLAR_QSTR = re.compile(r'"(?:[^"\\\n\x00]++|\\[^\n\x00])*+"')
_TEXT_VALUE = re.compile(r"[^{ \t\n\x00]+")
_OM_TOKEN = re.compile(r"[^ \n\x00]+")
_TEXT_META = re.compile(r"#[ \t]+(HELP|TYPE)[ \t]+")
_UNESCAPE = re.compile(r'\\(["\\n])')
# A character that plain decimals (joined by blanks) do not have. On plain decimals
# Python's float() and Go's ParseFloat agree, except that float() overflows quietly.
_NOT_PLAIN = re.compile(r"[^ 0-9.eE+\-]")
_SURROGATE = re.compile("[\udc80-\udcff]")

# Validated series keys and comment lines, per format. Bounded: cleared when full.
_CACHE_MAX = 200_000
_TEXT_KEYS: set[str] = set()
_TEXT_COMMENTS: set[str] = set()
_OM_KEYS: set[str] = set()
_OM_COMMENTS: set[str] = set()


def _remember(cache: set[str], item: str) -> None:
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache.add(item)


# ---------------------------------------------------------------- public API


def parse(body: bytes, content_type: str) -> list[Entry]:
    """(series_key, value, timestamp_ms or None) per sample, in exposition order.

    OpenMetrics 1.0 when the media type is `application/openmetrics-text`, else the
    Prometheus text format 0.0.4 (also for an empty or unknown content type)."""
    if _is_openmetrics(content_type):
        return _parse_om(body)
    return _parse_text(body)


def parse_series(series_key: str) -> tuple[tuple[str, str], ...]:
    """The labels of a series key: ("__name__", name) first, then the labels in
    exposition order, values unescaped. Raises ParseError (line 0) for a key that is
    not a valid series (names, quoting, escapes, duplicate label names)."""
    try:
        end, labels = _text_series(series_key, 0)
        if end != len(series_key):
            raise _Invalid("unexpected text after the series", end)
        _check_duplicates(labels, 0)
    except _Invalid as exc:
        raise ParseError(f"invalid series {_quote(series_key)}: {exc.msg}") from None
    return tuple(labels)


def _is_openmetrics(content_type: str) -> bool:
    # Prometheus compares the media type from mime.ParseMediaType (lower-cased).
    return content_type.split(";", 1)[0].strip().lower() == "application/openmetrics-text"


# ---------------------------------------------------------------- helpers


def _quote(s: str, limit: int = 200) -> str:
    if len(s) > limit:
        s = s[:limit] + "..."
    if _SURROGATE.search(s):
        s = s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return json.dumps(s, ensure_ascii=False)


def _unescape(raw: str) -> str:
    # Prometheus' lvalReplacer: only \" \\ and \n; any other escape stays as written.
    if "\\" in raw:
        return _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), raw)
    return raw


def _go_float(s: str) -> float:
    """Go's strconv.ParseFloat as Prometheus calls it (no hex, no underscores)."""
    if "p" in s or "P" in s or "_" in s:
        raise _Invalid("unsupported character in float")
    if len(s) <= 9:
        special = _SPECIALS.get(s.lower())
        if special is not None:
            return special
    if _DECIMAL.fullmatch(s) is None:
        raise _Invalid(f"strconv.ParseFloat: parsing {_quote(s)}: invalid syntax")
    f = float(s)
    if f == _INF or f == _NINF:
        raise _Invalid(f"strconv.ParseFloat: parsing {_quote(s)}: value out of range")
    return f


def _om_ms(ts: float, what: str = "timestamp") -> int:
    """OpenMetrics seconds -> milliseconds, as Go's int64(ts * 1000) on amd64."""
    if ts != ts or ts == _INF or ts == _NINF:
        raise _Invalid(f"invalid {what}")
    ms = ts * 1000.0
    if -_TWO63 <= ms < _TWO63:
        return int(ms)
    return _INT64_MIN  # what the conversion gives on amd64 for values out of range


def _text_timestamp(s: str) -> int:
    ts = int(s)
    if ts > _INT64_MAX:
        raise _Invalid(f"strconv.ParseInt: parsing {_quote(s)}: value out of range")
    return ts


def _tok(s: str, i: int, state: str) -> str:
    """The name of the token Prometheus' lexer reports at s[i], for error messages."""
    if i >= len(s):
        return '"EOF"'
    c = s[i]
    name = "INVALID"
    if state == "labels":
        if c in _LNAME_START:
            name = "LNAME"
        else:
            name = {"}": "BCLOSE", ",": "COMMA", "=": "EQUAL"}.get(c, "INVALID")
    elif state == "value":
        if c == "{":
            name = "BOPEN"
        elif c not in " \t\n\x00":
            name = "VALUE"
    elif state == "timestamp":
        if "0" <= c <= "9":
            name = "TIMESTAMP"
        elif c == "\n":
            name = "LINEBREAK"
    elif state == "om_after":
        if c == " " and i + 1 < len(s) and s[i + 1] not in " \n\x00":
            name = "TIMESTAMP"
    return f'"{name}"'


def _check_duplicates(labels: list[tuple[str, str]], pos: int) -> None:
    if len(labels) > 2:
        names = [name for name, _ in labels]
        if len(set(names)) != len(names):
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise _Invalid(f'label name "{name}" is not unique: invalid sample', pos,
                                   labels)
                seen.add(name)
    elif len(labels) == 2 and labels[1][0] == "__name__":
        raise _Invalid('label name "__name__" is not unique: invalid sample', pos, labels)


# ---------------------------------------------------------------- text format scanner


def _text_series(s: str, i: int) -> tuple[int, list[tuple[str, str]]]:
    """The series at s[i] by the text format's rules: a metric name, then optionally
    blanks and a label set in which blanks may surround every token and a trailing
    comma is allowed. Returns (end of the series text, labels); duplicate label names
    are the caller's to check (Prometheus finds them later, when appending)."""
    m = _METRIC_NAME.match(s, i)
    if m is None:
        raise _Invalid(f"{_tok(s, i, 'start')} is not a valid start token", i)
    labels = [("__name__", m.group())]
    j = _WS.match(s, m.end()).end()
    if s[j : j + 1] != "{":
        return m.end(), labels
    j += 1
    while True:
        j = _WS.match(s, j).end()
        if s[j : j + 1] == "}":
            return j + 1, labels
        m = _LABEL_NAME.match(s, j)
        if m is None:
            raise _Invalid(f"expected label name, got {_tok(s, j, 'labels')}", j)
        name = m.group()
        j = _WS.match(s, m.end()).end()
        if s[j : j + 1] != "=":
            raise _Invalid(f"expected equal, got {_tok(s, j, 'labels')}", j)
        j = _WS.match(s, j + 1).end()
        q = _TEXT_QSTR.match(s, j)
        if q is None:
            raise _Invalid('expected label value, got "INVALID"', j)
        raw = s[j + 1 : q.end() - 1]
        if _SURROGATE.search(raw):
            raise _Invalid("invalid UTF-8 label value", j)
        labels.append((name, _unescape(raw)))
        j = _WS.match(s, q.end()).end()
        if s[j : j + 1] == ",":
            j += 1


def _text_comment(s: str, i: int) -> int:
    """A line starting with '#' at s[i]; returns the index after its newline."""
    nl = s.index("\n", i)
    j = _WS.match(s, i + 1).end()
    if j == i + 1:
        # '#' without a blank: a plain comment, in which a NUL ends the document.
        return len(s) if "\x00" in s[i:nl] else nl + 1
    m = _TEXT_META.match(s, i)
    if m is None or m.end() > nl:
        return nl + 1  # any other comment
    kind = m.group(1)
    name = _METRIC_NAME.match(s, m.end())
    if name is None or name.end() > nl:
        raise _Invalid(f'expected metric name after {kind}, got "INVALID"', m.end())
    rest = s[name.end() : nl]
    # The lexer's blank rule beats the text rule on a tie, so blanks alone give no text;
    # otherwise the text is the rest of the line minus its first character. A NUL right
    # after the name ends the text (and then the document, which is an error here).
    text = rest[1:] if rest.strip(" \t") and rest[:1] != "\x00" else ""
    if kind == "TYPE":
        if text not in _TEXT_TYPES:
            raise _Invalid(f"invalid metric type {_quote(text)}", name.end())
    elif _SURROGATE.search(text):
        raise _Invalid("help text is not a valid utf8 string", name.end())
    if rest[:1] == "\x00":
        raise _Invalid('linebreak expected after metadata, got "EOF"', name.end())
    return nl + 1


def _text_entry(s: str, i: int, out: list[Entry]) -> int:
    """One entry (line) of a text document at s[i], which ends with a newline; appends
    a sample to `out` and returns the index after the entry's newline."""
    j = _WS.match(s, i).end()
    c = s[j]
    if c == "\n":
        return j + 1
    if c == "\x00":
        return len(s)  # the lexer's EOF token: Prometheus stops here without an error
    if c == "#":
        return _text_comment(s, j)
    key_end, labels = _text_series(s, j)
    k = _WS.match(s, key_end).end()
    v = _TEXT_VALUE.match(s, k)
    if v is None:
        raise _Invalid(f"expected value after metric, got {_tok(s, k, 'value')}", k)
    try:
        value = _go_float(v.group())
    except _Invalid as exc:
        raise _Invalid(exc.msg, k) from None
    k = _WS.match(s, v.end()).end()
    ts = None
    if s[k] != "\n":
        t = _DIGITS.match(s, k)
        if t is None:
            raise _Invalid(f"expected timestamp or new record, got {_tok(s, k, 'timestamp')}", k)
        try:
            ts = _text_timestamp(t.group())
        except _Invalid as exc:
            raise _Invalid(exc.msg, k) from None
        k = _WS.match(s, t.end()).end()
        if s[k] != "\n":
            raise _Invalid(f"expected next entry after timestamp, got {_tok(s, k, 'timestamp')}", k)
    if j > i:
        # Prometheus takes the series from the start of the line, so the blanks become
        # part of the metric name, which then fails its validity check.
        raise _Invalid(
            "invalid metric name or label names: the metric name"
            f" {_quote(s[i:j] + labels[0][1])} starts with blanks",
            i,
            [("__name__", s[i:j] + labels[0][1]), *labels[1:]],
        )
    _check_duplicates(labels, j)
    out.append((s[j:key_end], value, ts))
    return k + 1


def _scan_text(text: str) -> list[Entry]:
    """The exact text format parse of a whole document."""
    s = text + "\n"  # as Prometheus does: the last line need not end with a newline
    out: list[Entry] = []
    i = 0
    n = len(s)
    try:
        while i < n:
            i = _text_entry(s, i, out)
    except _Invalid as exc:
        raise _error(s, exc, out) from None
    return out


def _error(s: str, exc: _Invalid, entries: list[Entry]) -> ParseError:
    """ParseError for a scanner error at s[exc.pos], naming the line and its text;
    `entries` are the samples parsed before it."""
    pos = min(exc.pos, len(s))
    line = s.count("\n", 0, pos) + 1
    start = s.rfind("\n", 0, pos) + 1
    end = s.find("\n", pos)
    text = s[start : end if end >= 0 else len(s)]
    reason = f"{exc.msg} while parsing {_quote(text)}"
    if text.endswith("\r"):
        reason += " (the line ends with a carriage return: Windows line endings are not accepted)"
    return ParseError(reason, line, entries, exc.labels is not None, exc.labels)


# ---------------------------------------------------------------- text format fast path


def _parse_text(body: bytes) -> list[Entry]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        # Invalid UTF-8 is fine in plain comments only; the scanner sorts it out.
        return _scan_text(body.decode("utf-8", "surrogateescape"))
    out = _fast_text(text)
    return _scan_text(text) if out is None else out


def _finish(
    keys: list[str],
    vals: list[str],
    stamped: list[int],
    stamps_text: list[str],
    special: list[tuple[int, Entry]],
    openmetrics: bool,
) -> list[Entry] | None:
    """Converts the values and timestamps collected by a fast path in bulk and zips the
    entries; None when one of them needs the scanner's judgement. `stamped` holds the
    indexes of the entries with a timestamp, `stamps_text` their timestamps."""
    try:
        floats = _floats(vals)
        stamps: list[int | None] = [None] * len(keys)
        if stamps_text:
            if openmetrics:
                ms = [f * 1000.0 for f in _floats(stamps_text)]
                total = sum(ms)
                if total - total != 0.0 or not (-_TWO63 <= min(ms) and max(ms) < _TWO63):
                    return None  # NaN, an infinity or out of int64 range: the scanner
                converted = list(map(int, ms))
            else:
                joined = "".join(stamps_text)
                if not (joined.isascii() and joined.isdigit()):
                    return None
                converted = list(map(int, stamps_text))
                if max(converted) > _INT64_MAX:
                    return None
            if len(converted) == len(keys):
                stamps = converted  # type: ignore[assignment]  # every line has one
            else:
                for idx, ts in zip(stamped, converted, strict=True):
                    stamps[idx] = ts
    except (ValueError, _Invalid):
        return None
    for idx, (_, value, ts) in special:
        floats[idx] = value
        stamps[idx] = ts
    return list(zip(keys, floats, stamps, strict=True))


def _floats(vals: list[str]) -> list[float]:
    """Go's ParseFloat of each string, in bulk; raises ValueError or _Invalid."""
    floats = list(map(float, vals))
    joined = " ".join(vals)
    odd = _NOT_PLAIN.search(joined)
    if odd is None:
        # Plain decimals: float() agrees with Go except that it overflows quietly.
        if _INF in floats or _NINF in floats:
            raise _Invalid("value out of range")
        return floats
    # NaN, Inf and the like: validate those the Go way (signed NaN, blanks, underscores
    # and non-ASCII digits are fine for Python, not for Go).
    exact = set()
    idx, pos = 0, 0  # value index at character position pos of `joined`
    while odd is not None:
        start = joined.rfind(" ", 0, odd.start()) + 1
        end = joined.find(" ", odd.start())
        if end < 0:
            end = len(joined)
        idx += joined.count(" ", pos, start)
        pos = start
        floats[idx] = _go_float(joined[start:end])
        exact.add(idx)
        odd = _NOT_PLAIN.search(joined, end)
    for idx, f in enumerate(floats):
        if (f == _INF or f == _NINF) and idx not in exact:
            raise _Invalid("value out of range")  # a plain number that overflows
    return floats


def _text_comment_ok(line: str) -> bool:
    """Whether a '#' line is fine (in a valid UTF-8 text without NUL); remembered if so."""
    m = _TEXT_META.match(line)
    if m is not None:
        name = _METRIC_NAME.match(line, m.end())
        if name is None:
            return False
        if m.group(1) == "TYPE":
            rest = line[name.end() :]
            if (rest[1:] if rest.strip(" \t") else "") not in _TEXT_TYPES:
                return False
    _remember(_TEXT_COMMENTS, line)
    return True


def _text_key_ok(key: str) -> bool:
    """Whether `key` is exactly one series by the text rules; remembered if so."""
    if not key or key[0] not in _NAME_START:
        return False
    try:
        end, labels = _text_series(key, 0)
        if end != len(key):
            return False
        _check_duplicates(labels, 0)
    except _Invalid:
        return False
    _remember(_TEXT_KEYS, key)
    return True


def _fast_text(text: str) -> list[Entry] | None:
    """The text format parse of well-formed documents; None when a line needs the
    scanner's judgement (the caller then scans the whole document)."""
    if "\x00" in text:
        return None  # NUL bytes have special meanings to the lexer
    keys: list[str] = []
    vals: list[str] = []
    stamped: list[int] = []  # indexes of the entries with a timestamp
    stamps_text: list[str] = []
    special: list[tuple[int, Entry]] = []  # (index, entry) of lines the scanner parsed
    good_keys = _TEXT_KEYS
    good_comments = _TEXT_COMMENTS
    for line in text.split("\n"):
        if not line:
            continue
        if line[0] == "#":
            if line not in good_comments and not _text_comment_ok(line):
                return None
            continue
        # The usual shapes: "key value" and "key value timestamp", single blanks.
        head, _, value = line.rpartition(" ")
        if value:
            if head in good_keys:
                keys.append(head)
                vals.append(value)
                continue
            key, _, value2 = head.rpartition(" ")
            if value2 and key in good_keys:
                stamped.append(len(keys))
                stamps_text.append(value)
                keys.append(key)
                vals.append(value2)
                continue
            if _text_key_ok(head):
                keys.append(head)
                vals.append(value)
                continue
            if value2 and _text_key_ok(key):
                stamped.append(len(keys))
                stamps_text.append(value)
                keys.append(key)
                vals.append(value2)
                continue
        # Any other shape (tabs, runs of blanks, leading blanks, no blank before the
        # value) or an error: the scanner decides, and on an error the caller scans the
        # whole document (a label value may also continue on the next line).
        entries: list[Entry] = []
        try:
            if _text_entry(line + "\n", 0, entries) != len(line) + 1:
                return None
        except _Invalid:
            return None
        if entries:
            special.append((len(keys), entries[0]))
            keys.append(entries[0][0])
            vals.append("0")
    return _finish(keys, vals, stamped, stamps_text, special, False)


# ---------------------------------------------------------------- text format layout


class TextShape:
    """The layout of a text-format document that the fast path read whole: every line
    a validated comment, a blank line, or `key value` with a validated series key and no
    timestamp. Holds each line's text before its last blank, and the whole text of the
    lines that are not samples; two documents with the same shape differ only in the
    values, and `values_in_shape` reads those without looking at a line in Python."""

    __slots__ = ("content_type", "heads", "keys", "others", "_pick_values", "_pick_others",
                 "_c_text", "_c_ends", "_c_flags")

    def __init__(self, content_type: str, lines: list[str], heads: list[str],
                 samples: list[int], others: list[int]) -> None:
        self.content_type = content_type
        self.heads = heads
        self.keys = [heads[i] for i in samples]
        self._pick_values = picker(samples)
        self._pick_others = picker(others)
        self.others = self._pick_others(lines)
        # For _speedups.shape_values: each line's bytes up to its value (the whole line
        # for the lines that are not samples) in one buffer, where each ends, and which
        # lines are samples.
        flags = bytearray(len(lines))
        c_lines = [line.encode() for line in lines]
        for i in samples:
            flags[i] = 1
            c_lines[i] = heads[i].encode() + b" "
        self._c_text = b"".join(c_lines)
        self._c_ends = array("I", accumulate(map(len, c_lines))).tobytes()
        self._c_flags = bytes(flags)


def picker(indexes: list[int]) -> Callable[[list[Any]], tuple[Any, ...]]:
    """A getter of the items at `indexes`, as a tuple (itemgetter alone gives a bare
    item for one index)."""
    if len(indexes) > 1:
        return itemgetter(*indexes)
    if indexes:
        index = indexes[0]
        return lambda seq: (seq[index],)
    return lambda seq: ()


def text_shape(body: bytes, content_type: str) -> TextShape | None:
    """The shape of a document the fast path reads as is (see TextShape); None for
    OpenMetrics, timestamps, unusual blanks, lines not validated before, or no samples."""
    lines = None if _is_openmetrics(content_type) else _plain_lines(body)
    if lines is None:
        return None
    heads = [line.rpartition(" ")[0] for line in lines]
    samples: list[int] = []
    others: list[int] = []
    for i, line in enumerate(lines):
        if not line or line[0] == "#":
            if line and line not in _TEXT_COMMENTS:
                return None
            others.append(i)
        elif heads[i] in _TEXT_KEYS and len(line) > len(heads[i]) + 1:
            samples.append(i)
        else:
            return None
    if not samples:
        return None
    return TextShape(content_type, lines, heads, samples, others)


def values_in_shape(body: bytes, content_type: str, shape: TextShape) -> list[float] | None:
    """The values of a document of this shape, in line order (those of the lines in
    `shape.keys`); None when the document is not of this shape or a value needs the
    parser's judgement (parse it then)."""
    if content_type != shape.content_type:
        return None
    if _speedups is not None:
        # The usual case in C. A document of another layout is None there as here; a
        # value it does not read (Go's rarer spellings of special values, overflows) is
        # judged below.
        values = _speedups.shape_values(body, shape._c_text, shape._c_ends, shape._c_flags)
        if values is not NotImplemented:
            return values
    lines = _plain_lines(body)
    if lines is None or len(lines) != len(shape.heads):
        return None
    parts = list(map(str.rpartition, lines, repeat(" ")))
    if list(map(_HEAD, parts)) != shape.heads or shape._pick_others(lines) != shape.others:
        return None
    values = shape._pick_values(list(map(_TAIL, parts)))
    try:
        floats = _floats(list(values))
    except (ValueError, _Invalid):
        return None
    return floats


def _plain_lines(body: bytes) -> list[str] | None:
    """The lines of a valid UTF-8 body without NUL or CR (those need the scanner)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\x00" in text or "\r" in text:
        return None
    return text.split("\n")


_HEAD = itemgetter(0)
_TAIL = itemgetter(2)


# ---------------------------------------------------------------- OpenMetrics scanner

_EOF = object()


def _om_labels(s: str, j: int, exemplar: bool) -> tuple[int, list[tuple[str, str]]]:
    """An OpenMetrics label set from just after its '{': no blanks, commas only between
    labels. Returns (index after '}', labels)."""
    qstr = _OM_EXEMPLAR_QSTR if exemplar else _OM_QSTR
    labels: list[tuple[str, str]] = []
    first = True
    while True:
        c = s[j : j + 1]
        if c == "}":
            return j + 1, labels
        if c == ",":
            if first:
                raise _Invalid('expected label name or left brace, got "COMMA"', j)
            j += 1
            m = _LABEL_NAME.match(s, j)
            if m is None:
                raise _Invalid(f"expected label name, got {_tok(s, j, 'labels')}", j)
        else:
            m = _LABEL_NAME.match(s, j)
            if m is None:
                what = "label name" if first else "comma"
                raise _Invalid(f"expected {what} or left brace, got {_tok(s, j, 'labels')}", j)
            if not first:
                raise _Invalid('expected comma, got "LNAME"', j)
        first = False
        j = m.end()
        if s[j : j + 1] != "=":
            raise _Invalid(f"expected equal, got {_tok(s, j, 'labels')}", j)
        q = qstr.match(s, j + 1)
        if q is None:
            raise _Invalid('expected label value, got "INVALID"', j + 1)
        raw = s[j + 2 : q.end() - 1]
        if _SURROGATE.search(raw):
            raise _Invalid("invalid UTF-8 label value", j + 1)
        labels.append((m.group(), _unescape(raw)))
        j = q.end()


def _om_series(s: str, i: int) -> tuple[int, list[tuple[str, str]]]:
    m = _METRIC_NAME.match(s, i)
    if m is None:
        c = s[i : i + 1] or " "
        raise _Invalid(f'"INVALID" {_quote(c)} is not a valid start token', i)
    labels = [("__name__", m.group())]
    end = m.end()
    if s[end : end + 1] == "{":
        end, more = _om_labels(s, end + 1, False)
        labels += more
        _check_duplicates(labels, i)
    return end, labels


def _om_meta(line: str, kind: str, has_nl: bool) -> None:
    name = _METRIC_NAME.match(line, 7)
    if name is None:
        got = '"EOF"' if len(line) == 7 and not has_nl else '"INVALID"'
        raise _Invalid(f"expected metric name after {kind}, got {got}", 7)
    ne = name.end()
    if line[ne : ne + 1] != " " or not has_nl:
        raise _Invalid(f"expected text in {kind}", ne)
    text = line[ne + 1 :]
    if kind == "TYPE":
        if text not in _OM_TYPES:
            raise _Invalid(f"invalid metric type {_quote(text)}", ne + 1)
    elif kind == "HELP":
        if _SURROGATE.search(text):
            raise _Invalid("help text is not a valid utf8 string", ne + 1)
    elif text:
        m = name.group()
        if not (len(m) > len(text) and m.endswith(text) and m[-len(text) - 1] == "_"):
            raise _Invalid(f"unit not a suffix of metric {_quote(m)}", ne + 1)


def _om_exemplar(line: str, k: int, name: str, has_nl: bool) -> None:
    """The exemplar after ' # {' (k is just after the '{'); checked, not kept."""
    if not (name.endswith("_total") or name.endswith("_bucket")):
        raise _Invalid(f"metric name {name} does not support exemplars", k)
    k, _ = _om_labels(line, k, True)
    v = _OM_TOKEN.match(line, k + 1) if line[k : k + 1] == " " else None
    if v is None:
        got = '"EOF"' if k >= len(line) and not has_nl else '"INVALID"'
        raise _Invalid(f"expected value after exemplar labels, got {got}", k)
    try:
        _go_float(v.group())
    except _Invalid as exc:
        raise _Invalid(exc.msg, k) from None
    k = v.end()
    if k == len(line):
        if not has_nl:
            raise _Invalid("data does not end with # EOF", k)
        return
    t = _OM_TOKEN.match(line, k + 1) if line[k] == " " else None
    if t is None:
        raise _Invalid('expected timestamp or comment, got "INVALID"', k)
    try:
        _om_ms(_go_float(t.group()), "exemplar timestamp")
    except _Invalid as exc:
        raise _Invalid(exc.msg, k) from None
    if t.end() != len(line):
        got = _tok(line, t.end(), "om_after")
        raise _Invalid(f"expected next entry after exemplar timestamp, got {got}", t.end())
    if not has_nl:
        raise _Invalid('expected next entry after exemplar timestamp, got "EOF"', t.end())


def _om_timestamp_token(line: str, k: int) -> re.Match[str] | None:
    """The timestamp token after a sample value at line[k] (a blank and a word). The
    lexer (golex) never backs up: ' # ' not followed by '{' is no token at all, though
    ' #' alone would be one."""
    if line[k : k + 1] != " " or line.startswith(" # ", k):
        return None
    return _OM_TOKEN.match(line, k + 1)


def _om_line(line: str, has_nl: bool) -> Entry | object | None:
    """One OpenMetrics line (without its newline; `has_nl` says whether one follows).
    Returns a sample, None for metadata, or _EOF for '# EOF'."""
    if not line:
        raise _Invalid('"INVALID" "\\n" is not a valid start token', 0)
    if line[0] == "#":
        if line.startswith("# EOF"):
            if line == "# EOF":
                return _EOF
            raise _Invalid("unexpected data after # EOF", 5)
        kind = line[2:6]
        if line[1:2] == " " and kind in ("HELP", "TYPE", "UNIT") and line[6:7] == " ":
            _om_meta(line, kind, has_nl)
            return None
        c = line[1:2] if line[1:2] != " " else line[2:3]
        raise _Invalid(f'"INVALID" {_quote(c or " ")} is not a valid start token', 0)
    key_end, labels = _om_series(line, 0)
    k = key_end
    v = _OM_TOKEN.match(line, k + 1) if line[k : k + 1] == " " else None
    if v is None:
        got = '"EOF"' if k >= len(line) and not has_nl else '"INVALID"'
        raise _Invalid(f"expected value after metric, got {got}", k)
    try:
        value = _go_float(v.group())
    except _Invalid as exc:
        raise _Invalid(exc.msg, k) from None
    k = v.end()
    ts = None
    if k < len(line) and not line.startswith(" # {", k):
        t = _om_timestamp_token(line, k)
        if t is None:
            raise _Invalid('expected timestamp or # symbol, got "INVALID"', k)
        try:
            ts = _om_ms(_go_float(t.group()))
        except _Invalid as exc:
            raise _Invalid(exc.msg, k) from None
        k = t.end()
        if k < len(line) and not line.startswith(" # {", k):
            got = '"TIMESTAMP"' if _om_timestamp_token(line, k) else '"INVALID"'
            raise _Invalid(f"expected next entry after timestamp, got {got}", k)
        if k == len(line) and not has_nl:
            raise _Invalid('expected next entry after timestamp, got "EOF"', k)
    if k < len(line):
        _om_exemplar(line, k + 4, labels[0][1], has_nl)
    elif not has_nl:
        raise _Invalid("data does not end with # EOF", k)
    return (line[:key_end], value, ts)


def _scan_om(text: str) -> list[Entry]:
    """The exact OpenMetrics parse of a whole document (its lines are independent)."""
    out: list[Entry] = []
    lines = text.split("\n")
    last = len(lines) - 1
    for idx, line in enumerate(lines):
        has_nl = idx < last
        if not has_nl and not line:
            raise ParseError("data does not end with # EOF", idx + 1, out)
        try:
            entry = _om_line(line, has_nl)
        except _Invalid as exc:
            start = len("\n".join(lines[:idx])) + (1 if idx else 0)
            raise _error(text, _Invalid(exc.msg, start + exc.pos, exc.labels), out) from None
        if entry is _EOF:
            if idx == last or (idx == last - 1 and not lines[last]):
                return out
            raise ParseError("unexpected data after # EOF", idx + 2, out)
        if entry is not None:
            out.append(entry)  # type: ignore[arg-type]
    raise AssertionError("unreachable: the last line ends the loop")


# ---------------------------------------------------------------- OpenMetrics fast path


def _parse_om(body: bytes) -> list[Entry]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _scan_om(body.decode("utf-8", "surrogateescape"))
    out = _fast_om(text)
    return _scan_om(text) if out is None else out


def _om_key_ok(key: str) -> bool:
    """Whether `key` is exactly one series by the OpenMetrics rules; remembered if so."""
    if not key or key[0] not in _NAME_START:
        return False
    try:
        end, _ = _om_series(key, 0)
    except _Invalid:
        return False
    if end != len(key):
        return False
    _remember(_OM_KEYS, key)
    return True


def _om_comment_ok(line: str) -> bool:
    """Whether a '#' line is fine metadata (not '# EOF'); remembered if so."""
    try:
        if _om_line(line, True) is not None:
            return False  # '# EOF' before the end
    except _Invalid:
        return False
    _remember(_OM_COMMENTS, line)
    return True


def _fast_om(text: str) -> list[Entry] | None:
    """The OpenMetrics parse of well-formed documents; None when a line needs the
    scanner's judgement (the caller then scans the whole document)."""
    if "\x00" in text:
        return None  # NUL bytes have special meanings to the lexer
    lines = text.split("\n")
    if not lines[-1]:
        lines.pop()
    if not lines or lines[-1] != "# EOF":
        return None
    lines.pop()
    keys: list[str] = []
    vals: list[str] = []
    stamped: list[int] = []
    stamps_text: list[str] = []
    special: list[tuple[int, Entry]] = []
    good_keys = _OM_KEYS
    good_comments = _OM_COMMENTS
    for line in lines:
        if not line:
            return None
        if line[0] == "#":
            if line not in good_comments and not _om_comment_ok(line):
                return None
            continue
        head, _, value = line.rpartition(" ")
        if value:
            if head in good_keys:
                keys.append(head)
                vals.append(value)
                continue
            key, _, value2 = head.rpartition(" ")
            if value2 and key in good_keys:
                stamped.append(len(keys))
                stamps_text.append(value)
                keys.append(key)
                vals.append(value2)
                continue
            if _om_key_ok(head):
                keys.append(head)
                vals.append(value)
                continue
            if value2 and _om_key_ok(key):
                stamped.append(len(keys))
                stamps_text.append(value)
                keys.append(key)
                vals.append(value2)
                continue
        # Exemplars and anything unusual: the scanner, line by line (OpenMetrics lines
        # are independent); an error sends the document to the whole-document scan.
        try:
            entry = _om_line(line, True)
        except _Invalid:
            return None
        if not isinstance(entry, tuple):
            return None
        special.append((len(keys), entry))
        keys.append(entry[0])
        vals.append("0")
    return _finish(keys, vals, stamped, stamps_text, special, True)
