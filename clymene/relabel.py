"""Prometheus relabeling (`relabel_configs`, `metric_relabel_configs`), Prometheus 2.42 semantics.

`compile_rules` validates a rule list as Prometheus' `relabel.Config.UnmarshalYAML` and
`Validate` do and precompiles everything; `relabel` applies compiled rules to one label set.

Regexes are written in Go's RE2 syntax. They are translated once, at compile time, into an
equivalent Python `re` pattern; what RE2 refuses (lookarounds, backreferences, atomic groups,
possessive quantifiers) is refused here too. Replacement templates follow Go's
`Regexp.Expand` (`$1`, `${1}`, `$name`, `${name}`, `$$`), parsed once per rule.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

__all__ = ["ACTIONS", "RelabelConfigError", "Rule", "compile_rules", "relabel"]

ACTIONS = (
    "replace", "keep", "drop", "keepequal", "dropequal", "hashmod",
    "labelmap", "labeldrop", "labelkeep", "lowercase", "uppercase",
)
_FIELDS = ("source_labels", "separator", "regex", "modulus", "target_label", "replacement", "action")
_DEFAULT_REGEX = "(.*)"
_DEFAULT_SEPARATOR = ";"
_DEFAULT_REPLACEMENT = "$1"


class RelabelConfigError(ValueError):
    """A relabel rule that Prometheus would refuse. `index` is -1 for the list itself."""

    def __init__(self, message: str, where: str = "", index: int = -1, field: str = "") -> None:
        super().__init__(message)
        self.where = where
        self.index = index
        self.field = field


@dataclass(frozen=True, slots=True)
class Rule:
    """One validated rule; `apply` mutates a label dict in place, False means drop."""

    action: str
    source_labels: tuple[str, ...]
    separator: str
    regex: str
    modulus: int
    target_label: str
    replacement: str
    pattern: re.Pattern[str] = field(repr=False, compare=False)
    apply: Callable[[dict[str, str]], bool] = field(repr=False, compare=False)


def relabel(labels: dict[str, str], rules: list[Rule]) -> dict[str, str] | None:
    """Apply `rules` in order to a copy of `labels`; None when the label set is dropped."""
    lb = dict(labels)
    for rule in rules:
        if not rule.apply(lb):
            return None
    return lb


def compile_rules(raw: list[dict], where: str) -> list[Rule]:
    """Validate and precompile a `relabel_configs` list; `where` names it in errors."""
    if raw is None:
        return []
    if not isinstance(raw, (list, tuple)):
        raise RelabelConfigError(
            f"{where}: must be a list of relabel rules, got {_type_name(raw)}", where)
    return [_compile_rule(item, where, i) for i, item in enumerate(raw)]


# ---------------------------------------------------------------------------------------------
# Validation: the field types of yaml.v2 decoding, then relabel.Config.Validate in Go's order.

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
# Prometheus' relabelTarget regex, rewritten so it cannot backtrack: a label name in which
# `${name}` / `$name` references may stand for characters.
_TEMPLATE_NAME = re.compile(
    r"(?:[a-zA-Z_]|\$(?:\{\w+\}|(?=\w)))(?:\w|\$(?:\{\w+\}|(?=\w)))*\Z", re.ASCII)


def _valid_name(name: str) -> bool:
    return _LABEL_NAME.match(name) is not None


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _q(s: str) -> str:
    """Go's %q, near enough for messages."""
    return json.dumps(s, ensure_ascii=False)


def _compile_rule(raw: Any, where: str, index: int) -> Rule:
    def fail(fld: str, what: str) -> RelabelConfigError:
        place = f"{where}[{index}].{fld}" if fld else f"{where}[{index}]"
        return RelabelConfigError(f"{place}: {what}", where, index, fld)

    if raw is None:
        raise fail("", "empty or null relabeling rule")
    if not isinstance(raw, dict):
        raise fail("", f"must be a mapping of rule fields, got {_type_name(raw)}")
    for key in raw:
        if key not in _FIELDS:
            raise fail(str(key), f"unknown field {str(key)!r} (known: {', '.join(_FIELDS)})")

    def text(key: str, default: str) -> str:
        # yaml.v2 decodes any scalar into a string field; null resets it to "".
        if key not in raw:
            return default
        value = raw[key]
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise fail(key, f"must be a string, got {_type_name(value)} {value!r} (quote it)")

    source: tuple[str, ...] | None = None
    if raw.get("source_labels") is not None:
        value = raw["source_labels"]
        if not isinstance(value, list):
            raise fail("source_labels", f"must be a list of label names, got {_type_name(value)}")
        for name in value:
            if not isinstance(name, str) or not _valid_name(name):
                raise fail("source_labels", f"{_q(str(name))} is not a valid label name")
        source = tuple(value)
    separator = text("separator", _DEFAULT_SEPARATOR)
    regex_set = "regex" in raw
    regex = text("regex", _DEFAULT_REGEX)
    modulus = raw.get("modulus")
    if modulus is None:
        modulus = 0
    elif isinstance(modulus, bool) or not isinstance(modulus, int) or not 0 <= modulus < 1 << 64:
        raise fail("modulus", f"must be an unsigned 64-bit integer, got {modulus!r}")
    target = text("target_label", "")
    replacement = text("replacement", _DEFAULT_REPLACEMENT)
    action = text("action", "replace").lower()
    if action and action not in ACTIONS:
        raise fail("action", f"unknown relabel action {_q(text('action', ''))}"
                             f" (known: {', '.join(ACTIONS)})")
    try:
        compiled = _compile_regex(regex)
    except _RegexError as e:
        raise fail("regex", f"invalid regex {_q(regex)}: {e}") from None

    # relabel.Config.Validate, check by check.
    if action == "":
        raise fail("action", "relabel action cannot be empty")
    if modulus == 0 and action == "hashmod":
        raise fail("modulus", "relabel configuration for hashmod requires non-zero modulus")
    if action in ("replace", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal") \
            and target == "":
        raise fail("target_label",
                   f"relabel configuration for {action} action requires 'target_label' value")
    bad_target = fail("target_label", f"{_q(target)} is invalid 'target_label' for {action} action")
    if action == "replace" and "$" not in target and not _valid_name(target):
        raise bad_target
    if action == "replace" and "$" in target and _TEMPLATE_NAME.match(target) is None:
        raise bad_target
    if action in ("lowercase", "uppercase", "keepequal", "dropequal"):
        if not _valid_name(target):
            raise bad_target
        if replacement != _DEFAULT_REPLACEMENT:
            raise fail("replacement", f"'replacement' can not be set for {action} action")
    if action == "labelmap" and _TEMPLATE_NAME.match(replacement) is None:
        raise fail("replacement", f"{_q(replacement)} is invalid 'replacement' for {action} action")
    if action == "hashmod" and not _valid_name(target):
        raise bad_target
    if action in ("keepequal", "dropequal"):
        # Prometheus compares the regex by identity: setting it at all, even to "(.*)", is an error.
        extra = ("regex" if regex_set else "modulus" if modulus else
                 "separator" if separator != _DEFAULT_SEPARATOR else "")
        if extra:
            raise fail(extra, f"{action} action requires only 'source_labels' and `target_label`,"
                              " and no other fields")
    if action in ("labeldrop", "labelkeep"):
        extra = ("source_labels" if source is not None else "target_label" if target else
                 "modulus" if modulus else "separator" if separator != _DEFAULT_SEPARATOR else
                 "replacement" if replacement != _DEFAULT_REPLACEMENT else "")
        if extra:
            raise fail(extra, f"{action} action requires only 'regex', and no other fields")

    rule_fields = (action, source or (), separator, regex, modulus, target, replacement)
    return Rule(*rule_fields, compiled.pattern, _make_apply(*rule_fields, compiled))


# ---------------------------------------------------------------------------------------------
# Actions: one closure per rule, specialised at compile time.

def _value_getter(source: tuple[str, ...], sep: str) -> Callable[[dict[str, str]], str]:
    if not source:
        return lambda lb: ""
    if len(source) == 1:
        name = source[0]
        return lambda lb: lb.get(name, "")
    return lambda lb: sep.join([lb.get(n, "") for n in source])


def _make_apply(action: str, source: tuple[str, ...], sep: str, regex: str, modulus: int,
                target: str, replacement: str, rx: _Compiled) -> Callable[[dict[str, str]], bool]:
    value = _value_getter(source, sep)
    test = rx.test

    if action == "keep":
        def apply(lb: dict[str, str]) -> bool:
            return test(value(lb)) is not None
    elif action == "drop":
        def apply(lb: dict[str, str]) -> bool:
            return test(value(lb)) is None
    elif action == "keepequal":
        def apply(lb: dict[str, str]) -> bool:
            return lb.get(target, "") == value(lb)
    elif action == "dropequal":
        def apply(lb: dict[str, str]) -> bool:
            return lb.get(target, "") != value(lb)
    elif action == "replace":
        apply = _make_replace(value, rx, target, replacement)
    elif action in ("lowercase", "uppercase"):
        convert = _go_lower if action == "lowercase" else _go_upper

        def apply(lb: dict[str, str]) -> bool:
            result = convert(value(lb))
            if result:
                lb[target] = result
            else:
                lb.pop(target, None)
            return True
    elif action == "hashmod":
        def apply(lb: dict[str, str]) -> bool:
            lb[target] = str(_hashmod(value(lb), modulus))
            return True
    elif action == "labelmap":
        apply = _make_labelmap(rx, replacement)
    elif action == "labeldrop":
        def apply(lb: dict[str, str]) -> bool:
            for name in [n for n in lb if test(n) is not None]:
                del lb[name]
            return True
    elif action == "labelkeep":
        def apply(lb: dict[str, str]) -> bool:
            for name in [n for n in lb if test(n) is None]:
                del lb[name]
            return True
    else:  # pragma: no cover - compile_rules only lets known actions through
        raise AssertionError(action)
    return apply


def _make_replace(value: Callable[[dict[str, str]], str], rx: _Compiled, target: str,
                  replacement: str) -> Callable[[dict[str, str]], bool]:
    search = rx.search
    tgt = _template(target, rx)
    rep = _template(replacement, rx)
    if isinstance(tgt, str):
        if not _valid_name(tgt):  # e.g. "${3}" without a group 3: never a label name
            return lambda lb: True

        def apply(lb: dict[str, str]) -> bool:
            m = search(value(lb))
            if m is None:
                return True
            res = rep if rep.__class__ is str else rep(m)
            if res:
                lb[tgt] = res
            else:
                lb.pop(tgt, None)
            return True
        return apply

    def apply_template(lb: dict[str, str]) -> bool:
        m = search(value(lb))
        if m is None:
            return True
        name = tgt(m)
        if _LABEL_NAME.match(name) is None:
            return True
        res = rep if rep.__class__ is str else rep(m)
        if res:
            lb[name] = res
        else:
            lb.pop(name, None)
        return True
    return apply_template


def _make_labelmap(rx: _Compiled, replacement: str) -> Callable[[dict[str, str]], bool]:
    test = rx.test
    search = rx.search
    rep = _template(replacement, rx)
    expand: Callable[[re.Match[str]], str] = (lambda m: rep) if isinstance(rep, str) else rep

    def apply(lb: dict[str, str]) -> bool:
        # Prometheus 2.42 walks the sorted labels as they were before this rule.
        for name, val in sorted(lb.items()):
            m = test(name)
            if m is None:
                continue
            if m.start() == 0 and m.end() == len(name):
                new = expand(m)
            else:
                new = _replace_all(search, expand, name, m)
            if val:
                lb[new] = val
            else:
                lb.pop(new, None)
        return True
    return apply


def _replace_all(search: Callable[..., re.Match[str] | None],
                 expand: Callable[[re.Match[str]], str], s: str, m: re.Match[str] | None) -> str:
    """Go's Regexp.ReplaceAllString: an empty match right after a match is not replaced."""
    out = []
    last_end = 0
    pos = 0
    while m is not None:
        start, end = m.span()
        out.append(s[last_end:start])
        if end > last_end or start == 0:
            out.append(expand(m))
        last_end = end
        pos = pos + 1 if pos + 1 > end else end
        if pos > len(s):
            break
        m = search(s, pos)
    out.append(s[last_end:])
    return "".join(out)


def _utf8(s: str) -> bytes:
    try:
        return s.encode()
    except UnicodeEncodeError:  # lone surrogates: hash the bytes they stand for
        return s.encode("utf-8", "surrogatepass")


def _hashmod(value: str, modulus: int) -> int:
    # Prometheus: md5 of the value, the last 8 digest bytes read big-endian (what its old
    # sum64 loop computed: the shifts of the first 8 bytes overflow to 0), modulo modulus.
    digest = hashlib.md5(_utf8(value), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % modulus


# Go's strings.ToLower/ToUpper map rune by rune with the simple (one-to-one) case mapping;
# Python's str.lower/upper use the full mapping (ß -> SS) and a final-sigma rule.

@lru_cache(maxsize=4096)
def _go_lower_char(c: str) -> str:
    low = c.lower()
    return low if len(low) == 1 else low[0]  # only U+0130 lowers to two runes: simple is "i"


@lru_cache(maxsize=4096)
def _go_upper_char(c: str) -> str:
    up = c.upper()
    if len(up) == 1:
        return up
    title = c.title()  # e.g. U+1F80 has simple uppercase U+1F88, its titlecase form
    return title if len(title) == 1 else c


def _go_lower(s: str) -> str:
    return s.lower() if s.isascii() else "".join(map(_go_lower_char, s))


def _go_upper(s: str) -> str:
    return s.upper() if s.isascii() else "".join(map(_go_upper_char, s))


# ---------------------------------------------------------------------------------------------
# Replacement templates: Go's Regexp.Expand.

def _is_word_rune(c: str) -> bool:
    # Go's expand: unicode.IsLetter, unicode.IsDigit or '_'.
    return c == "_" or unicodedata.category(c) in ("Lu", "Ll", "Lt", "Lm", "Lo", "Nd")


def _template(tpl: str, rx: _Compiled) -> str | Callable[[re.Match[str]], str]:
    """A static string when `tpl` has no group reference, else an expander of a match."""
    parts: list[str | tuple[int, ...]] = []
    lit: list[str] = []
    i, n = 0, len(tpl)
    while True:
        j = tpl.find("$", i)
        if j < 0:
            lit.append(tpl[i:])
            break
        lit.append(tpl[i:j])
        i = j + 1
        if i < n and tpl[i] == "$":  # $$ is a literal $
            lit.append("$")
            i += 1
            continue
        k = i + 1 if i < n and tpl[i] == "{" else i
        start = k
        while k < n and _is_word_rune(tpl[k]):
            k += 1
        name = tpl[start:k]
        if not name or (start > i and (k >= n or tpl[k] != "}")):
            lit.append("$")  # malformed reference: the $ is literal text
            continue
        i = k + 1 if start > i else k
        # A name of ASCII digits without a leading zero (and < 1e8) is a group number;
        # anything else, `1x` included, is a group name, empty when there is no such group.
        if name.isascii() and name.isdigit() and (len(name) == 1 or name[0] != "0") \
                and len(name) <= 9:
            num = int(name)
            groups: tuple[int, ...] = (num,) if num <= rx.groups else ()
        else:
            groups = rx.names.get(name, ())
        if groups:
            parts.append("".join(lit))
            lit = []
            parts.append(groups)
    parts.append("".join(lit))
    parts = [p for p in parts if p != ""]
    if not any(isinstance(p, tuple) for p in parts):
        return "".join(p for p in parts if isinstance(p, str))
    if len(parts) == 1 and len(parts[0]) == 1:
        group = parts[0][0]
        return lambda m: m.group(group) or ""
    frozen = tuple(parts)

    def expand(m: re.Match[str]) -> str:
        out = []
        for p in frozen:
            if p.__class__ is str:
                out.append(p)
            else:
                for g in p:  # a name may be used by several groups: first that matched
                    v = m.group(g)
                    if v is not None:
                        out.append(v)
                        break
        return "".join(out)
    return expand


# ---------------------------------------------------------------------------------------------
# Go RE2 syntax -> Python re. The parser follows Go's regexp/syntax (Perl flags, as
# regexp.Compile uses) and emits Python text: `^`/`$`/`.`/`\b` and the Perl/POSIX/Unicode
# classes are written out explicitly, named groups become plain groups (Go allows a name
# twice; the template expander resolves names), `(?i)` becomes scoped `(?i:...)` groups and
# `(?U)` swaps greediness while emitting.

class _RegexError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class _Compiled:
    pattern: re.Pattern[str]
    test: Callable[[str], re.Match[str] | None]  # Go's MatchString
    search: Callable[..., re.Match[str] | None]  # Go's leftmost-first search
    groups: int
    names: dict[str, tuple[int, ...]]


@lru_cache(maxsize=1024)
def _compile_regex(regex: str) -> _Compiled:
    # Prometheus anchors with string concatenation, so `a)|(b` escapes the anchors in Go
    # too: translate the whole anchored expression, as Go parses it.
    tr = _Translator("^(?:" + regex + ")$")
    text = tr.run()
    try:
        pattern = re.compile(text)
    except (re.error, RecursionError, OverflowError) as e:
        raise _RegexError(f"cannot be translated to a Python regex ({e})") from None
    # Anchored at both ends: only a match from 0 to the end counts, so `match` is enough.
    anchored = tr.wrapper_end == len(tr.s) - 2
    return _Compiled(pattern, pattern.match if anchored else pattern.search, pattern.search,
                     pattern.groups, {k: tuple(v) for k, v in tr.names.items()})


_I, _M, _S, _U = 1, 2, 4, 8
_FLAG_BITS = {"i": _I, "m": _M, "s": _S, "U": _U}
_MAX_RUNE = 0x10FFFF
_CAPTURE_NAME = re.compile(r"[A-Za-z0-9_]+\Z")
_REPEAT = re.compile(r"\{([0-9]+)(?:(,)([0-9]*))?\}")
_UNSUPPORTED_GROUPS = (
    ("(?=", "lookahead `(?=` is not supported (RE2 syntax)"),
    ("(?!", "negative lookahead `(?!` is not supported (RE2 syntax)"),
    ("(?<=", "lookbehind `(?<=` is not supported (RE2 syntax)"),
    ("(?<!", "negative lookbehind `(?<!` is not supported (RE2 syntax)"),
    ("(?>", "atomic group `(?>` is not supported (RE2 syntax)"),
    ("(?#", "comment group `(?#` is not supported (RE2 syntax)"),
    ("(?P=", "backreference `(?P=name)` is not supported (RE2 syntax)"),
    ("(?P>", "recursion `(?P>name)` is not supported (RE2 syntax)"),
    ("(?|", "branch reset `(?|` is not supported (RE2 syntax)"),
    ("(?(", "conditional `(?(` is not supported (RE2 syntax)"),
)
_ESCAPED_CONTROL = {"a": 7, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}

Ranges = list[tuple[int, int]]

_PERL_CLASSES: dict[str, Ranges] = {
    "d": [(0x30, 0x39)],
    "s": [(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)],
    "w": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
}
_POSIX_CLASSES: dict[str, Ranges] = {
    "alnum": [(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
    "alpha": [(0x41, 0x5A), (0x61, 0x7A)],
    "ascii": [(0x00, 0x7F)],
    "blank": [(0x09, 0x09), (0x20, 0x20)],
    "cntrl": [(0x00, 0x1F), (0x7F, 0x7F)],
    "digit": [(0x30, 0x39)],
    "graph": [(0x21, 0x7E)],
    "lower": [(0x61, 0x7A)],
    "print": [(0x20, 0x7E)],
    "punct": [(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
    "space": [(0x09, 0x0D), (0x20, 0x20)],
    "upper": [(0x41, 0x5A)],
    "word": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "xdigit": [(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
}


def _merge(ranges: Ranges) -> Ranges:
    out: Ranges = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _negate(ranges: Ranges) -> Ranges:
    out: Ranges = []
    nxt = 0
    for lo, hi in _merge(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= _MAX_RUNE:
        out.append((nxt, _MAX_RUNE))
    return out


def _class_char(cp: int) -> str:
    if cp < 0x80:
        c = chr(cp)
        return c if c.isalnum() else f"\\x{cp:02x}"
    return f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}"


def _class_text(ranges: Ranges, negated: bool) -> str:
    ranges = _merge(ranges)
    if not ranges:  # matches nothing, or (negated) everything
        return "[\\x00-\\U0010ffff]" if negated else "[^\\x00-\\U0010ffff]"
    body = "".join(_class_char(lo) if lo == hi else f"{_class_char(lo)}-{_class_char(hi)}"
                   for lo, hi in ranges)
    return f"[{'^' if negated else ''}{body}]"


class _Frame:
    __slots__ = ("start", "branch_start", "saved_flags", "group_flags", "opener", "marks",
                 "wrapper")

    def __init__(self, start: int, saved_flags: int, group_flags: int, opener: str,
                 wrapper: bool) -> None:
        self.start = start
        self.branch_start = start
        self.saved_flags = saved_flags  # restored when the group closes
        self.group_flags = group_flags  # in force at the start of each branch
        self.opener = opener
        self.marks: list[tuple[int, int]] = []  # (out index, i flag) of inline (?i)/(?-i)
        self.wrapper = wrapper


class _Translator:
    def __init__(self, s: str) -> None:
        self.s = s
        self.pos = 0
        self.flags = 0
        # Emitted atoms: [python text, repeat budget needed (Go's 1000 limit), kind].
        self.out: list[list[Any]] = []
        self.names: dict[str, list[int]] = {}
        self.ngroups = 0
        self.frames = [_Frame(0, 0, 0, "", False)]
        self.wrapper_end = -1

    def run(self) -> str:
        s, n = self.s, len(self.s)
        last_repeat = -1  # start of the previous token when it was a repetition
        while self.pos < n:
            c = s[self.pos]
            start = self.pos
            repeat = False
            if c == "(":
                self._open()
            elif c == "|":
                self._bar()
            elif c == ")":
                self._close()
            elif c == "^":
                self.pos += 1
                self._atom("(?m:^)" if self.flags & _M else r"\A", "assert")
            elif c == "$":
                self.pos += 1
                self._atom("(?m:$)" if self.flags & _M else r"\Z", "assert")
            elif c == ".":
                self.pos += 1
                self._atom("(?s:.)" if self.flags & _S else r"[^\n]")
            elif c == "[":
                self._atom(self._parse_class())
            elif c in "*+?":
                self.pos += 1
                self._repeat(c, 0, 0, False, start, last_repeat)
                repeat = True
            elif c == "{":
                bounds = self._parse_repeat()
                if bounds is None:  # not a valid repeat: a literal {
                    self.pos += 1
                    self._atom(r"\{")
                else:
                    self._repeat("{", bounds[0], bounds[1], True, start, last_repeat)
                    repeat = True
            elif c == "\\":
                self._escape()
            else:
                self.pos += 1
                self._atom(re.escape(c))
            last_repeat = start if repeat else -1
        if len(self.frames) > 1:
            raise _RegexError("missing closing )")
        self._close_marks(self.frames[0])
        return "".join(item[0] for item in self.out)

    def _atom(self, text: str, kind: str = "atom", need: int = 0) -> None:
        self.out.append([text, need, kind])

    # Groups, alternation and flags.

    def _push(self, opener: str, flags: int, wrapper: bool = False) -> None:
        if opener == "(?:" and (flags & _I) != (self.flags & _I):
            opener = "(?i:" if flags & _I else "(?-i:"
        self.frames.append(_Frame(len(self.out), self.flags, flags, opener, wrapper))
        self.flags = flags

    def _open(self) -> None:
        s, p = self.s, self.pos
        if not s.startswith("(?", p):
            self.ngroups += 1
            self._push("(", self.flags)
            self.pos += 1
            return
        if s.startswith("(?P<", p) or (s.startswith("(?<", p) and not s.startswith(("(?<=", "(?<!"), p)):
            begin = p + (4 if s[p + 2] == "P" else 3)
            end = s.find(">", begin)
            if end < 0:
                raise _RegexError(f"invalid named capture `{s[p:]}`")
            name = s[begin:end]
            if _CAPTURE_NAME.match(name) is None:
                raise _RegexError(f"invalid named capture `{s[p:end + 1]}`")
            self.ngroups += 1
            self.names.setdefault(name, []).append(self.ngroups)
            self._push("(", self.flags)
            self.pos = end + 1
            return
        for prefix, what in _UNSUPPORTED_GROUPS:
            if s.startswith(prefix, p):
                raise _RegexError(what)
        # Flags: (?flags) or (?flags:re), flags from imsU, with one optional '-'.
        flags, negate, saw, i, n = self.flags, False, False, p + 2, len(s)
        while i < n:
            c = s[i]
            i += 1
            if c in _FLAG_BITS:
                flags = flags & ~_FLAG_BITS[c] if negate else flags | _FLAG_BITS[c]
                saw = True
            elif c == "-" and not negate:
                negate, saw = True, False
            elif c in ":)" and (saw or not negate):
                if c == ":":
                    self._push("(?:", flags, wrapper=p == 1)
                else:
                    if (flags & _I) != (self.flags & _I):
                        self.frames[-1].marks.append((len(self.out), flags & _I))
                    self.flags = flags
                self.pos = i
                return
            else:
                break
        raise _RegexError(f"invalid or unsupported Perl syntax `{s[p:i]}`")

    def _close_marks(self, frame: _Frame) -> None:
        # An inline (?i) lasts to the end of its branch: wrap the rest of the branch.
        for at, flag in reversed(frame.marks):
            items = self.out[at:]
            del self.out[at:]
            body = "".join(item[0] for item in items)
            self._atom(f"{'(?i:' if flag else '(?-i:'}{body})", "atom",
                       max((item[1] for item in items), default=0))
        frame.marks = []

    def _bar(self) -> None:
        frame = self.frames[-1]
        self._close_marks(frame)
        self._atom("|", "bar")
        self.pos += 1
        frame.branch_start = len(self.out)
        # Go keeps flags set by (?i) across `|`; the Python group restarts with its own.
        if (self.flags & _I) != (frame.group_flags & _I):
            frame.marks.append((len(self.out), self.flags & _I))

    def _close(self) -> None:
        if len(self.frames) == 1:
            raise _RegexError("unexpected )")
        frame = self.frames.pop()
        self._close_marks(frame)
        items = self.out[frame.start:]
        del self.out[frame.start:]
        body = "".join(item[0] for item in items)
        self._atom(f"{frame.opener}{body})", "atom", max((item[1] for item in items), default=0))
        self.flags = frame.saved_flags
        if frame.wrapper:
            self.wrapper_end = self.pos
        self.pos += 1

    # Repetition.

    def _parse_repeat(self) -> tuple[int, int] | None:
        m = _REPEAT.match(self.s, self.pos)
        if m is None:
            return None
        lo_text, comma, hi_text = m.groups()

        def number(t: str) -> int | None:
            if len(t) >= 2 and t[0] == "0":
                return None  # Go: leading zeros make it no repeat at all
            return int(t) if len(t) <= 9 else -1

        lo = number(lo_text)
        hi = lo if not comma else -1 if hi_text == "" else number(hi_text)
        if lo is None or hi is None:
            return None
        if comma and hi_text and hi < 0:
            lo = -1
        if lo < 0 or lo > 1000 or hi > 1000 or (hi >= 0 and lo > hi):
            raise _RegexError(f"invalid repeat count `{m.group()}`")
        self.pos = m.end()
        return lo, hi

    def _repeat(self, op: str, lo: int, hi: int, counted: bool, start: int,
                last_repeat: int) -> None:
        s = self.s
        lazy = False
        if self.pos < len(s) and s[self.pos] == "?":
            lazy = True
            self.pos += 1
        if last_repeat >= 0:
            raise _RegexError(f"invalid nested repetition operator `{s[last_repeat:self.pos]}`"
                              " (possessive quantifiers and stacked repeats are not RE2)")
        frame = self.frames[-1]
        if len(self.out) == frame.branch_start:
            raise _RegexError(f"missing argument to repetition operator `{s[start:self.pos]}`")
        text, need, kind = self.out[-1]
        if kind != "atom":  # Python refuses to repeat an assertion or a repeat directly
            text = f"(?:{text})"
        if counted:
            # Go refuses nested counted repeats whose product exceeds 1000.
            factor = hi if hi >= 0 else lo
            if hi == 0:
                need = 0
            elif factor > 0:
                need = factor * max(1, need)
            if (lo >= 2 or hi >= 2) and need > 1000:
                raise _RegexError(f"invalid repeat count `{s[start:self.pos]}`")
            op = f"{{{lo}}}" if lo == hi else f"{{{lo},}}" if hi < 0 else f"{{{lo},{hi}}}"
        if lazy != bool(self.flags & _U):
            op += "?"
        self.out[-1] = [text + op, need, "repeat"]

    # Escapes and classes.

    def _escape(self) -> None:
        s, p = self.s, self.pos
        if p + 1 >= len(s):
            raise _RegexError("trailing backslash at end of expression")
        c = s[p + 1]
        if c in "AzbB":
            self.pos += 2
            self._atom({"A": r"\A", "z": r"\Z", "b": r"(?a:\b)", "B": r"(?a:\B)"}[c], "assert")
        elif c == "Q":  # literal text up to \E
            end = s.find("\\E", p + 2)
            literal = s[p + 2:] if end < 0 else s[p + 2:end]
            self.pos = len(s) if end < 0 else end + 2
            for ch in literal:
                self._atom(re.escape(ch))
        elif c in "pP":
            ranges, negated = self._unicode_class()
            self._atom(_class_text(ranges, negated))
        elif c in "dDsSwW":
            self.pos += 2
            self._atom(_class_text(_PERL_CLASSES[c.lower()], c.isupper()))
        elif c == "C":
            raise _RegexError("invalid escape sequence `\\C` (single bytes are not supported)")
        else:
            self._atom(re.escape(chr(self._parse_escape())))

    def _parse_escape(self) -> int:
        """A single-character escape at self.pos (a backslash); returns the code point."""
        s, n = self.s, len(self.s)
        p = self.pos + 1
        if p >= n:
            raise _RegexError("trailing backslash at end of expression")
        c = s[p]
        p += 1
        if "1" <= c <= "9" and (c > "7" or p >= n or not "0" <= s[p] <= "7"):
            raise _RegexError(f"backreference `\\{c}` is not supported (RE2 syntax)")
        if "0" <= c <= "7":  # octal, up to three digits
            value = int(c)
            for _ in range(2):
                if p < n and "0" <= s[p] <= "7":
                    value = value * 8 + int(s[p])
                    p += 1
            self.pos = p
            return value
        if c == "x":
            if p < n and s[p] == "{":
                end = s.find("}", p + 1)
                digits = s[p + 1:end] if end > 0 else ""
                if digits and all(d in "0123456789abcdefABCDEF" for d in digits) \
                        and int(digits, 16) <= _MAX_RUNE:
                    self.pos = end + 1
                    return int(digits, 16)
            elif p + 2 <= n and all(d in "0123456789abcdefABCDEF" for d in s[p:p + 2]):
                self.pos = p + 2
                return int(s[p:p + 2], 16)
            raise _RegexError(f"invalid escape sequence `{s[self.pos:p + 2]}`")
        if c in _ESCAPED_CONTROL:
            self.pos = p
            return _ESCAPED_CONTROL[c]
        if c < "\x80" and not c.isalnum():  # escaped ASCII punctuation is itself
            self.pos = p
            return ord(c)
        raise _RegexError(f"invalid escape sequence `\\{c}`")

    def _unicode_class(self) -> tuple[Ranges, bool]:
        s, p = self.s, self.pos
        negated = s[p + 1] == "P"
        q = p + 2
        if q >= len(s):
            raise _RegexError(f"invalid character class range `{s[p:]}`")
        if s[q] != "{":
            name, q = s[q], q + 1
        else:
            end = s.find("}", q)
            if end < 0:
                raise _RegexError(f"invalid character class range `{s[p:]}`")
            name, q = s[q + 1:end], end + 1
        if name.startswith("^"):
            negated, name = not negated, name[1:]
        ranges = _unicode_table(name)
        if ranges is None:
            raise _RegexError(
                f"unknown Unicode class `{s[p:q]}` (supported: Any, the general categories"
                f" such as L or Lu, and the scripts {', '.join(sorted(_SCRIPTS))})")
        self.pos = q
        return ranges, negated

    def _parse_class(self) -> str:
        s, n = self.s, len(self.s)
        start = self.pos
        p = start + 1
        negated = p < n and s[p] == "^"
        if negated:
            p += 1
        ranges: Ranges = []
        first = True  # `]` right after `[` or `[^` is a literal
        while p >= n or s[p] != "]" or first:
            if p >= n:
                raise _RegexError(f"missing closing ] `{s[start:]}`")
            first = False
            if s.startswith("[:", p) and p + 2 < n:
                end = s.find(":]", p + 2)
                if end >= 0:
                    name = s[p + 2:end]
                    table = _POSIX_CLASSES.get(name.removeprefix("^"))
                    if table is None:
                        raise _RegexError(f"invalid character class range `{s[p:end + 2]}`")
                    ranges += _negate(table) if name.startswith("^") else table
                    p = end + 2
                    continue
            if s[p] == "\\" and p + 1 < n and s[p + 1] in "pP":
                self.pos = p
                table, neg = self._unicode_class()
                ranges += _negate(table) if neg else table
                p = self.pos
                continue
            if s[p] == "\\" and p + 1 < n and s[p + 1] in "dDsSwW":
                table = _PERL_CLASSES[s[p + 1].lower()]
                ranges += _negate(table) if s[p + 1].isupper() else table
                p += 2
                continue
            lo, p = self._class_item(p, start)
            hi = lo
            if p + 1 < n and s[p] == "-" and s[p + 1] != "]":
                hi, p2 = self._class_item(p + 1, start)
                if hi < lo:
                    raise _RegexError(f"invalid character class range `{s[p - 1:p2]}`")
                p = p2
            ranges.append((lo, hi))
        self.pos = p + 1
        return _class_text(ranges, negated)

    def _class_item(self, p: int, start: int) -> tuple[int, int]:
        s = self.s
        if p >= len(s):
            raise _RegexError(f"missing closing ] `{s[start:]}`")
        if s[p] != "\\":
            return ord(s[p]), p + 1
        self.pos = p
        cp = self._parse_escape()
        return cp, self.pos


# Unicode classes: Go's unicode.Categories (from Python's unicodedata, computed on first use)
# and, of unicode.Scripts, the common scripts below (Unicode 14 data). Other scripts are
# refused with a clear error rather than guessed.

_MAJOR_CATEGORIES = {
    "C": ("Cc", "Cf", "Co", "Cs"),  # Go's C leaves out unassigned code points
    "L": ("Lu", "Ll", "Lt", "Lm", "Lo"),
    "M": ("Mn", "Mc", "Me"),
    "N": ("Nd", "Nl", "No"),
    "P": ("Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po"),
    "S": ("Sm", "Sc", "Sk", "So"),
    "Z": ("Zs", "Zl", "Zp"),
}


@lru_cache(maxsize=1)
def _category_ranges() -> dict[str, Ranges]:
    table: dict[str, Ranges] = {}
    category = unicodedata.category
    prev, start = category("\x00"), 0
    for cp in range(1, _MAX_RUNE + 1):
        cat = category(chr(cp))
        if cat != prev:
            table.setdefault(prev, []).append((start, cp - 1))
            prev, start = cat, cp
    table.setdefault(prev, []).append((start, _MAX_RUNE))
    table.pop("Cn", None)
    for major, minors in _MAJOR_CATEGORIES.items():
        table[major] = _merge([r for minor in minors for r in table.get(minor, [])])
    return table


@lru_cache(maxsize=64)
def _unicode_table(name: str) -> Ranges | None:
    if name == "Any":
        return [(0, _MAX_RUNE)]
    if name in _SCRIPTS:
        ranges: Ranges = []
        for item in _SCRIPTS[name].split():
            lo, _, hi = item.partition("-")
            ranges.append((int(lo, 16), int(hi or lo, 16)))
        return ranges
    if len(name) <= 2 and name[:1] in _MAJOR_CATEGORIES:
        return _category_ranges().get(name)
    return None


_SCRIPTS = {
    "Arabic": (
        "600-604 606-60b 60d-61a 61c-61e 620-63f 641-64a 656-66f 671-6dc 6de-6ff 750-77f "
        "870-88e 890-891 898-8e1 8e3-8ff fb50-fbc2 fbd3-fd3d fd40-fd8f fd92-fdc7 fdcf "
        "fdf0-fdff fe70-fe74 fe76-fefc 10e60-10e7e 1ee00-1ee03 1ee05-1ee1f 1ee21-1ee22 1ee24 "
        "1ee27 1ee29-1ee32 1ee34-1ee37 1ee39 1ee3b 1ee42 1ee47 1ee49 1ee4b 1ee4d-1ee4f "
        "1ee51-1ee52 1ee54 1ee57 1ee59 1ee5b 1ee5d 1ee5f 1ee61-1ee62 1ee64 1ee67-1ee6a "
        "1ee6c-1ee72 1ee74-1ee77 1ee79-1ee7c 1ee7e 1ee80-1ee89 1ee8b-1ee9b 1eea1-1eea3 "
        "1eea5-1eea9 1eeab-1eebb 1eef0-1eef1"
    ),
    "Armenian": (
        "531-556 559-58a 58d-58f fb13-fb17"
    ),
    "Cyrillic": (
        "400-484 487-52f 1c80-1c88 1d2b 1d78 2de0-2dff a640-a69f fe2e-fe2f"
    ),
    "Devanagari": (
        "900-950 955-963 966-97f a8e0-a8ff"
    ),
    "Georgian": (
        "10a0-10c5 10c7 10cd 10d0-10fa 10fc-10ff 1c90-1cba 1cbd-1cbf 2d00-2d25 2d27 2d2d"
    ),
    "Greek": (
        "370-373 375-377 37a-37d 37f 384 386 388-38a 38c 38e-3a1 3a3-3e1 3f0-3ff 1d26-1d2a "
        "1d5d-1d61 1d66-1d6a 1dbf 1f00-1f15 1f18-1f1d 1f20-1f45 1f48-1f4d 1f50-1f57 1f59 "
        "1f5b 1f5d 1f5f-1f7d 1f80-1fb4 1fb6-1fc4 1fc6-1fd3 1fd6-1fdb 1fdd-1fef 1ff2-1ff4 "
        "1ff6-1ffe 2126 ab65 10140-1018e 101a0 1d200-1d245"
    ),
    "Han": (
        "2e80-2e99 2e9b-2ef3 2f00-2fd5 3005 3007 3021-3029 3038-303b 3400-4dbf 4e00-9fff "
        "f900-fa6d fa70-fad9 16fe2-16fe3 16ff0-16ff1 20000-2a6df 2a700-2b738 2b740-2b81d "
        "2b820-2cea1 2ceb0-2ebe0 2f800-2fa1d 30000-3134a"
    ),
    "Hangul": (
        "1100-11ff 302e-302f 3131-318e 3200-321e 3260-327e a960-a97c ac00-d7a3 d7b0-d7c6 "
        "d7cb-d7fb ffa0-ffbe ffc2-ffc7 ffca-ffcf ffd2-ffd7 ffda-ffdc"
    ),
    "Hebrew": (
        "591-5c7 5d0-5ea 5ef-5f4 fb1d-fb36 fb38-fb3c fb3e fb40-fb41 fb43-fb44 fb46-fb4f"
    ),
    "Hiragana": (
        "3041-3096 309d-309f 1b001-1b11f 1b150-1b152 1f200"
    ),
    "Katakana": (
        "30a1-30fa 30fd-30ff 31f0-31ff 32d0-32fe 3300-3357 ff66-ff6f ff71-ff9d 1aff0-1aff3 "
        "1aff5-1affb 1affd-1affe 1b000 1b120-1b122 1b164-1b167"
    ),
    "Latin": (
        "41-5a 61-7a aa ba c0-d6 d8-f6 f8-2b8 2e0-2e4 1d00-1d25 1d2c-1d5c 1d62-1d65 "
        "1d6b-1d77 1d79-1dbe 1e00-1eff 2071 207f 2090-209c 212a-212b 2132 214e 2160-2188 "
        "2c60-2c7f a722-a787 a78b-a7ca a7d0-a7d1 a7d3 a7d5-a7d9 a7f2-a7ff ab30-ab5a "
        "ab5c-ab64 ab66-ab69 fb00-fb06 ff21-ff3a ff41-ff5a 10780-10785 10787-107b0 "
        "107b2-107ba 1df00-1df1e"
    ),
    "Thai": (
        "e01-e3a e40-e5b"
    ),
}
