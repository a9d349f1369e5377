"""The scheduling plan: due times per target, offsets, registry changes, stalls."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import redis
from celery import Celery

from clymene.app import SCRAPE_QUEUE
from clymene.app import app as clymene_app
from clymene.beat_schedule import ScrapePublisher, TargetPlan, next_due, target_offset
from clymene.registry import Target


def _target(tid: str, interval: float = 10.0) -> Target:
    t = Target(id=tid, job="j", scrape_url=f"http://{tid}/metrics", labels={"instance": tid},
               discovered_labels={}, interval=interval, timeout=interval, config_rev="c")
    return Target.from_json(t.to_json())


def test_next_due_is_aligned_to_the_offset():
    assert next_due(100.0, 10.0, 3.0) == 103.0
    assert next_due(103.0, 10.0, 3.0) == 103.0
    assert next_due(103.5, 10.0, 3.0) == 113.0
    assert 0 <= target_offset("ffffffffffffffff", 5.0) < 5.0
    assert target_offset("0000000000000000", 5.0) == 0.0


def test_each_target_is_due_once_per_interval():
    plan = TargetPlan()
    targets = {tid: _target(tid, 1.0) for tid in ("a" * 16, "b" * 16, "c" * 16)}
    plan.update(targets, now=1000.0)
    sent: dict[str, list[float]] = {tid: [] for tid in targets}
    now = 1000.0
    while now < 1010.0:
        for due, t in plan.pop_due(now):
            assert due <= now
            sent[t.id].append(due)
        now += 0.05
    for tid, dues in sent.items():
        assert len(dues) == 10, (tid, dues)
        assert all(abs((b - a) - 1.0) < 1e-9 for a, b in zip(dues, dues[1:], strict=False))


def test_removed_targets_stop_and_new_ones_start():
    plan = TargetPlan()
    a, b = _target("a" * 16, 1.0), _target("b" * 16, 1.0)
    plan.update({a.id: a}, now=0.0)
    assert [t.id for _, t in plan.pop_due(1.0)] == [a.id]
    plan.update({b.id: b}, now=1.0)
    got = [t.id for _, t in plan.pop_due(3.0)]
    assert a.id not in got and b.id in got


def test_unchanged_targets_keep_their_due_time_across_updates():
    plan = TargetPlan()
    a = _target("a" * 16, 10.0)
    plan.update({a.id: a}, now=0.0)
    before = plan.due[a.id]
    plan.update({a.id: a, "b" * 16: _target("b" * 16, 10.0)}, now=5.0)
    assert plan.due[a.id] == before


def test_a_stalled_beat_does_not_burst():
    plan = TargetPlan()
    a = _target("a" * 16, 1.0)
    plan.update({a.id: a}, now=0.0)
    plan.pop_due(1.0)
    # Beat was stalled for 30 intervals: one scrape is sent, not 30.
    assert len(plan.pop_due(31.5)) == 1
    assert plan.due[a.id] > 31.5


def _app(broker_url: str, **transport_options: object) -> Celery:
    app = Celery("clymene", broker=broker_url)
    app.conf.update({k: v for k, v in clymene_app.conf.changes.items() if k != "broker_url"})
    app.conf.broker_transport_options = {"ack_emulation": False, **transport_options}
    return app


def _normalised(raw: bytes) -> dict:
    """A kombu envelope with its random ids and its clock-dependent TTL taken out."""
    msg = json.loads(raw)
    msg["body"] = json.loads(base64.b64decode(msg["body"]))
    h, p = msg["headers"], msg["properties"]
    assert h["id"] == h["root_id"] == p["correlation_id"]
    for key in ("id", "root_id"):
        h[key] = "ID"
    p["correlation_id"] = "ID"
    p["delivery_tag"] = "TAG"
    assert 95_000 <= int(p.pop("expiration")) <= 105_000
    return msg


def test_published_message_is_the_one_send_task_sends(redis_url):
    app = _app(redis_url)
    client = redis.Redis.from_url(redis_url)
    t = _target("ab" * 8, 5.0)
    due = time.time() + 95.0
    app.send_task("clymene.scrape", args=[t.id, t.rev, t.job, t.instance, due],
                  queue=SCRAPE_QUEUE, expires=datetime.fromtimestamp(due + 5.0, tz=UTC))
    assert ScrapePublisher.usable(app)
    ScrapePublisher(app, client).publish([(due, t), (due + 5.0, t)])
    ours_next, ours, celerys = client.lrange(SCRAPE_QUEUE, 0, -1)  # LPUSH: newest first
    assert _normalised(ours) == _normalised(celerys)
    assert _normalised(ours_next)["body"][0] == [t.id, t.rev, "j", t.instance, due + 5.0]


def test_other_brokers_and_key_layouts_go_through_send_task(redis_url):
    assert not ScrapePublisher.usable(_app("amqp://guest@127.0.0.1:5672//"))
    assert not ScrapePublisher.usable(_app(redis_url, global_keyprefix="x:"))
    assert not ScrapePublisher.usable(_app(redis_url, priority_steps=list(range(10))))
