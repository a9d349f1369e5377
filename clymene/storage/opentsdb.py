"""OpenTSDB storage: HTTP `/api/put` (JSON) or the telnet `put` protocol.

One data point per sample: metric = metric name, tags = the other labels, the value, and
the timestamp in milliseconds (OpenTSDB 2.x takes 13-digit millisecond timestamps in both
protocols, and so does VictoriaMetrics' HTTP listener). VictoriaMetrics' telnet listener
takes seconds only: `--opentsdb.timestamp-seconds` sends whole seconds (the milliseconds
cut off) for such servers. InfluxDB 1.x's OpenTSDB listener takes milliseconds but
stores whole seconds.

Names and values are sanitized to the characters OpenTSDB allows (Tags.validateString:
Unicode letters, digits, `-`, `_`, `.`, `/`). Letters of every script are kept as they
are, Korean included (the original Clymene dropped them). Every other character c is
written as `_u` + its code point in upper-case hex (at least 4 digits) + `_`: a space is
`_u0020_`, `:` is `_u003A_`, `=` is `_u003D_`, `"` is `_u0022_`, a backslash `_u005C_`,
an emoji `_u1F600_`. The rule is deterministic and keeps distinct characters distinct,
so no two label values that differed before can collide except with values that
literally contain such `_uXXXX_` text.

Data points that OpenTSDB cannot store are not sent, and are counted in
`clymene_storage_samples_dropped_total{storage="opentsdb",reason}`:
- NaN (`nan`), ±Inf (`inf`), staleness markers (`stale`): OpenTSDB refuses them;
- more labels than `--opentsdb.max-tags` (`too_many_tags`; OpenTSDB's
  tsd.storage.max_tags defaults to 8): cutting labels off would merge distinct series,
  so the point is dropped instead; raise both limits or drop labels by relabeling;
- no label but the name (`no_tags`): OpenTSDB needs at least one tag.

HTTP: chunks of `--opentsdb.max-chunk` points, retried like remote write (5xx, 429,
connection errors; see HTTPSender) against the next host of `--opentsdb.hosts` each
time. A 400 answer rejects the chunk (the points OpenTSDB reports as failed with
`?details`, else the whole chunk). Telnet: one connection per storage, lines written
as `put <metric> <ms> <value> <k=v> ...`; a failed connection is re-opened (to the next
host) and the chunk resent. Telnet has no acknowledgement: a point the server refuses is
only visible in its log.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import unicodedata

from clymene import stats
from clymene.storage import Labels, Sample, WriteError
from clymene.storage.prometheus import MAX_BACKOFF, MIN_BACKOFF, HTTPSender, TLSOptions

_STALE_BITS = 0x7FF0000000000002
_unpack_bits = struct.Struct("<Q").unpack
_pack_double = struct.Struct("<d").pack
_CACHE_MAX = 100_000
_ALLOWED_PUNCT = frozenset("-_./")
_char_cache: dict[str, str] = {}


def _char(c: str) -> str:
    out = _char_cache.get(c)
    if out is None:
        if c in _ALLOWED_PUNCT or ("0" <= c <= "9") or ("a" <= c <= "z") or ("A" <= c <= "Z"):
            out = c
        else:
            category = unicodedata.category(c)
            if category[0] == "L" or category == "Nd":
                out = c
            else:
                out = f"_u{ord(c):04X}_"
        _char_cache[c] = out
    return out


_ascii_ok = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./")


def sanitize(text: str) -> str:
    """`text` with every character OpenTSDB refuses escaped as `_uXXXX_`."""
    if _ascii_ok.issuperset(text):
        return text
    return "".join(_char(c) for c in text)


class OpenTSDBStorage:
    """Writes batches to OpenTSDB (or a server speaking its put protocol)."""

    def __init__(
        self,
        hosts: list[tuple[str, int]],
        http: bool = False,
        api_path: str = "api/put",
        ssl: bool = False,
        username: str = "",
        password: str = "",
        max_chunk: int = 512,
        max_tags: int = 8,
        timeout: float = 10.0,
        tls: TLSOptions | None = None,
        name: str = "opentsdb",
        seconds: bool = False,
    ) -> None:
        if not hosts:
            raise ValueError("storage type 'opentsdb' needs --opentsdb.host or --opentsdb.hosts")
        if max_chunk < 1:
            raise ValueError(f"--opentsdb.max-chunk must be at least 1, got {max_chunk}")
        if max_tags < 1:
            raise ValueError(f"--opentsdb.max-tags must be at least 1, got {max_tags}")
        if timeout <= 0:
            raise ValueError(f"--opentsdb.timeout must be positive, got {timeout}")
        self.name = name
        self.hosts = list(hosts)
        self.http = http
        self.max_chunk = int(max_chunk)
        self.max_tags = int(max_tags)
        self.timeout = float(timeout)
        self.seconds = seconds
        self._next = 0
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._senders: list[HTTPSender] = []
        if http:
            scheme = "https" if ssl or (tls and (tls.ca_file or tls.cert_file)) else "http"
            path = "/" + api_path.lstrip("/")
            basic = (username, password) if username else None
            headers = {"Content-Type": "application/json"}
            for host, port in self.hosts:
                self._senders.append(HTTPSender(
                    name, f"{scheme}://{host}:{port}{path}?details", timeout, headers, basic,
                    None, tls))
        # labels -> (metric, "k=v k=v" | None when dropped, drop reason)
        self._series: dict[Labels, tuple[str, str, str]] = {}
        self._json_heads: dict[tuple[str, str], str] = {}

    # -- encoding

    def _convert(self, labels: Labels) -> tuple[str, str, str]:
        name = ""
        tags = []
        for key, value in labels:
            if key == "__name__":
                name = value
            else:
                tags.append((sanitize(key), sanitize(value)))
        if not tags:
            out = ("", "", "no_tags")
        elif len(tags) > self.max_tags:
            out = ("", "", "too_many_tags")
        else:
            out = (sanitize(name), " ".join(f"{k}={v}" for k, v in tags), "")
        if len(self._series) >= _CACHE_MAX:
            self._series.clear()
        self._series[labels] = out
        return out

    def points(self, batch: list[Sample]) -> tuple[list[tuple[str, str, float, int]],
                                                   dict[str, int]]:
        """(metric, "k=v k=v", value, ts) per storable sample, and the counts of the
        others by reason."""
        series = self._series
        out = []
        skipped: dict[str, int] = {}
        for labels, value, ts in batch:
            if value - value != 0:  # NaN or ±Inf
                if value != value:
                    reason = ("stale" if _unpack_bits(_pack_double(value))[0] == _STALE_BITS
                              else "nan")
                else:
                    reason = "inf"
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            metric, tags, reason = series.get(labels) or self._convert(labels)
            if reason:
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            out.append((metric, tags, value, ts // 1000 if self.seconds else ts))
        return out, skipped

    @staticmethod
    def telnet_lines(points: list[tuple[str, str, float, int]]) -> bytes:
        return "".join(f"put {m} {ts} {v!r} {tags}\n" for m, tags, v, ts in points).encode()

    def json_body(self, points: list[tuple[str, str, float, int]]) -> bytes:
        heads = self._json_heads
        parts = []
        for metric, tags, value, ts in points:
            head = heads.get((metric, tags))
            if head is None:
                tag_map = dict(pair.split("=", 1) for pair in tags.split(" "))
                head = (f'{{"metric":{json.dumps(metric, ensure_ascii=False)},"tags":'
                        f'{json.dumps(tag_map, ensure_ascii=False, separators=(",", ":"))},')
                if len(heads) >= _CACHE_MAX:
                    heads.clear()
                heads[(metric, tags)] = head
            parts.append(f'{head}"timestamp":{ts},"value":{value!r}}}')
        return ("[" + ",".join(parts) + "]").encode()

    # -- writing

    def write(self, batch: list[Sample], deadline: float) -> None:
        points, skipped = self.points(batch)
        for reason, count in skipped.items():
            stats.inc("clymene_storage_samples_dropped_total", count, storage=self.name,
                      reason=reason)
        step = self.max_chunk
        for start in range(0, len(points), step):
            chunk = points[start:start + step]
            try:
                if self.http:
                    rejected = self._post(chunk, deadline)
                else:
                    rejected = 0
                    self._telnet(chunk, deadline)
            except WriteError as exc:
                stats.inc("clymene_storage_samples_dropped_total", len(points) - start,
                          storage=self.name, reason="deadline" if exc.retryable else "rejected")
                raise
            stats.inc("clymene_storage_samples_written_total", len(chunk) - rejected,
                      storage=self.name)

    def _post(self, chunk: list[tuple[str, str, float, int]], deadline: float) -> int:
        body = self.json_body(chunk)
        while True:
            with self._lock:
                sender = self._senders[self._next % len(self._senders)]
                self._next += 1
            # One host gets one request timeout of tries before the next is tried.
            host_deadline = (deadline if len(self._senders) == 1
                             else min(deadline, time.monotonic() + self.timeout))
            try:
                sender.post(body, host_deadline)
                return 0
            except WriteError as exc:
                if not exc.retryable:
                    failed = _failed_count(str(exc))
                    if failed is not None and failed < len(chunk):
                        stats.inc("clymene_storage_samples_dropped_total", failed,
                                  storage=self.name, reason="rejected")
                        return failed
                    raise
                if time.monotonic() >= deadline:
                    raise

    def _telnet(self, chunk: list[tuple[str, str, float, int]], deadline: float) -> None:
        data = self.telnet_lines(chunk)
        backoff = MIN_BACKOFF
        attempt = 0
        error = ""
        with self._lock:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WriteError(f"{self.name}: gave up writing to telnet "
                                     f"{self._host_text()} at the deadline after {attempt} "
                                     f"attempts: {error}", retryable=True)
                if attempt:
                    stats.inc("clymene_storage_retries_total", storage=self.name)
                attempt += 1
                try:
                    if self._sock is None:
                        host, port = self.hosts[self._next % len(self.hosts)]
                        self._sock = socket.create_connection(
                            (host, port), timeout=min(self.timeout, remaining))
                    self._sock.settimeout(min(self.timeout, remaining))
                    self._sock.sendall(data)
                    stats.inc("clymene_storage_bytes_sent_total", len(data), storage=self.name)
                    return
                except OSError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    stats.inc("clymene_storage_requests_total", storage=self.name, code="error")
                    self._close_socket()
                    self._next += 1
                wait = min(backoff, max(0.0, deadline - time.monotonic()))
                time.sleep(wait)
                backoff = min(backoff * 2, MAX_BACKOFF)

    def _host_text(self) -> str:
        host, port = self.hosts[self._next % len(self.hosts)]
        return f"{host}:{port}"

    def _close_socket(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def close(self) -> None:
        with self._lock:
            self._close_socket()
        for sender in self._senders:
            sender.close()


def _failed_count(message: str) -> int | None:
    """The `failed` count of an OpenTSDB `?details` answer inside an error message."""
    start = message.find("{")
    if start < 0:
        return None
    try:
        payload = json.loads(message[start:])
    except ValueError:
        return None
    failed = payload.get("failed") if isinstance(payload, dict) else None
    return failed if isinstance(failed, int) else None
