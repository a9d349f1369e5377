"""Staleness markers where Prometheus writes them (issue 3, item 4).

staleness.yml: targets whose answers change from scrape to scrape (series come and go,
the target fails with 5xx, a timeout or a broken document, sends an empty body, mixes
explicit timestamps). Scrape k of each system saw the same answer, so the deliveries
compare scrape by scrape, StaleNaN (bits 0x7ff0000000000002) included.

A case may list `prometheus_agent_drops`: series Prometheus' agent never forwards. They
were first appended by a scrape that failed later in the document (or at its sample
limit); the agent rolls the samples back but not the new series, whose record then never
reaches the write-ahead log, and remote write drops every later sample of it ("Dropped
sample for series that was not explicitly dropped via relabelling"). Prometheus must
deliver nothing for them, and clymene exactly the listed values.
"""

from __future__ import annotations

import pytest

from tests.differential.cases import case_names, case_options
from tests.differential.harness import (
    REPORT_NAMES,
    STALE_NAN_BITS,
    Delivery,
    compare_job,
    name_of,
    show,
)

STALENESS = case_names("staleness")


def check_agent_drops(p: Delivery, c: Delivery, job: str, drops: dict[str, dict]) -> list[str]:
    problems = []
    for key in c.keys_of_job(job):
        scrapes = c.target(key).scrapes
        for name, expected in drops.items():
            got_p = [labels for labels in p.target(key).series if name_of(labels) == name]
            if got_p:
                problems.append(f"prometheus delivered {name} after all: {got_p}")
            got = {}
            for labels in c.target(key).series:
                if name_of(labels) == name:
                    for t, v in c.series[labels]:
                        got[scrapes.index(t) if t in scrapes else f"ts {t}"] = show(v)
            want = {k: "StaleNaN" if v == "stale" else repr(float(v))
                    for k, v in expected.items()}
            if got != want:
                problems.append(f"clymene's {name}: {got}, expected {want}")
    return problems


@pytest.mark.parametrize("name", STALENESS)
def test_staleness(diff, name: str) -> None:
    job = diff.suite.staleness[name]
    options = case_options("staleness", name)
    drops = options.get("prometheus_agent_drops", {})
    problems = compare_job(diff.prometheus, diff.clymene, job, need=len(options["steps"]),
                           exclude=frozenset(drops))
    problems += check_agent_drops(diff.prometheus, diff.clymene, job, drops)
    assert not problems, "\n".join(problems)


def check_end_of_run(diff, job: str, instance: str, exposed: str) -> None:
    """A target that left: each system wrote exactly one StaleNaN for each series of its
    last scrape and each report series, after that scrape and at most two intervals later
    (Prometheus: when its next scrape would have been), and nothing else after it."""
    marked = {}
    for d in (diff.prometheus, diff.clymene):
        [key] = [k for k in d.keys_of_job(job) if dict(k)["instance"] == instance]
        rec = d.target(key)
        last = rec.scrapes[-1]
        off = d.off_scrape(key)
        for labels, points in off.items():
            assert [b for _, b in points] == [STALE_NAN_BITS], (d.name, labels, points)
            [(t, _)] = points
            assert last < t <= last + 2000, (d.name, labels, t - last)
        last_scrape = {labels for labels in rec.series
                       if any(t == last for t, _ in d.series[labels])}
        assert set(off) == last_scrape, (d.name, set(off) ^ last_scrape)
        assert {name_of(labels) for labels in off} == {exposed, *REPORT_NAMES}, d.name
        marked[d.name] = set(off)
    assert marked["prometheus"] == marked["clymene"]


def test_target_removed_from_file_sd(diff) -> None:
    assert diff.removed_at, "the run never removed the target"
    job = diff.suite.sd_removal_job
    check_end_of_run(diff, job, diff.suite.targets["sd-gone"].address, "gone_series")
    # The target that stayed has no samples but its scrapes'.
    kept = diff.suite.targets["sd-kept"].address
    for d in (diff.prometheus, diff.clymene):
        [key] = [k for k in d.keys_of_job(job) if dict(k)["instance"] == kept]
        assert not d.off_scrape(key), d.name


def test_job_removed_from_the_configuration(diff) -> None:
    """A job that leaves the configuration: Prometheus 2.42 stops its scrape pool, which
    cancels the end-of-run wait of its loops, so no staleness marker is written (its
    series end 5 minutes after their last sample, as after a restart). clymene does the
    same: the scrapes stop and nothing else is written."""
    assert diff.job_removed_at, "the run never removed the job"
    job = diff.suite.config_removal_job
    problems = compare_job(diff.prometheus, diff.clymene, job, need=3)
    assert not problems, "\n".join(problems)
    for d in (diff.prometheus, diff.clymene):
        [key] = d.keys_of_job(job)
        assert d.off_scrape(key) == {}, d.name
        # Scraping stopped: nothing more than an interval and a bit after the removal.
        assert d.target(key).scrapes[-1] < diff.job_removed_at * 1000 + 2000, d.name
