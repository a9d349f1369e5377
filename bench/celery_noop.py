"""A no-op task on clymene's own Celery app, for bench/celery_overhead.py: the worker
started on this module has clymene's settings, changed by the JSON object in
BENCH_CELERY_CONF (Celery setting name -> value)."""

from __future__ import annotations

import json
import os

from clymene.app import app

app.conf.update(json.loads(os.environ.get("BENCH_CELERY_CONF", "{}")))


@app.task(name="bench.noop")
def noop(*args: object) -> None:
    """Takes a scrape task's arguments and does nothing."""
