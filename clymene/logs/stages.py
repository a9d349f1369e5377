"""Pipeline stages with promtail's semantics.

A stage takes a list of entries and returns the entries that go on (a stage may drop,
hold or release entries). Stages that hold lines (cri/docker partial lines, multiline)
report the start offset of the oldest line they hold per file (`held`), so the agent
never stores a position past a line that was not delivered yet, and release what they
hold when it is due (`flush`).

`build(raw_stages, where)` validates a `pipeline_stages` list and raises `StageError`
naming the stage index, its type and the field; config.py adds the file and line.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import jmespath

from clymene.logs import timefmt
from clymene.logs.gotemplate import NO_VALUE, TemplateError, compile_template
from clymene.logs.tail import Entry

TENANT_LABEL = "__tenant_id__"
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


class StageError(ValueError):
    """An invalid stage; `index` is the path of stage indices, `line` its YAML line."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


def _line_of(raw: Any) -> int:
    return getattr(raw, "line", 0)


class Stage:
    name = ""

    def run(self, entries: list[Entry]) -> list[Entry]:
        raise NotImplementedError

    def flush(self, now: float, force: bool) -> list[Entry]:
        return []

    def held(self, tail: object) -> int | None:
        return None


class Pipeline(Stage):
    name = "pipeline"

    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages
        self.holders = [i for i, s in enumerate(stages) if type(s).flush is not Stage.flush]

    def run(self, entries: list[Entry]) -> list[Entry]:
        for stage in self.stages:
            if not entries:
                break
            entries = stage.run(entries)
        return entries

    def flush(self, now: float, force: bool) -> list[Entry]:
        out: list[Entry] = []
        for i in self.holders:
            released = self.stages[i].flush(now, force)
            for stage in self.stages[i + 1:]:
                if not released:
                    break
                released = stage.run(released)
            out.extend(released)
        return out

    def held(self, tail: object) -> int | None:
        best = None
        for i in self.holders:
            h = self.stages[i].held(tail)
            if h is not None and (best is None or h < best):
                best = h
        return best


# ----------------------------------------------------------------- helpers


def _value_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _source_value(e: Entry, source: str | None) -> str | None:
    if source is None:
        return e.line
    ex = e.get_extracted()
    if source not in ex:
        return None
    return _value_str(ex[source])


def _regex(expr: Any, where: str, line: int) -> re.Pattern[str]:
    if not isinstance(expr, str) or not expr:
        raise StageError(f"{where}: expression is required", line)
    # Go's RE2 named groups (?P<n>) and flags are Python's too; (?s) etc. carry over.
    try:
        return re.compile(expr)
    except re.error as exc:
        raise StageError(f"{where}: invalid regex {expr!r}: {exc}", line) from None


def _check_keys(raw: dict, allowed: set[str], where: str) -> None:
    for k in raw:
        if k not in allowed:
            raise StageError(f"{where}: unknown field {k!r}", _key_line(raw, k))


def _key_line(raw: Any, key: str) -> int:
    lines = getattr(raw, "key_lines", None)
    return lines.get(key, _line_of(raw)) if lines else _line_of(raw)


def _opt_str(raw: dict, key: str, where: str) -> str | None:
    v = raw.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise StageError(f"{where}: {key} must be a string", _key_line(raw, key))
    return v


def _str_map(raw: Any, where: str, line: int) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise StageError(f"{where}: expected a mapping", line)
    return {str(k): ("" if v is None else str(v)) for k, v in raw.items()}


# ----------------------------------------------------------------- parsing stages


class CRIStage(Stage):
    """`cri: {}`: time, stream, flags, content; partial (P) lines joined until F."""

    name = "cri"

    def __init__(self, raw: dict, where: str, lean: bool) -> None:
        raw = raw or {}
        _check_keys(raw, {"max_partial_lines", "max_partial_line_size",
                          "max_partial_line_size_truncate"}, where)
        self.max_lines = int(raw.get("max_partial_lines") or 100)
        self.max_size = int(raw.get("max_partial_line_size") or 0)
        self.truncate = bool(raw.get("max_partial_line_size_truncate") or False)
        self.lean = lean  # no later stage: skip filling the extracted map
        self.partial: dict[tuple[object, str], list[Any]] = {}  # (tail, stream) -> [start, parts, e]

    def run(self, entries: list[Entry]) -> list[Entry]:
        out: list[Entry] = []
        append = out.append
        parse_ts = timefmt.parse_rfc3339_ns
        partial = self.partial
        lean = self.lean
        for e in entries:
            line = e.line
            a = line.find(" ")
            b = line.find(" ", a + 1) if a > 0 else -1
            c = line.find(" ", b + 1) if b > 0 else -1
            if c < 0:
                append(e)  # not CRI: promtail's regex does not match, the entry goes on
                continue
            stream = line[a + 1:b]
            if stream != "stdout" and stream != "stderr":
                append(e)
                continue
            flags = line[b + 1:c]
            content = line[c + 1:]
            ts_text = line[:a]
            try:
                e.ts = parse_ts(ts_text)
            except ValueError:
                e.ts = _fudge(e)
            if not lean:
                ex = e.get_extracted()
                ex["time"] = ts_text
                ex["stream"] = stream
                ex["flags"] = flags
                ex["content"] = content
            e.set_label("stream", stream)
            key = (e.tail, stream)
            held = partial.get(key)
            if flags == "P":
                if self.truncate and self.max_size and len(content) > self.max_size:
                    content = content[:self.max_size]
                if held is None:
                    partial[key] = [e.start, [content], e]
                else:
                    held[1].append(content)
                    if len(held[1]) >= self.max_lines:
                        del partial[key]
                        first = held[2]
                        first.line = "".join(held[1])
                        append(first)
                continue
            if held is not None:
                del partial[key]
                held[1].append(content)
                content = "".join(held[1])
                e.ts = held[2].ts  # the line's time is its first part's
            e.line = content
            e.tail.last_ts = e.ts  # type: ignore[attr-defined]
            append(e)
        return out

    def flush(self, now: float, force: bool) -> list[Entry]:
        if not force or not self.partial:
            return []
        out = []
        for held in self.partial.values():
            first = held[2]
            first.line = "".join(held[1])
            out.append(first)
        self.partial.clear()
        return out

    def held(self, tail: object) -> int | None:
        best = None
        for (t, _), held in self.partial.items():
            if t is tail and (best is None or held[0] < best):
                best = held[0]
        return best


class DockerStage(Stage):
    """`docker: {}`: the json-file driver's {"log", "stream", "time"}; a `log` without
    its final newline is a partial line (split at 16 KiB), joined with what follows."""

    name = "docker"

    def __init__(self, raw: dict, where: str, lean: bool) -> None:
        self.lean = lean
        self.partial: dict[tuple[object, str], list[Any]] = {}

    def run(self, entries: list[Entry]) -> list[Entry]:
        out: list[Entry] = []
        loads = json.loads
        parse_ts = timefmt.parse_rfc3339_ns
        for e in entries:
            try:
                doc = loads(e.line)
                log = doc["log"]
                stream = doc.get("stream", "")
                ts_text = doc.get("time", "")
            except (ValueError, KeyError, TypeError, AttributeError):
                out.append(e)  # promtail's json stage fails: the entry goes on unchanged
                continue
            if not isinstance(log, str):
                out.append(e)
                continue
            try:
                e.ts = parse_ts(ts_text)
            except (ValueError, TypeError):
                e.ts = _fudge(e)
            if not self.lean:
                ex = e.get_extracted()
                ex["output"] = log
                ex["stream"] = stream
                ex["timestamp"] = ts_text
            if stream:
                e.set_label("stream", stream)
            key = (e.tail, stream)
            held = self.partial.get(key)
            if not log.endswith("\n"):
                if held is None:
                    self.partial[key] = [e.start, [log], e]
                else:
                    held[1].append(log)
                continue
            log = log[:-1]
            if held is not None:
                del self.partial[key]
                held[1].append(log)
                log = "".join(held[1])
                e.ts = held[2].ts
            e.line = log
            e.tail.last_ts = e.ts  # type: ignore[attr-defined]
            out.append(e)
        return out

    flush = CRIStage.flush
    held = CRIStage.held


def _fudge(e: Entry) -> int:
    # promtail's action_on_failure "fudge": the file's last timestamp plus 1 ns
    t = getattr(e.tail, "last_ts", None)
    if t is None:
        return e.ts
    e.tail.last_ts = t + 1  # type: ignore[attr-defined]
    return t + 1


class JSONStage(Stage):
    name = "json"

    def __init__(self, raw: dict, where: str, lean: bool) -> None:
        raw = raw or {}
        _check_keys(raw, {"expressions", "source", "drop_malformed"}, where)
        exprs = raw.get("expressions")
        if not isinstance(exprs, dict) or not exprs:
            raise StageError(f"{where}: expressions is required", _line_of(raw))
        self.source = _opt_str(raw, "source", where)
        self.drop_malformed = bool(raw.get("drop_malformed") or False)
        # A plain path (a.b, "quoted".c, items[0]) is walked by hand, fast; anything else
        # is a full JMESPath expression, as in promtail, evaluated by the jmespath library.
        self.paths: list[tuple[str, Any]] = []
        for name, expr in exprs.items():
            text = name if expr in (None, "") else str(expr)
            try:
                path: Any = _jmes_path(text)
            except ValueError:
                try:
                    path = jmespath.compile(text)
                except jmespath.exceptions.JMESPathError as exc:
                    raise StageError(f"{where}: expressions.{name}: invalid JMESPath "
                                     f"expression {text!r}: {exc}",
                                     _key_line(exprs, name)) from None
            self.paths.append((str(name), path))

    def run(self, entries: list[Entry]) -> list[Entry]:
        out = []
        for e in entries:
            text = _source_value(e, self.source)
            if text is None:
                out.append(e)
                continue
            try:
                doc = json.loads(text)
                if not isinstance(doc, dict):
                    raise ValueError
            except ValueError:
                if not self.drop_malformed:
                    out.append(e)
                continue
            ex = e.get_extracted()
            for name, path in self.paths:
                v: Any = doc
                if not isinstance(path, list):
                    v = path.search(doc)
                    if v is not None:
                        ex[name] = v if isinstance(v, str) else _value_str(v)
                    continue
                for p in path:
                    if isinstance(p, int):
                        v = v[p] if isinstance(v, list) and -len(v) <= p < len(v) else None
                    else:
                        v = v.get(p) if isinstance(v, dict) else None
                    if v is None:
                        break
                if v is not None:
                    ex[name] = v if isinstance(v, str) else _value_str(v)
            out.append(e)
        return out


_JMES_TOKEN = re.compile(r'\.?(?:"((?:[^"\\]|\\.)*)"|([A-Za-z_][A-Za-z0-9_]*))|\[(-?\d+)\]')


def _jmes_path(text: str) -> list[str | int]:
    """The JMESPath subset promtail configs use: a.b, "quoted-key".c, items[0]."""
    out: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _JMES_TOKEN.match(text, pos)
        if m is None or (pos == 0 and text[0] == "."):
            raise ValueError(f"unsupported JMESPath expression {text!r}")
        if m.group(3) is not None:
            out.append(int(m.group(3)))
        else:
            out.append(m.group(1) if m.group(1) is not None else m.group(2))
        pos = m.end()
    return out


class LogfmtStage(Stage):
    name = "logfmt"

    def __init__(self, raw: dict, where: str, lean: bool) -> None:
        raw = raw or {}
        _check_keys(raw, {"mapping", "source"}, where)
        mapping = raw.get("mapping")
        if not isinstance(mapping, dict) or not mapping:
            raise StageError(f"{where}: mapping is required", _line_of(raw))
        self.mapping = {str(k): (str(k) if v in (None, "") else str(v))
                        for k, v in mapping.items()}
        self.source = _opt_str(raw, "source", where)

    def run(self, entries: list[Entry]) -> list[Entry]:
        for e in entries:
            text = _source_value(e, self.source)
            if text is None:
                continue
            pairs = parse_logfmt(text)
            ex = e.get_extracted()
            for name, key in self.mapping.items():
                if key in pairs:
                    ex[name] = pairs[key]
        return entries


_LOGFMT = re.compile(r'([^\s=]+)(?:=("(?:[^"\\]|\\.)*"|\S*))?')


def parse_logfmt(text: str) -> dict[str, str]:
    out = {}
    for m in _LOGFMT.finditer(text):
        v = m.group(2) or ""
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            try:
                v = json.loads(v)
            except ValueError:
                v = v[1:-1]
        out[m.group(1)] = v
    return out


class RegexStage(Stage):
    name = "regex"

    def __init__(self, raw: dict, where: str, lean: bool) -> None:
        raw = raw or {}
        _check_keys(raw, {"expression", "source"}, where)
        self.rx = _regex(raw.get("expression"), where, _line_of(raw))
        if not self.rx.groupindex:
            raise StageError(f"{where}: regex expression requires at least one named "
                             "capture group", _line_of(raw))
        self.source = _opt_str(raw, "source", where)

    def run(self, entries: list[Entry]) -> list[Entry]:
        for e in entries:
            text = _source_value(e, self.source)
            if text is None:
                continue
            m = self.rx.search(text)
            if m is None:
                continue
            ex = e.get_extracted()
            for name, v in m.groupdict().items():
                if v is not None:
                    ex[name] = v
        return entries


class ReplaceStage(Stage):
    """Every capture group's text is replaced by the rendered `replace` template (its
    `.Value` is the group's text); named groups are also extracted (replaced)."""

    name = "replace"

    def __init__(self, raw: dict, where: str, lean: bool) -> None:
        raw = raw or {}
        _check_keys(raw, {"expression", "source", "replace"}, where)
        self.rx = _regex(raw.get("expression"), where, _line_of(raw))
        self.source = _opt_str(raw, "source", where)
        try:
            self.tpl = compile_template(str(raw.get("replace") or ""), where)
        except TemplateError as exc:
            raise StageError(str(exc), _key_line(raw, "replace")) from None

    def run(self, entries: list[Entry]) -> list[Entry]:
        for e in entries:
            text = _source_value(e, self.source)
            if text is None:
                continue
            ex = e.get_extracted()
            pieces = []
            pos = 0
            names = {i: n for n, i in self.rx.groupindex.items()}
            for m in self.rx.finditer(text):
                for g in range(1, (self.rx.groups or 0) + 1):
                    if m.start(g) < 0:
                        continue
                    data = dict(ex)
                    data["Value"] = m.group(g)
                    value = self.tpl(data)
                    pieces.append(text[pos:m.start(g)])
                    pieces.append(value)
                    pos = m.end(g)
                    if g in names:
                        ex[names[g]] = value
            pieces.append(text[pos:])
            result = "".join(pieces)
            if self.source is None:
                e.line = result
            else:
                ex[self.source] = result
        return entries


class TemplateStage(Stage):
    name = "template"

    def __init__(self, raw: dict, where: str, lean: bool) -> None:
        raw = raw or {}
        _check_keys(raw, {"source", "template"}, where)
        self.source = _opt_str(raw, "source", where)
        if not self.source:
            raise StageError(f"{where}: source is required", _line_of(raw))
        tpl = raw.get("template")
        if not isinstance(tpl, str) or not tpl:
            raise StageError(f"{where}: template is required", _line_of(raw))
        try:
            self.tpl = compile_template(tpl, where)
        except TemplateError as exc:
            raise StageError(str(exc), _key_line(raw, "template")) from None

    def run(self, entries: list[Entry]) -> list[Entry]:
        for e in entries:
            ex = e.get_extracted()
            data: dict[str, Any] = dict(ex)
            if self.source in ex:
                data["Value"] = _value_str(ex[self.source])
            data["Entry"] = e.line
            try:
                ex[self.source] = self.tpl(data)  # type: ignore[index]
            except (TemplateError, re.error, ValueError, TypeError):
                pass  # promtail logs and leaves the value as it was
        return entries


# ----------------------------------------------------------------- label stages


def _valid_label_value(v: str) -> bool:
    return bool(v)


class LabelsStage(Stage):
    name = "labels"

    def __init__(self, raw: dict, where: str, lean: bool) -> None:
        if not isinstance(raw, dict) or not raw:
            raise StageError(f"{where}: labels requires at least one label", _line_of(raw))
        self.map = {}
        for k, v in raw.items():
            if not _LABEL_NAME.match(str(k)):
                raise StageError(f"{where}: invalid label name {k!r}", _key_line(raw, k))
            self.map[str(k)] = str(k) if v in (None, "") else str(v)

    def run(self, entries: list[Entry]) -> list[Entry]:
        for e in entries:
            ex = e.get_extracted()
            for label, source in self.map.items():
                if source in ex:
                    v = _value_str(ex[source])
                    if v:
                        e.set_label(label, v)
        return entries


class StaticLabelsStage(Stage):
    name = "static_labels"

    def __init__(self, raw: dict, where: str, lean: bool) -> None:
        if not isinstance(raw, dict) or not raw:
            raise StageError(f"{where}: static_labels requires at least one label",
                             _line_of(raw))
        for k in raw:
            if not _LABEL_NAME.match(str(k)):
                raise StageError(f"{where}: invalid label name {k!r}", _key_line(raw, k))
        self.map = {str(k): _value_str(v) for k, v in raw.items()}

    def run(self, entries: list[Entry]) -> list[Entry]:
        for e in entries:
            for k, v in self.map.items():
                if v:
                    e.set_label(k, v)
        return entries


class LabelDropStage(Stage):
    name = "labeldrop"

    def __init__(self, raw: Any, where: str, lean: bool) -> None:
        if not isinstance(raw, list) or not raw:
            raise StageError(f"{where}: labeldrop needs a list of label names", _line_of(raw))
        self.names = [str(x) for x in raw]

    def run(self, entries: list[Entry]) -> list[Entry]:
        for e in entries:
            for n in self.names:
                e.del_label(n)
        return entries


class LabelAllowStage(Stage):
    name = "labelallow"

    def __init__(self, raw: Any, where: str, lean: bool) -> None:
        if not isinstance(raw, list) or not raw:
            raise StageError(f"{where}: labelallow needs a list of label names",
                             _line_of(raw))
        self.names = {str(x) for x in raw}

    def run(self, entries: list[Entry]) -> list[Entry]:
        for e in entries:
            for n in [k for k in e.labels if k not in self.names]:
                e.del_label(n)
        return entries


class TimestampStage(Stage):
    name = "timestamp"

    def __init__(self, raw: dict, where: str, lean: bool) -> None:
        raw = raw or {}
        _check_keys(raw, {"source", "format", "fallback_formats", "location",
                          "action_on_failure"}, where)
        self.source = _opt_str(raw, "source", where)
        if not self.source:
            raise StageError(f"{where}: source is required", _line_of(raw))
        fmt = _opt_str(raw, "format", where)
        if not fmt:
            raise StageError(f"{where}: format is required", _line_of(raw))
        location = _opt_str(raw, "location", where) or ""
        self.action = _opt_str(raw, "action_on_failure", where) or "fudge"
        if self.action not in ("fudge", "skip"):
            raise StageError(f"{where}: invalid action_on_failure {self.action!r} "
                             "(fudge or skip)", _key_line(raw, "action_on_failure"))
        try:
            self.parsers = [timefmt.compile_format(f, location)
                            for f in [fmt, *(raw.get("fallback_formats") or [])]]
        except ValueError as exc:
            raise StageError(f"{where}: {exc}", _key_line(raw, "format")) from None

    def run(self, entries: list[Entry]) -> list[Entry]:
        for e in entries:
            ex = e.get_extracted()
            if self.source not in ex:
                continue
            text = _value_str(ex[self.source])
            for parse in self.parsers:
                try:
                    e.ts = parse(text)
                    e.tail.last_ts = e.ts  # type: ignore[attr-defined]
                    break
                except ValueError:
                    continue
            else:
                if self.action == "fudge":
                    e.ts = _fudge(e)
        return entries


class OutputStage(Stage):
    name = "output"

    def __init__(self, raw: dict, where: str, lean: bool) -> None:
        raw = raw or {}
        _check_keys(raw, {"source"}, where)
        self.source = _opt_str(raw, "source", where)
        if not self.source:
            raise StageError(f"{where}: source is required", _line_of(raw))

    def run(self, entries: list[Entry]) -> list[Entry]:
        for e in entries:
            ex = e.get_extracted()
            if self.source in ex:
                e.line = _value_str(ex[self.source])
        return entries


class TenantStage(Stage):
    name = "tenant"

    def __init__(self, raw: dict, where: str, lean: bool) -> None:
        raw = raw or {}
        _check_keys(raw, {"source", "value", "label"}, where)
        given = [k for k in ("source", "value", "label") if raw.get(k)]
        if len(given) != 1:
            raise StageError(f"{where}: exactly one of source, value or label is required",
                             _line_of(raw))
        self.kind = given[0]
        self.arg = str(raw[self.kind])

    def run(self, entries: list[Entry]) -> list[Entry]:
        for e in entries:
            if self.kind == "value":
                v: str | None = self.arg
            elif self.kind == "label":
                v = e.labels.get(self.arg)
            else:
                v = _source_value(e, self.arg)
            if v:
                e.set_label(TENANT_LABEL, v)
        return entries


# ----------------------------------------------------------------- filtering stages


class DropStage(Stage):
    """Drops an entry when every configured condition holds (promtail's AND)."""

    name = "drop"

    def __init__(self, raw: dict, where: str, lean: bool) -> None:
        raw = raw or {}
        _check_keys(raw, {"source", "separator", "value", "expression", "older_than",
                          "longer_than", "drop_counter_reason"}, where)
        src = raw.get("source")
        self.sources: list[str] | None = None
        if isinstance(src, list):
            self.sources = [str(s) for s in src]
        elif src:
            self.sources = [str(src)]
        self.separator = str(raw.get("separator", ";"))
        self.value = raw.get("value")
        if self.value is not None:
            self.value = str(self.value)
        self.rx = None
        if raw.get("expression"):
            self.rx = _regex(raw["expression"], where, _key_line(raw, "expression"))
        if self.value is not None and self.rx is not None:
            raise StageError(f"{where}: value and expression are mutually exclusive",
                             _line_of(raw))
        if self.value is not None and self.sources is None:
            raise StageError(f"{where}: value requires source", _line_of(raw))
        self.older = None
        if raw.get("older_than"):
            try:
                self.older = timefmt_duration(str(raw["older_than"]))
            except ValueError as exc:
                raise StageError(f"{where}: older_than: {exc}",
                                 _key_line(raw, "older_than")) from None
        self.longer = None
        if raw.get("longer_than") is not None:
            self.longer = _parse_size(raw["longer_than"], where, _key_line(raw, "longer_than"))
        if self.sources is None and self.rx is None and self.older is None and \
                self.longer is None:
            raise StageError(f"{where}: at least one of source, expression, older_than or "
                             "longer_than is required", _line_of(raw))
        self.reason = str(raw.get("drop_counter_reason") or "drop_stage")
        self.dropped = 0

    def _drop(self, e: Entry) -> bool:
        if self.older is not None and e.ts >= time.time_ns() - int(self.older * 1e9):
            return False
        if self.longer is not None and len(e.line.encode()) <= self.longer:
            return False
        if self.sources is not None:
            ex = e.get_extracted()
            if not all(s in ex for s in self.sources):
                return False
            text = self.separator.join(_value_str(ex[s]) for s in self.sources)
            if self.value is not None and text != self.value:
                return False
            if self.rx is not None and not self.rx.search(text):
                return False
        elif self.rx is not None and not self.rx.search(e.line):
            return False
        return True

    def run(self, entries: list[Entry]) -> list[Entry]:
        out = [e for e in entries if not self._drop(e)]
        self.dropped += len(entries) - len(out)
        return out


def timefmt_duration(text: str) -> float:
    from clymene.config import parse_duration
    return parse_duration(text)


def _parse_size(v: Any, where: str, line: int) -> int:
    if isinstance(v, int):
        return v
    from clymene.flags import parse_bytes
    try:
        return parse_bytes(str(v))
    except ValueError as exc:
        raise StageError(f"{where}: longer_than: {exc}", line) from None


class MatchStage(Stage):
    name = "match"

    def __init__(self, raw: dict, where: str, lean: bool) -> None:
        raw = raw or {}
        _check_keys(raw, {"selector", "stages", "action", "pipeline_name",
                          "drop_counter_reason"}, where)
        sel = raw.get("selector")
        if not isinstance(sel, str) or not sel:
            raise StageError(f"{where}: selector is required", _line_of(raw))
        try:
            self.matchers, self.filters = parse_selector(sel)
        except ValueError as exc:
            raise StageError(f"{where}: invalid selector {sel!r}: {exc}",
                             _key_line(raw, "selector")) from None
        self.action = str(raw.get("action") or "keep")
        if self.action not in ("keep", "drop"):
            raise StageError(f"{where}: invalid action {self.action!r} (keep or drop)",
                             _key_line(raw, "action"))
        stages = raw.get("stages")
        if self.action == "keep":
            if not stages:
                raise StageError(f"{where}: stages are required with action keep",
                                 _line_of(raw))
            self.inner: Pipeline | None = build(stages, f"{where}.stages")
        else:
            if stages:
                raise StageError(f"{where}: stages are not allowed with action drop",
                                 _key_line(raw, "stages"))
            self.inner = None
        self.dropped = 0

    def _matches(self, e: Entry) -> bool:
        labels = e.labels
        for name, op, value, rx in self.matchers:
            v = labels.get(name, "")
            if op == "=":
                ok = v == value
            elif op == "!=":
                ok = v != value
            elif op == "=~":
                ok = rx.fullmatch(v) is not None
            else:
                ok = rx.fullmatch(v) is None
            if not ok:
                return False
        for op, value, rx in self.filters:
            line = e.line
            if op == "|=":
                ok = value in line
            elif op == "!=":
                ok = value not in line
            elif op == "|~":
                ok = rx.search(line) is not None
            else:
                ok = rx.search(line) is None
            if not ok:
                return False
        return True

    def run(self, entries: list[Entry]) -> list[Entry]:
        matched = []
        out = []
        for e in entries:
            if self._matches(e):
                matched.append(e)
            else:
                out.append(e)
        if self.action == "drop":
            self.dropped += len(matched)
            return out
        if not matched:
            return entries
        processed = self.inner.run(matched)  # type: ignore[union-attr]
        if not out:
            return processed
        # keep the input order; entries released by nested holders come last
        keep, orig, was_matched = _ids(processed), _ids(entries), _ids(matched)
        result = [e for e in entries if id(e) not in was_matched or id(e) in keep]
        result.extend(e for e in processed if id(e) not in orig)
        return result

    def flush(self, now: float, force: bool) -> list[Entry]:
        return self.inner.flush(now, force) if self.inner else []

    def held(self, tail: object) -> int | None:
        return self.inner.held(tail) if self.inner else None


def _ids(entries: list[Entry]) -> set[int]:
    return {id(e) for e in entries}


_SELECTOR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|`[^`]*`)'
                       r'\s*,?')
_FILTER = re.compile(r'\s*(\|=|!=|\|~|!~)\s*("(?:[^"\\]|\\.)*"|`[^`]*`)')


def _unquote(s: str) -> str:
    if s.startswith("`"):
        return s[1:-1]
    return json.loads(s)


def parse_selector(text: str) -> tuple[list, list]:
    """A LogQL stream selector with optional line filters."""
    s = text.strip()
    if not s.startswith("{"):
        raise ValueError("a selector starts with {")
    end = s.find("}")
    pos = 1
    matchers = []
    while True:
        while pos < len(s) and s[pos] == " ":
            pos += 1
        if pos < len(s) and s[pos] == "}":
            break
        m = _SELECTOR.match(s, pos)
        if m is None:
            raise ValueError(f"syntax error at {s[pos:]!r}")
        value = _unquote(m.group(3))
        rx = None
        if m.group(2) in ("=~", "!~"):
            try:
                rx = re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex {value!r}: {exc}") from None
        matchers.append((m.group(1), m.group(2), value, rx))
        pos = m.end()
        end = s.find("}", pos) if pos < len(s) and s[pos] != "}" else pos
    if not matchers:
        raise ValueError("at least one label matcher is required")
    pos = end + 1
    filters = []
    while pos < len(s):
        m = _FILTER.match(s, pos)
        if m is None:
            if s[pos:].strip():
                raise ValueError(f"syntax error at {s[pos:]!r}")
            break
        value = _unquote(m.group(2))
        rx = None
        if m.group(1) in ("|~", "!~"):
            try:
                rx = re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex {value!r}: {exc}") from None
        filters.append((m.group(1), value, rx))
        pos = m.end()
    return matchers, filters


class MultilineStage(Stage):
    """Lines are joined (with \\n) into the block started by a `firstline` match; a block
    goes on at the next first line, after max_wait_time, or at max_lines."""

    name = "multiline"

    def __init__(self, raw: dict, where: str, lean: bool) -> None:
        raw = raw or {}
        _check_keys(raw, {"firstline", "max_wait_time", "max_lines"}, where)
        self.rx = _regex(raw.get("firstline"), where.replace("expression", "firstline"),
                         _line_of(raw))
        try:
            self.max_wait = timefmt_duration(str(raw.get("max_wait_time") or "3s"))
        except ValueError as exc:
            raise StageError(f"{where}: max_wait_time: {exc}",
                             _key_line(raw, "max_wait_time")) from None
        self.max_lines = int(raw.get("max_lines") or 128)
        self.blocks: dict[tuple[object, frozenset], list[Any]] = {}

    def run(self, entries: list[Entry]) -> list[Entry]:
        out = []
        now = time.monotonic()
        for e in entries:
            key = (e.tail, frozenset(e.labels.items()))
            block = self.blocks.get(key)
            if self.rx.search(e.line):
                if block is not None:
                    out.append(self._release(key, block))
                self.blocks[key] = block = [e, [e.line], now]
            else:
                if block is None:  # promtail: a line with no block open starts one
                    self.blocks[key] = block = [e, [], now]
                block[1].append(e.line)
                block[2] = now
            if len(block[1]) >= self.max_lines:
                out.append(self._release(key, block))
        return out

    def _release(self, key: tuple, block: list[Any]) -> Entry:
        del self.blocks[key]
        first: Entry = block[0]
        first.line = "\n".join(block[1])
        return first

    def flush(self, now: float, force: bool) -> list[Entry]:
        return [self._release(k, b) for k, b in list(self.blocks.items())
                if force or now - b[2] >= self.max_wait]

    def held(self, tail: object) -> int | None:
        starts = [b[0].start for (t, _), b in self.blocks.items() if t is tail]
        return min(starts) if starts else None


class LimitStage(Stage):
    """Token bucket: `rate` lines per second, `burst`; `drop: true` drops lines over the
    limit, otherwise the pipeline waits (so does reading)."""

    name = "limit"

    def __init__(self, raw: dict, where: str, lean: bool) -> None:
        raw = raw or {}
        _check_keys(raw, {"rate", "burst", "drop", "by_label_name", "max_distinct_labels"},
                    where)
        try:
            self.rate = float(raw.get("rate") or 0)
            self.burst = int(raw.get("burst") or 0)
        except (TypeError, ValueError):
            raise StageError(f"{where}: rate and burst must be numbers", _line_of(raw)) \
                from None
        if self.rate <= 0 or self.burst <= 0:
            raise StageError(f"{where}: rate and burst must be > 0", _line_of(raw))
        self.drop = bool(raw.get("drop") or False)
        self.by_label = raw.get("by_label_name") or None
        self.max_distinct = int(raw.get("max_distinct_labels") or 10000)
        self.buckets: dict[str, list[float]] = {}
        self.dropped = 0

    def _take(self, key: str) -> float:
        """Seconds to wait for a token (0: taken now)."""
        now = time.monotonic()
        b = self.buckets.get(key)
        if b is None:
            if len(self.buckets) >= self.max_distinct:
                self.buckets.clear()
            b = self.buckets[key] = [float(self.burst), now]
        b[0] = min(self.burst, b[0] + (now - b[1]) * self.rate)
        b[1] = now
        if b[0] >= 1:
            b[0] -= 1
            return 0.0
        return (1 - b[0]) / self.rate

    def run(self, entries: list[Entry]) -> list[Entry]:
        out = []
        for e in entries:
            if self.by_label:
                key = e.labels.get(self.by_label)
                if key is None:
                    out.append(e)
                    continue
            else:
                key = ""
            wait = self._take(key)
            if wait:
                if self.drop:
                    self.dropped += 1
                    continue
                time.sleep(wait)
                self._take(key)
            out.append(e)
        return out


STAGES: dict[str, Callable[..., Stage]] = {
    "cri": CRIStage, "docker": DockerStage, "json": JSONStage, "logfmt": LogfmtStage,
    "regex": RegexStage, "replace": ReplaceStage, "template": TemplateStage,
    "labels": LabelsStage, "static_labels": StaticLabelsStage, "labeldrop": LabelDropStage,
    "labelallow": LabelAllowStage, "timestamp": TimestampStage, "output": OutputStage,
    "match": MatchStage, "drop": DropStage, "multiline": MultilineStage,
    "tenant": TenantStage, "limit": LimitStage,
}


def build(raw_stages: Any, where: str = "pipeline_stages") -> Pipeline:
    """Validate and build a `pipeline_stages` list."""
    if raw_stages is None:
        return Pipeline([])
    if not isinstance(raw_stages, list):
        raise StageError(f"{where}: expected a list of stages", _line_of(raw_stages))
    stages: list[Stage] = []
    for i, raw in enumerate(raw_stages):
        line = _line_of(raw)
        if not isinstance(raw, dict) or len(raw) != 1:
            raise StageError(f"{where}[{i}]: a stage is a mapping with exactly one key, "
                             "its type", line)
        (kind, body), = raw.items()
        factory = STAGES.get(str(kind))
        if factory is None:
            raise StageError(f"{where}[{i}]: unknown stage type {kind!r} (known: "
                             f"{', '.join(sorted(STAGES))})", line)
        lean = i == len(raw_stages) - 1
        stage_where = f"{where}[{i}].{kind}"
        try:
            stages.append(factory(body, stage_where, lean))
        except StageError as exc:
            if not exc.line:
                exc.line = line
            raise
    return Pipeline(stages)


__all__ = ["NO_VALUE", "Pipeline", "Stage", "StageError", "build", "parse_selector"]
