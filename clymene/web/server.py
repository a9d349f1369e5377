"""The web server: targets API and page, the farm's /metrics, health endpoints.

Everything it shows comes from Redis (the registry, each target's scrape state, the
counters the workers flush), so one web process sees the whole farm. It can require
basic auth and serve TLS; it never shows credentials (target URLs carry none: auth is
configured per job, not in URLs).
"""

from __future__ import annotations

import base64
import hmac
import html
import json
import logging
import ssl
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
from prometheus_client import REGISTRY, generate_latest

from clymene import registry
from clymene.app import SCRAPE_QUEUE
from clymene.config import format_duration

log = logging.getLogger(__name__)


def _rfc3339(ts: float) -> str:
    if not ts:
        return "0001-01-01T00:00:00Z"
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}Z"


def targets_api(client: redis.Redis, state: str = "any", pool: str = "") -> dict[str, Any]:
    """The body of /api/v1/targets, in Prometheus' shape."""
    active: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    if state in ("any", "active", ""):
        targets = sorted(registry.load_targets(client).values(),
                         key=lambda t: (t.job, t.scrape_url))
        if pool:
            targets = [t for t in targets if t.job == pool]
        pipe = client.pipeline(transaction=False)
        for t in targets:
            pipe.hmget(registry.state_key(t.id),
                       ["health", "last_error", "last_scrape", "duration", "samples"])
        for t, fields in zip(targets, pipe.execute(), strict=True):
            health, last_error, last_scrape, duration, _samples = (
                (f.decode() if f is not None else None) for f in fields)
            active.append({
                "discoveredLabels": t.discovered_labels,
                "labels": t.labels,
                "scrapePool": t.job,
                "scrapeUrl": t.scrape_url,
                "globalUrl": t.scrape_url,
                "lastError": last_error or "",
                "lastScrape": _rfc3339(float(last_scrape or 0)),
                "lastScrapeDuration": float(duration or 0),
                "health": health or "unknown",
                "scrapeInterval": format_duration(t.interval),
                "scrapeTimeout": format_duration(t.timeout),
            })
    if state in ("any", "dropped", ""):
        for labels in sorted(registry.load_dropped(client), key=lambda d: sorted(d.items())):
            if pool and labels.get("job") != pool:
                continue
            dropped.append({"discoveredLabels": labels})
    return {"status": "success", "data": {"activeTargets": active, "droppedTargets": dropped}}


def farm_metrics(client: redis.Redis) -> bytes:
    """/metrics: the counters flushed by every worker, plus registry and queue gauges."""
    stats = {k.decode(): float(v) for k, v in client.hgetall(registry.STATS_KEY).items()}
    families: dict[str, list[str]] = {}
    for key in sorted(stats):
        name = key.split("{", 1)[0]
        # x_sum and x_count are one summary family x; everything else is a counter.
        family = name.rsplit("_", 1)[0] if name.endswith(("_sum", "_count")) else name
        families.setdefault(family, []).append(f"{key} {_fmt(stats[key])}")
    lines = []
    for family, samples in families.items():
        kind = "counter" if family.endswith("_total") else "summary"
        lines.append(f"# TYPE {family} {kind}")
        lines.extend(samples)
    lines.append("# HELP clymene_targets Targets in the registry.")
    lines.append("# TYPE clymene_targets gauge")
    lines.append(f'clymene_targets{{state="active"}} {client.hlen(registry.TARGETS_KEY)}')
    lines.append(f'clymene_targets{{state="dropped"}} {client.hlen(registry.DROPPED_KEY)}')
    lines.append("# HELP clymene_queue_length Messages waiting in a Celery queue.")
    lines.append("# TYPE clymene_queue_length gauge")
    lines.append(f'clymene_queue_length{{queue="{SCRAPE_QUEUE}"}} {client.llen(SCRAPE_QUEUE)}')
    lines.append("# HELP clymene_beat_active 1 when a beat process holds the scheduler lock.")
    lines.append("# TYPE clymene_beat_active gauge")
    lines.append(f"clymene_beat_active {1 if client.exists(registry.BEAT_LOCK_KEY) else 0}")
    return ("\n".join(lines) + "\n").encode() + generate_latest(REGISTRY)


def _fmt(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def targets_page(body: dict[str, Any]) -> bytes:
    """A plain HTML page of the targets, grouped by job."""
    rows = []
    for t in body["data"]["activeTargets"]:
        labels = ", ".join(f"{html.escape(k)}=&quot;{html.escape(v)}&quot;"
                           for k, v in sorted(t["labels"].items()))
        rows.append(
            f"<tr class='{html.escape(t['health'])}'><td>{html.escape(t['scrapePool'])}</td>"
            f"<td><a href='{html.escape(t['scrapeUrl'])}'>{html.escape(t['scrapeUrl'])}</a></td>"
            f"<td>{html.escape(t['health'])}</td><td>{labels}</td>"
            f"<td>{html.escape(t['lastScrape'])}</td><td>{t['lastScrapeDuration']:.3f}s</td>"
            f"<td>{html.escape(t['lastError'])}</td></tr>")
    dropped = len(body["data"]["droppedTargets"])
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>clymene targets</title>
<style>body{{font-family:sans-serif}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px}}
tr.up td:nth-child(3){{color:green}}tr.down td:nth-child(3){{color:#c00}}</style></head><body>
<h1>Targets</h1><p>{len(rows)} active, {dropped} dropped by relabeling.
JSON: <a href="api/v1/targets">/api/v1/targets</a></p>
<table><tr><th>Job</th><th>Endpoint</th><th>State</th><th>Labels</th><th>Last scrape</th>
<th>Duration</th><th>Error</th></tr>{''.join(rows)}</table></body></html>"""
    return page.encode()


class _Handler(BaseHTTPRequestHandler):
    server: WebServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet: access logs at debug
        log.debug("web: %s " + fmt, self.address_string(), *args)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self) -> bool:
        expected = self.server.basic_auth
        if expected is None:
            return True
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                given = base64.b64decode(header[6:]).decode()
            except ValueError:
                given = ""
            if hmac.compare_digest(given.encode(), expected.encode()):
                return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="clymene"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._authorized():
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        client = self.server.redis
        try:
            if url.path == "/api/v1/targets":
                body = targets_api(client, (query.get("state") or ["any"])[0],
                                   (query.get("scrapePool") or [""])[0])
                self._send(200, json.dumps(body).encode(), "application/json")
            elif url.path in ("/targets", "/"):
                self._send(200, targets_page(targets_api(client)), "text/html; charset=utf-8")
            elif url.path == "/metrics":
                self._send(200, farm_metrics(client), "text/plain; version=0.0.4; charset=utf-8")
            elif url.path == "/-/healthy":
                self._send(200, b"clymene is Healthy.\n", "text/plain")
            elif url.path == "/-/ready":
                client.ping()
                self._send(200, b"clymene is Ready.\n", "text/plain")
            else:
                self._send(404, b"404 page not found\n", "text/plain")
        except redis.RedisError as exc:
            log.error("web: Redis error: %s", exc)
            self._send(503, f"Redis unavailable: {type(exc).__name__}\n".encode(), "text/plain")


class WebServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], client: redis.Redis,
                 basic_auth: str | None = None, tls: tuple[str, str] | None = None):
        super().__init__(address, _Handler)
        self.redis = client
        self.basic_auth = basic_auth  # "user:password"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.socket = ctx.wrap_socket(self.socket, server_side=True)


def parse_listen_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"--web.listen-address: invalid address {address!r} (want host:port)")
    return (host.strip("[]") or "0.0.0.0", int(port))


def serve(address: str, client: redis.Redis, basic_auth: str | None = None,
          tls: tuple[str, str] | None = None, stop: threading.Event | None = None) -> None:
    server = WebServer(parse_listen_address(address), client, basic_auth, tls)
    log.info("web: listening on %s", address)
    if stop is None:
        server.serve_forever()
        return
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stop.wait()
    server.shutdown()
