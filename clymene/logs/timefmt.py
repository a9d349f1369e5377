"""Timestamps as promtail parses them: Go reference layouts and the named formats.

`compile_format(format, location)` returns a function text -> Unix nanoseconds that
raises ValueError when the text does not fit. Layouts use Go's reference time
(`2006-01-02T15:04:05.999999999Z07:00`); named formats are Go's constants (RFC3339,
RFC3339Nano, RFC1123, ANSIC, Kitchen, Stamp, ...) and promtail's Unix, UnixMs, UnixUs,
UnixNs. As in Go, a fractional second may follow the seconds even when the layout has
none; a layout without a year takes the current one (promtail does the same).
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

NAMED = {
    "ANSIC": "Mon Jan _2 15:04:05 2006",
    "UnixDate": "Mon Jan _2 15:04:05 MST 2006",
    "RubyDate": "Mon Jan 02 15:04:05 -0700 2006",
    "RFC822": "02 Jan 06 15:04 MST",
    "RFC822Z": "02 Jan 06 15:04 -0700",
    "RFC850": "Monday, 02-Jan-06 15:04:05 MST",
    "RFC1123": "Mon, 02 Jan 2006 15:04:05 MST",
    "RFC1123Z": "Mon, 02 Jan 2006 15:04:05 -0700",
    "RFC3339": "2006-01-02T15:04:05Z07:00",
    "RFC3339Nano": "2006-01-02T15:04:05.999999999Z07:00",
    "Kitchen": "3:04PM",
    "Stamp": "Jan _2 15:04:05",
    "StampMilli": "Jan _2 15:04:05.000",
    "StampMicro": "Jan _2 15:04:05.000000",
    "StampNano": "Jan _2 15:04:05.000000000",
}
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MON = {m[:3].lower(): i + 1 for i, m in enumerate(_MONTHS)}
_MONTH = {m.lower(): i + 1 for i, m in enumerate(_MONTHS)}

# Go's layout elements, longest first where they share a prefix.
_TOKENS: list[tuple[str, str, str]] = [
    ("January", "month_name", "(?P<month_name>[A-Za-z]+)"),
    ("Jan", "mon", "(?P<mon>[A-Za-z]{3})"),
    ("Monday", "", "(?:[A-Za-z]+)"),
    ("Mon", "", "(?:[A-Za-z]{3})"),
    ("MST", "zone_name", "(?P<zone_name>[A-Z][A-Za-z]{1,4}|[+-]\\d{2,4})"),
    ("2006", "year", "(?P<year>\\d{4})"),
    ("Z07:00:00", "zone", "(?P<zone>Z|[+-]\\d{2}:\\d{2}:\\d{2})"),
    ("Z07:00", "zone", "(?P<zone>Z|[+-]\\d{2}:\\d{2})"),
    ("Z0700", "zone", "(?P<zone>Z|[+-]\\d{4})"),
    ("Z07", "zone", "(?P<zone>Z|[+-]\\d{2})"),
    ("-07:00:00", "zone", "(?P<zone>[+-]\\d{2}:\\d{2}:\\d{2})"),
    ("-07:00", "zone", "(?P<zone>[+-]\\d{2}:\\d{2})"),
    ("-0700", "zone", "(?P<zone>[+-]\\d{4})"),
    ("-07", "zone", "(?P<zone>[+-]\\d{2})"),
    ("002", "yday", "(?P<yday>\\d{3})"),
    ("01", "month", "(?P<month>\\d{2})"),
    ("02", "day", "(?P<day>\\d{2})"),
    ("_2", "day", "(?P<day> ?\\d{1,2})"),
    ("06", "year2", "(?P<year2>\\d{2})"),
    ("15", "hour", "(?P<hour>\\d{1,2})"),
    ("03", "hour12", "(?P<hour12>\\d{2})"),
    ("04", "minute", "(?P<minute>\\d{2})"),
    ("05", "second", "(?P<second>\\d{2})"),
    ("PM", "ampm", "(?P<ampm>AM|PM)"),
    ("pm", "ampm", "(?P<ampm>am|pm)"),
    ("1", "month", "(?P<month>\\d{1,2})"),
    ("2", "day", "(?P<day>\\d{1,2})"),
    ("3", "hour12", "(?P<hour12>\\d{1,2})"),
    ("4", "minute", "(?P<minute>\\d{1,2})"),
    ("5", "second", "(?P<second>\\d{1,2})"),
]
_FRACTION = re.compile(r"[.,](0+|9+)")


def _layout_regex(layout: str) -> tuple[re.Pattern[str], bool, bool]:
    out: list[str] = []
    seen: set[str] = set()
    i = 0
    has_zone = has_year = False
    while i < len(layout):
        m = _FRACTION.match(layout, i)
        if m and "second" in seen and (m.end() == len(layout) or not layout[m.end()].isdigit()):
            digits = len(m.group(1))
            if m.group(1)[0] == "0":
                out.append(f"[.,](?P<frac>\\d{{{digits}}})")
            else:
                out.append("(?:[.,](?P<frac>\\d+))?")
            seen.add("frac")
            i = m.end()
            continue
        for tok, group, rx in _TOKENS:
            if layout.startswith(tok, i):
                if group and group in seen:
                    rx = rx.replace(f"?P<{group}>", "?:")
                seen.add(group)
                out.append(rx)
                if group in ("zone", "zone_name"):
                    has_zone = True
                if group in ("year", "year2"):
                    has_year = True
                i += len(tok)
                if group == "second" and "frac" not in seen and not _FRACTION.match(layout, i):
                    out.append("(?:[.,](?P<frac>\\d+))?")
                    seen.add("frac")
                break
        else:
            out.append(re.escape(layout[i]))
            i += 1
    return re.compile("".join(out) + r"\Z"), has_zone, has_year


def _location(name: str) -> dt.tzinfo | None:
    if not name:
        return None
    if name in ("UTC", "Local"):
        return dt.UTC if name == "UTC" else None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown location {name!r}") from None


def compile_format(fmt: str, location: str = "") -> Callable[[str], int]:
    """A parser for a promtail timestamp `format` (named or Go layout)."""
    tz = _location(location)
    if fmt == "Unix":
        return _parse_unix
    if fmt in ("UnixMs", "UnixUs", "UnixNs"):
        scale = {"UnixMs": 1_000_000, "UnixUs": 1_000, "UnixNs": 1}[fmt]
        return lambda text: int(text.strip()) * scale
    if fmt == "RFC3339Nano" or fmt == "RFC3339":
        return parse_rfc3339_ns
    layout = NAMED.get(fmt, fmt)
    if not any(tok in layout for tok in ("2006", "06", "01", "Jan", "15", "03", "3", "04")):
        raise ValueError(f"format {fmt!r} is not a named format nor a Go layout "
                         "(e.g. 2006-01-02T15:04:05Z07:00)")
    rx, _, _ = _layout_regex(layout)

    def parse(text: str) -> int:
        m = rx.match(text)
        if m is None:
            raise ValueError(f"cannot parse {text!r} as {fmt}")
        return _from_match(m.groupdict(), tz)

    return parse


def _from_match(g: dict[str, str | None], tz: dt.tzinfo | None) -> int:
    now = dt.datetime.now(dt.UTC)
    if g.get("year"):
        year = int(g["year"])  # type: ignore[arg-type]
    elif g.get("year2"):
        y = int(g["year2"])  # type: ignore[arg-type]
        year = y + (1900 if y >= 69 else 2000)
    else:
        year = now.year
    if g.get("month"):
        month = int(g["month"])  # type: ignore[arg-type]
    elif g.get("mon"):
        month = _MON.get(g["mon"].lower(), 0)  # type: ignore[union-attr]
    elif g.get("month_name"):
        month = _MONTH.get(g["month_name"].lower(), 0)  # type: ignore[union-attr]
    else:
        month = 1
    day = int(g["day"]) if g.get("day") else 1  # type: ignore[arg-type]
    if g.get("yday"):
        d0 = dt.date(year, 1, 1) + dt.timedelta(days=int(g["yday"]) - 1)  # type: ignore[arg-type]
        month, day = d0.month, d0.day
    if g.get("hour") is not None:
        hour = int(g["hour"])  # type: ignore[arg-type]
    elif g.get("hour12"):
        hour = int(g["hour12"]) % 12  # type: ignore[arg-type]
        if (g.get("ampm") or "").upper() == "PM":
            hour += 12
    else:
        hour = 0
    minute = int(g.get("minute") or 0)
    second = int(g.get("second") or 0)
    frac = g.get("frac") or ""
    nanos = int((frac + "000000000")[:9]) if frac else 0
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60
            and second < 61):
        raise ValueError("timestamp field out of range")
    zone = g.get("zone")
    offset = 0
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        z = zone[1:].replace(":", "")
        offset = sign * (int(z[:2]) * 3600 + int(z[2:4] or 0) * 60 + int(z[4:6] or 0))
    elif not zone and tz is not None:
        local = dt.datetime(year, month, day, hour, minute, second, tzinfo=tz)
        offset = int(local.utcoffset().total_seconds())  # type: ignore[union-attr]
    try:
        secs = calendar.timegm((year, month, day, hour, minute, second)) - offset
        dt.date(year, month, day)
    except ValueError:
        raise ValueError("invalid date") from None
    return secs * 1_000_000_000 + nanos


def _parse_unix(text: str) -> int:
    text = text.strip()
    if "." in text:
        whole, _, frac = text.partition(".")
        if not whole.lstrip("-").isdigit() or not frac.isdigit():
            raise ValueError(f"cannot parse {text!r} as Unix")
        return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])
    return int(text) * 1_000_000_000


_DAY_CACHE: dict[str, int] = {}


def parse_rfc3339_ns(text: str) -> int:
    """RFC 3339 with optional fraction -> Unix ns (the CRI and Docker timestamps)."""
    if len(text) < 20 or text[10] != "T" and text[10] != "t" and text[10] != " ":
        raise ValueError(f"cannot parse {text!r} as RFC3339")
    head = text[:19]
    base = _DAY_CACHE.get(head)
    if base is None:
        try:
            base = calendar.timegm(time.strptime(head.replace("t", "T").replace(" ", "T"),
                                                 "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            raise ValueError(f"cannot parse {text!r} as RFC3339") from None
        if len(_DAY_CACHE) > 4096:
            _DAY_CACHE.clear()
        _DAY_CACHE[head] = base
    rest = text[19:]
    nanos = 0
    if rest[:1] == ".":
        i = 1
        n = len(rest)
        while i < n and "0" <= rest[i] <= "9":
            i += 1
        if i == 1:
            raise ValueError(f"cannot parse {text!r} as RFC3339")
        nanos = int((rest[1:i] + "000000000")[:9])
        rest = rest[i:]
    if rest == "Z" or rest == "z":
        return base * 1_000_000_000 + nanos
    if len(rest) == 6 and rest[0] in "+-" and rest[3] == ":" and rest[1:3].isdigit() \
            and rest[4:6].isdigit():
        off = int(rest[1:3]) * 3600 + int(rest[4:6]) * 60
        if rest[0] == "+":
            off = -off
        return (base + off) * 1_000_000_000 + nanos
    raise ValueError(f"cannot parse {text!r} as RFC3339")
