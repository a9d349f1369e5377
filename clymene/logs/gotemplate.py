"""A small Go text/template for the template and replace stages.

Covers what promtail pipelines use: `{{ .Name }}`, `{{ . }}`, string and number literals,
function calls and pipes (`{{ .Value | ToUpper }}`, `{{ Replace .Value "a" "b" -1 }}`),
`{{ if }}`/`{{ else if }}`/`{{ else }}`/`{{ end }}`, and `{{-`/`-}}` trimming. A missing
map key prints `<no value>`, as in Go.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

NO_VALUE = "<no value>"


class TemplateError(ValueError):
    pass


def _go_regex(rx: str) -> re.Pattern[str]:
    try:
        return re.compile(rx)
    except re.error as exc:
        raise TemplateError(f"invalid regex {rx!r}: {exc}") from None


def _repl(template: str) -> str:
    # Go's ${1} / $name expansion -> Python's \g<1> / \g<name>
    return re.sub(r"\$\{?(\w+)\}?", r"\\g<\1>", template.replace("\\", "\\\\"))


def _trim(s: str, cut: str) -> str:
    return s.strip(cut)


FUNCS: dict[str, Callable[..., Any]] = {
    "ToLower": lambda s: _s(s).lower(),
    "ToUpper": lambda s: _s(s).upper(),
    "lower": lambda s: _s(s).lower(),
    "upper": lambda s: _s(s).upper(),
    "Replace": lambda s, old, new, n: _s(s).replace(old, new, int(n) if int(n) >= 0 else -1),
    "Trim": lambda s, cut: _s(s).strip(cut),
    "TrimLeft": lambda s, cut: _s(s).lstrip(cut),
    "TrimRight": lambda s, cut: _s(s).rstrip(cut),
    "TrimPrefix": lambda s, p: _s(s)[len(p):] if _s(s).startswith(p) else _s(s),
    "TrimSuffix": lambda s, p: _s(s)[:-len(p)] if p and _s(s).endswith(p) else _s(s),
    "TrimSpace": lambda s: _s(s).strip(" \t\n\r\v\f"),
    "trim": lambda s: _s(s).strip(" \t\n\r\v\f"),
    "contains": lambda sub, s: sub in _s(s),
    "hasPrefix": lambda p, s: _s(s).startswith(p),
    "hasSuffix": lambda p, s: _s(s).endswith(p),
    "regexReplaceAll": lambda rx, s, r: _go_regex(rx).sub(_repl(r), _s(s)),
    "regexReplaceAllLiteral": lambda rx, s, r: _go_regex(rx).sub(lambda _m: r, _s(s)),
    "Sha2Hash": lambda s, salt: hashlib.sha256((salt + _s(s)).encode()).hexdigest(),
    "Hash": lambda s, salt: hashlib.sha3_256((salt + _s(s)).encode()).hexdigest(),
    "eq": lambda a, *b: any(a == x for x in b),
    "ne": lambda a, b: a != b,
    "not": lambda a: not _truth(a),
    "and": lambda *a: next((x for x in a if not _truth(x)), a[-1]),
    "or": lambda *a: next((x for x in a if _truth(x)), a[-1]),
    "default": lambda d, v=None: v if _truth(v) else d,
    "len": lambda v: len(v),
    "printf": lambda fmt, *a: _printf(fmt, a),
}


def _printf(fmt: str, args: tuple) -> str:
    return re.sub(r"%[vsdq]", "{}", fmt).format(*args)


def _s(v: Any) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else str(v)


def _truth(v: Any) -> bool:
    return bool(v) and v != NO_VALUE


_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(`[^`]*`)|(\|)|(\.[A-Za-z_][\w.]*|\.)'
                    r'|(-?\d+(?:\.\d+)?)|([A-Za-z_]\w*)|(\()|(\)))')


def _lex(expr: str, where: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None or m.end() == pos:
            raise TemplateError(f"{where}: unexpected {expr[pos:].strip()!r}")
        pos = m.end()
        s, raw, pipe, field, num, ident, lp, rp = m.groups()
        if s is not None:
            out.append(("lit", bytes(s[1:-1], "utf-8").decode("unicode_escape")))
        elif raw is not None:
            out.append(("lit", raw[1:-1]))
        elif pipe:
            out.append(("pipe", None))
        elif field is not None:
            out.append(("field", field))
        elif num is not None:
            out.append(("lit", float(num) if "." in num else int(num)))
        elif ident is not None:
            if ident in ("true", "false"):
                out.append(("lit", ident == "true"))
            elif ident == "nil":
                out.append(("lit", None))
            elif ident not in FUNCS:
                raise TemplateError(f'{where}: function "{ident}" not defined')
            else:
                out.append(("func", ident))
        elif lp:
            out.append(("(", None))
        elif rp:
            out.append((")", None))
    return out


Node = Callable[[dict[str, Any]], Any]


def _compile_pipeline(tokens: list[tuple[str, Any]], where: str) -> Node:
    pos = 0

    def operand() -> Node:
        nonlocal pos
        kind, val = tokens[pos]
        pos += 1
        if kind == "lit":
            return lambda _d, v=val: v
        if kind == "field":
            if val == ".":
                return lambda d: d.get(".", d)
            parts = val[1:].split(".")

            def get(d: dict[str, Any], parts: list[str] = parts) -> Any:
                v: Any = d
                for p in parts:
                    if not isinstance(v, dict) or p not in v:
                        return NO_VALUE
                    v = v[p]
                return v
            return get
        if kind == "(":
            inner = pipeline()
            if pos >= len(tokens) or tokens[pos][0] != ")":
                raise TemplateError(f"{where}: unclosed '('")
            pos += 1
            return inner
        if kind == "func":
            return lambda _d, f=FUNCS[val]: f()
        raise TemplateError(f"{where}: unexpected {kind!r}")

    def command() -> tuple[str | None, list[Node]]:
        nonlocal pos
        if pos < len(tokens) and tokens[pos][0] == "func":
            name = tokens[pos][1]
            pos += 1
            args: list[Node] = []
            while pos < len(tokens) and tokens[pos][0] not in ("pipe", ")"):
                args.append(operand())
            return name, args
        return None, [operand()]

    def pipeline() -> Node:
        nonlocal pos
        cmds = [command()]
        while pos < len(tokens) and tokens[pos][0] == "pipe":
            pos += 1
            cmds.append(command())

        def run(d: dict[str, Any]) -> Any:
            value: Any = None
            for i, (name, args) in enumerate(cmds):
                vals = [a(d) for a in args]
                if i:
                    vals.append(value)
                if name is None:
                    if i and len(vals) > 1:
                        raise TemplateError(f"{where}: cannot pipe into a value")
                    value = vals[0]
                else:
                    try:
                        value = FUNCS[name](*vals)
                    except TypeError as exc:
                        raise TemplateError(f"{where}: {name}: wrong arguments ({exc})") \
                            from None
            return value
        return run

    if not tokens:
        raise TemplateError(f"{where}: missing value for command")
    node = pipeline()
    if pos != len(tokens):
        raise TemplateError(f"{where}: unexpected {tokens[pos][1]!r}")
    return node


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)


def compile_template(text: str, where: str = "template") -> Callable[[dict[str, Any]], str]:
    """Compile a template; the result renders a data map to a string."""
    parts: list[tuple[str, Any]] = []
    pos = 0
    for m in _ACTION.finditer(text):
        literal = text[pos:m.start()]
        if m.group(1):
            literal = literal.rstrip()
        if parts and parts[-1][0] == "trim_next":
            parts.pop()
            literal = literal.lstrip()
        parts.append(("text", literal))
        body = m.group(2).strip()
        if body.startswith("/*"):
            pass
        elif body == "end" or body == "else":
            parts.append((body, None))
        elif body.startswith("else if "):
            parts.append(("elif", _compile_pipeline(_lex(body[8:], where), where)))
        elif body.startswith("if "):
            parts.append(("if", _compile_pipeline(_lex(body[3:], where), where)))
        else:
            parts.append(("expr", _compile_pipeline(_lex(body, where), where)))
        if m.group(3):
            parts.append(("trim_next", None))
        pos = m.end()
    tail = text[pos:]
    if parts and parts[-1][0] == "trim_next":
        parts.pop()
        tail = tail.lstrip()
    parts.append(("text", tail))

    # Build a tree: list of nodes, where an if node is (conds: [(cond, body)], else_body)
    def block(i: int, closers: tuple[str, ...]) -> tuple[list, int, str | None]:
        out: list = []
        while i < len(parts):
            kind, val = parts[i]
            if kind in closers:
                return out, i, kind
            if kind == "if":
                branches = []
                cond = val
                else_body: list = []
                while True:
                    body, i, closer = block(i + 1, ("else", "elif", "end"))
                    branches.append((cond, body))
                    if closer == "elif":
                        cond = parts[i][1]
                        continue
                    if closer == "else":
                        else_body, i, closer = block(i + 1, ("end",))
                    if closer != "end":
                        raise TemplateError(f"{where}: unexpected EOF (missing {{{{end}}}})")
                    break
                out.append(("if", (branches, else_body)))
                i += 1
                continue
            if kind in ("else", "elif", "end"):
                raise TemplateError(f"{where}: unexpected {{{{{kind}}}}}")
            out.append((kind, val))
            i += 1
        return out, i, None

    tree, _, closer = block(0, ())
    if closer is not None:
        raise TemplateError(f"{where}: unexpected {{{{{closer}}}}}")

    def render(nodes: list, d: dict[str, Any], out: list[str]) -> None:
        for kind, val in nodes:
            if kind == "text":
                out.append(val)
            elif kind == "expr":
                v = val(d)
                out.append("" if v is None else _fmt(v))
            else:
                branches, else_body = val
                for cond, body in branches:
                    if _truth(cond(d)):
                        render(body, d, out)
                        break
                else:
                    render(else_body, d, out)

    def run(d: dict[str, Any]) -> str:
        out: list[str] = []
        render(tree, d, out)
        return "".join(out)

    return run


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
