"""Run clymene's real processes for end-to-end tests.

    farm = Farm(tmp_path, redis_url, config_yaml, storage_env)
    farm.start("run")                       # or "discovery", "beat", "worker", "web"
    farm.targets()                          # GET /api/v1/targets of its web server
    farm.stop()                             # SIGTERM every process group, SIGKILL after 10 s

Each process is started with `python -m clymene CMD` in its own session, so it is stopped
by its process group, with its output in tmp_path/<name>-<n>.log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.servers import free_port, http_get, wait_until

ROOT = Path(__file__).resolve().parent.parent


class Farm:
    def __init__(self, tmp_path: Path, redis_url: str, config_yaml: str,
                 env: dict[str, str] | None = None) -> None:
        self.tmp_path = Path(tmp_path)
        self.config_path = self.tmp_path / "clymene.yml"
        self.config_path.write_text(config_yaml)
        self.web_port = free_port()
        self.env = dict(os.environ)
        self.env.update({
            "CLYMENE_BROKER_URL": redis_url,
            "CONFIG_FILE": str(self.config_path),
            "WEB_LISTEN_ADDRESS": f"127.0.0.1:{self.web_port}",
            "STORAGE_FILE_PATH": str(self.tmp_path / "data"),
            "WORKER_CONCURRENCY": "2",
            "LOG_LEVEL": "info",
            "PYTHONPATH": str(ROOT),
        })
        self.env.update(env or {})
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self, command: str, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.Popen:
        log_path = self.tmp_path / f"{command}-{len(self.procs)}.log"
        full_env = dict(self.env)
        full_env.update(env or {})
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "clymene", command, *args],
                                    env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=self.tmp_path,
                                    start_new_session=True)
        self.procs.append((command, proc, log_path))
        return proc

    def logs(self) -> str:
        return "\n".join(f"===== {name} ({path.name})\n{path.read_text(errors='replace')[-4000:]}"
                         for name, _, path in self.procs)

    def targets(self) -> dict[str, Any]:
        status, body = http_get(self.web_url + "/api/v1/targets")
        assert status == 200, body
        return json.loads(body)["data"]

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready() -> bool:
            try:
                return http_get(self.web_url + "/-/ready", timeout=1.0)[0] == 200
            except OSError:
                return False
        wait_until(ready, timeout=timeout, interval=0.1)

    def signal(self, proc: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 10.0) -> dict[str, float]:
        """Stop every process; returns how long each took to exit after SIGTERM."""
        took: dict[str, float] = {}
        for _, proc, _ in self.procs:
            self.signal(proc, signal.SIGTERM)
        start = time.monotonic()
        for name, proc, _ in self.procs:
            try:
                proc.wait(max(0.1, timeout - (time.monotonic() - start)))
                took[name] = time.monotonic() - start
            except subprocess.TimeoutExpired:
                self.signal(proc, signal.SIGKILL)
                proc.wait()
                took[name] = float("inf")
        return took
