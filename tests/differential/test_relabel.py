"""Relabeling (issue 3, item 2): target relabel_configs (relabel/target.yml) and
metric_relabel_configs, honor_labels, honor_timestamps and external labels
(relabel/metric.yml), one job per case.

Compared: the targets in /api/v1/targets (labels, URL, pool, interval, timeout, health,
dropped targets) and the delivered series scrape by scrape. Prometheus 2.42 shows
discovered labels overwritten by the relabeled ones for a kept target whose job has
relabel_configs (its relabeling writes into the discovered labels' memory), so those are
compared only for jobs without relabel_configs.
"""

from __future__ import annotations

import pytest

from tests.differential.cases import case_names, relabel_job
from tests.differential.harness import compare_api, compare_job

TARGET = case_names("target")
METRIC = case_names("metric")


def test_there_are_at_least_40_relabel_configurations() -> None:
    assert len(TARGET) + len(METRIC) >= 40


def _check(diff, kind: str, job: str) -> None:
    config = relabel_job(kind, job)
    need = 2 if job == "rl-scrape-interval" else 4
    problems = compare_job(diff.prometheus, diff.clymene, job, need=need)
    problems += compare_api(diff.run.api, job, discovered=not config.get("relabel_configs"))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("job", TARGET)
def test_target_relabeling(diff, job: str) -> None:
    _check(diff, "target", job)


@pytest.mark.parametrize("job", METRIC)
def test_metric_relabeling(diff, job: str) -> None:
    _check(diff, "metric", job)
