"""Command-line flags: the `Flag` type and the value parsers every flag group uses.

Each area of clymene declares its flags in a `flags.py` of its own (a tuple named
FLAGS); clymene.settings gathers them into one settings object.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_DURATION_RE = re.compile(r"^((\d+)h)?((\d+)m(?!s))?((\d+)s)?((\d+)ms)?$")


def parse_duration(text: str) -> float:
    """Parse a Go/Prometheus-style duration ("30s", "1m30s", "500ms", "2h") into seconds.

    A bare number is taken as seconds, which is what people type in environment variables.
    """
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    m = _DURATION_RE.match(text)
    if not text or not m or not any(m.groups()):
        raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 1m, 500ms)")
    hours, minutes, seconds, millis = (int(m.group(i) or 0) for i in (2, 4, 6, 8))
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def parse_bytes(text: str) -> int:
    """Parse a size such as "100MiB", "64MB", "1GB" or "4096" into bytes (base 2 units)."""
    m = re.match(r"^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"invalid size {text!r} (use e.g. 100MiB, 64MB, 4096)")
    power = " KMGT".index(m.group(2).upper() or " ")
    return int(m.group(1)) * 1024**power


def parse_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"invalid boolean {text!r}")


@dataclass(frozen=True)
class Flag:
    name: str  # "--prometheus.remote.url"
    attr: str  # attribute of Settings
    default: str
    help: str
    convert: Callable[[str], object] = str
    env_name: str = ""  # when the variable is not named after the flag

    @property
    def env(self) -> str:
        return self.env_name or re.sub(r"[.\-]", "_", self.name.lstrip("-")).upper()
