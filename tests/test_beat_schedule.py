"""The scheduling plan: due times per target, offsets, registry changes, stalls."""

from __future__ import annotations

from clymene.beat_schedule import TargetPlan, next_due, target_offset
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
