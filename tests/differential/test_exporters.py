"""Real exporters: Debian's node-exporter and redis-exporter, scraped live by both
systems, and a copy of each one's output (taken at the start) served as a document.

The copies compare exactly. The live exporters answer each scrape anew, so values that
change between scrapes cannot match: each scrape must have the same series in both
systems, up 1, and every value that stayed the same through the run must be equal.
"""

from __future__ import annotations

import pytest

from tests.differential.harness import (
    REPORT_NAMES,
    compare_api,
    compare_job,
    name_of,
)


@pytest.mark.parametrize("name", ["node", "redis"])
def test_captured_exporter_output(diff, name: str) -> None:
    job = diff.suite.exporters[f"captured-{name}"]
    problems = compare_job(diff.prometheus, diff.clymene, job, need=4)
    problems += compare_api(diff.run.api, job)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", ["node", "redis"])
def test_live_exporter(diff, name: str) -> None:
    job = diff.suite.exporters[name]
    p, c = diff.prometheus, diff.clymene
    [key] = p.keys_of_job(job)
    assert c.keys_of_job(job) == [key]
    n = min(len(p.target(key).scrapes), len(c.target(key).scrapes)) - 1
    assert n >= 4
    seen: dict[str, dict[tuple, set[int]]] = {"prometheus": {}, "clymene": {}}
    for k in range(1, n):  # the first scrape of an exporter may differ (lazy collectors)
        a, b = p.scrape(key, k), c.scrape(key, k)
        assert set(a.values) == set(b.values), (
            f"scrape {k}: series only in prometheus "
            f"{sorted(set(a.values) - set(b.values))[:5]}, only in clymene "
            f"{sorted(set(b.values) - set(a.values))[:5]}")
        assert not b.duplicates
        for system, scrape in (("prometheus", a), ("clymene", b)):
            up = [v for labels, v in scrape.values.items() if name_of(labels) == "up"]
            assert up == [0x3FF0000000000000], (system, up)
            for labels, v in scrape.values.items():
                seen[system].setdefault(labels, set()).add(v)
    exposed = [labels for labels in seen["prometheus"] if name_of(labels) not in REPORT_NAMES]
    assert len(exposed) > 50, len(exposed)
    # A value that stayed the same through the run in both deliveries is the same value.
    stable = [labels for labels in exposed
              if len(seen["prometheus"][labels]) == 1 and len(seen["clymene"][labels]) == 1]
    assert len(stable) > 20, len(stable)
    differ = [labels for labels in stable
              if seen["prometheus"][labels] != seen["clymene"][labels]]
    assert not differ, differ[:5]
    assert not compare_api(diff.run.api, job)
