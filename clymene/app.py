"""The Celery application: broker, queues, routing, serialisation, time limits.

Scrape tasks are fire-and-forget: there is no result backend, messages are small JSON
lists, and a task that is late past its target's next due time expires unrun (late work
is dropped, not piled up). Plain `celery -A clymene.app worker|beat|flower` works.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from clymene import settings as settings_module

SCRAPE_QUEUE = "scrape"
HOUSEKEEPING_QUEUE = "clymene"

settings = settings_module.load()

app = Celery("clymene", broker=settings.effective_broker_url, include=["clymene.tasks.scrape"])
app.conf.update(
    task_ignore_result=True,
    result_backend=None,
    result_expires=None,  # no result backend, so no backend_cleanup beat entry
    task_serializer="json",
    accept_content=["json"],
    task_queues=[Queue(SCRAPE_QUEUE), Queue(HOUSEKEEPING_QUEUE)],
    task_default_queue=HOUSEKEEPING_QUEUE,
    task_routes={"clymene.scrape": {"queue": SCRAPE_QUEUE},
                 "clymene.end_target": {"queue": SCRAPE_QUEUE}},
    # A scrape is short; a small prefetch keeps work spread over the workers, and
    # acks on receipt are right for tasks that expire anyway.
    worker_prefetch_multiplier=4,
    task_acks_late=False,
    # Events cost CPU per task: workers send them only when Flower asks (it enables them).
    worker_send_task_events=False,
    task_send_sent_event=False,
    broker_connection_retry_on_startup=True,
    # No unacked bookkeeping in Redis (two round trips per task): a scrape lost with a
    # crashed worker is one missed interval, the same as a late one, which is dropped.
    broker_transport_options={"ack_emulation": False},
    beat_scheduler="clymene.beat_schedule:TargetScheduler",
    beat_max_loop_interval=1.0,
    worker_hijack_root_logger=False,
    timezone="UTC",
)
