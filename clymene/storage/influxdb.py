"""InfluxDB storage: line protocol over the v1 (`/write?db=`) or v2 (`/api/v2/write`) API.

One point per sample: measurement = metric name, tags = the other labels (sorted by
name), one float field `value`, the sample's timestamp in `--influxdb.precision`
(ms by default; `s` truncates the milliseconds). v1 authenticates with basic auth
(username/password), v2 with `Authorization: Token <token>`.

Escaping. Commas and spaces in measurements, and commas, equals signs and spaces in tag
keys and values, are escaped with a backslash in both APIs. Backslashes follow the API's
server line:
- v2 API (InfluxDB 2.x, VictoriaMetrics' `/api/v2/write`): every backslash is written
  as `\\`, the line protocol reference's rule ("two contiguous backslashes: the first
  is an escape character").
- v1 API (InfluxDB 1.x): backslashes are written as they are, because InfluxDB 1.x
  never unescapes `\\`; a name or value ending in a backslash gets a space appended
  (written `\\ `), since 1.x cannot represent a trailing backslash at all.
A newline, which the line protocol cannot carry, becomes the two characters `\n`
(backslash, n) in both. Nothing else is changed: Unicode (Korean included), quotes and
`=` in measurements are kept as they are.

Values the line protocol cannot store are not sent: NaN (reason `nan`), ±Inf (`inf`)
and Prometheus staleness markers (`stale`) are dropped and counted in
`clymene_storage_samples_dropped_total{storage="influxdb",reason}`.

Errors: 5xx, 429 and connection errors are retried with backoff until the deadline (the
rules of clymene.storage.prometheus.HTTPSender); other 4xx answers (a 400 "partial
write" included) count the request's points as rejected.
"""

from __future__ import annotations

import gzip
import struct
import urllib.parse

from clymene import stats
from clymene.storage import Labels, Sample, WriteError
from clymene.storage.prometheus import HTTPSender, TLSOptions

_STALE_BITS = 0x7FF0000000000002
_unpack_bits = struct.Struct("<Q").unpack
_pack_double = struct.Struct("<d").pack
_CACHE_MAX = 100_000
_PRECISION = {"ns": 1_000_000, "us": 1_000, "ms": 1, "s": 0}


def _escape(text: str, specials: str, backslash: bool) -> str:
    if "\n" in text:
        text = text.replace("\n", "\\n")
    if backslash:
        if "\\" in text:
            text = text.replace("\\", "\\\\")
    elif text.endswith("\\"):
        text += " "
    for ch in specials:
        if ch in text:
            text = text.replace(ch, "\\" + ch)
    return text


def escape_measurement(name: str, v2: bool = True) -> str:
    return _escape(name, ", ", v2)


def escape_tag(text: str, v2: bool = True) -> str:
    """A tag key or value (also field keys) for the line protocol."""
    return _escape(text, ",= ", v2)


def stored_text(text: str, v2: bool = True) -> str:
    """What a server reads back for `text` after the documented sanitisation."""
    text = text.replace("\n", "\\n")
    if not v2 and text.endswith("\\"):
        text += " "
    return text


class InfluxDBStorage:
    """Writes batches as line protocol to InfluxDB 1.x (v1 API) or 2.x (v2 API)."""

    def __init__(
        self,
        url: str,
        database: str = "",
        username: str = "",
        password: str = "",
        token: str = "",
        org: str = "",
        bucket: str = "",
        precision: str = "ms",
        use_gzip: bool = False,
        timeout: float = 10.0,
        batch_size: int = 5000,
        tls: TLSOptions | None = None,
        name: str = "influxdb",
    ) -> None:
        if precision not in _PRECISION:
            raise ValueError(f"--influxdb.precision must be ns, us, ms or s, got {precision!r}")
        if batch_size < 1:
            raise ValueError(f"--influxdb.batch-size must be at least 1, got {batch_size}")
        base = url.rstrip("/")
        if database:
            self.v2 = False
            query = {"db": database, "precision": precision}
            write_url = f"{base}/write?{urllib.parse.urlencode(query)}"
            basic = (username, password) if username else None
            bearer = None
        elif bucket:
            self.v2 = True
            query = {"org": org, "bucket": bucket, "precision": precision}
            write_url = f"{base}/api/v2/write?{urllib.parse.urlencode(query)}"
            basic = None
            bearer = token or None
        else:
            raise ValueError("storage type 'influxdb' needs --influxdb.database (v1 API) or "
                             "--influxdb.bucket (v2 API)")
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if use_gzip:
            headers["Content-Encoding"] = "gzip"
        self.name = name
        self.use_gzip = use_gzip
        self.batch_size = int(batch_size)
        self._factor = _PRECISION[precision]
        self._sender = HTTPSender(name, write_url, timeout, headers, basic, bearer, tls,
                                  auth_scheme="Token")
        if password:
            self._sender._secrets.append(password)
        self._prefixes: dict[Labels, str] = {}

    def _prefix(self, labels: Labels) -> str:
        v2 = self.v2
        name = ""
        tags = []
        for key, value in labels:
            if key == "__name__":
                name = value
            else:
                tags.append(f",{escape_tag(key, v2)}={escape_tag(value, v2)}")
        prefix = f"{escape_measurement(name, v2)}{''.join(tags)} value="
        if len(self._prefixes) >= _CACHE_MAX:
            self._prefixes.clear()
        self._prefixes[labels] = prefix
        return prefix

    def encode(self, batch: list[Sample]) -> tuple[list[str], dict[str, int]]:
        """The lines of a batch (each ending in a newline) and the count of samples left
        out by reason (nan, inf, stale)."""
        prefixes = self._prefixes
        factor = self._factor
        lines: list[str] = []
        skipped: dict[str, int] = {}
        append = lines.append
        for labels, value, ts in batch:
            if value - value != 0:  # NaN or ±Inf (fast test: both give NaN here)
                if value != value:
                    bits = _unpack_bits(_pack_double(value))[0]
                    reason = "stale" if bits == _STALE_BITS else "nan"
                else:
                    reason = "inf"
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            prefix = prefixes.get(labels) or self._prefix(labels)
            stamp = ts * factor if factor else ts // 1000
            append(f"{prefix}{value!r} {stamp}\n")
        return lines, skipped

    def write(self, batch: list[Sample], deadline: float) -> None:
        lines, skipped = self.encode(batch)
        for reason, count in skipped.items():
            stats.inc("clymene_storage_samples_dropped_total", count, storage=self.name,
                      reason=reason)
        step = self.batch_size
        for start in range(0, len(lines), step):
            chunk = lines[start:start + step]
            body = "".join(chunk).encode("utf-8")
            if self.use_gzip:
                body = gzip.compress(body, 1)
            try:
                self._sender.post(body, deadline)
            except WriteError as exc:
                stats.inc("clymene_storage_samples_dropped_total", len(lines) - start,
                          storage=self.name, reason="deadline" if exc.retryable else "rejected")
                raise
            stats.inc("clymene_storage_samples_written_total", len(chunk), storage=self.name)

    def close(self) -> None:
        self._sender.close()
