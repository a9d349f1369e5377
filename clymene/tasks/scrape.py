"""The scrape task. Its arguments are lean and readable in Flower:
[target id, target revision, job, instance, due time], so searching Flower's task list
for a job or an instance finds that target's scrapes.
"""

from __future__ import annotations

import logging

from celery.signals import (
    after_setup_logger,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)

from clymene import settings as settings_module
from clymene.app import app

log = logging.getLogger(__name__)

_runner = None


def _get_runner():
    global _runner
    if _runner is None:
        import redis

        from clymene.scrape.runner import Runner
        from clymene.storage.factory import open_storages

        settings = settings_module.load()
        client = redis.Redis.from_url(settings.effective_broker_url)
        _runner = Runner(client, open_storages(settings))
    return _runner


@after_setup_logger.connect
def _quiet_task_lines(**_: object) -> None:
    # "Task ... received/succeeded" for every scrape would be most of the log (and a fair
    # share of the CPU) at info level; they show with --log-level=debug.
    if settings_module.load().log_level.lower() != "debug":
        for name in ("celery.app.trace", "celery.worker.strategy"):
            logging.getLogger(name).setLevel(logging.WARNING)


@worker_process_init.connect
def _fresh_runner_per_process(**_: object) -> None:
    # Forked pool processes must not share the parent's sockets.
    global _runner
    _runner = None


@worker_process_shutdown.connect
@worker_shutdown.connect
def _flush_at_exit(**_: object) -> None:
    if _runner is not None:
        _runner.close()


@app.task(name="clymene.scrape", ignore_result=True)
def scrape(target_id: str, rev: str, job: str, instance: str, due: float | None = None) -> str:
    return _get_runner().run(target_id, rev, due)


@app.task(name="clymene.end_target", ignore_result=True)
def end_target(target_json: str) -> str:
    """Staleness markers for a target that left discovery (sent by discovery)."""
    return _get_runner().end_target(target_json)


def send_end_target(target_json: str, interval: float) -> None:
    from clymene.scrape.runner import end_of_run_delay

    end_target.apply_async(args=[target_json], countdown=end_of_run_delay(interval))
