"""Limits (issue 3, item 3): sample_limit, label_limit, label_name_length_limit,
label_value_length_limit, body_size_limit and target_limit, hit and not quite hit.

A limit that is hit fails the scrape (up 0) with Prometheus' report values: the samples
counted before the failure (all of them for sample_limit, which lets the parse finish).
clymene's lastError is Prometheus'.
"""

from __future__ import annotations

import pytest

from tests.differential.cases import case_names, case_options
from tests.differential.harness import compare_api, compare_job, last_errors
from tests.differential.test_staleness import check_agent_drops

LIMITS = case_names("limits")


@pytest.mark.parametrize("name", LIMITS)
def test_limit(diff, name: str) -> None:
    job = diff.suite.limits[name]
    options = case_options("limits", name)
    drops = options.get("prometheus_agent_drops", {})
    problems = compare_job(diff.prometheus, diff.clymene, job,
                           need=max(4, len(options["steps"])), exclude=frozenset(drops))
    problems += check_agent_drops(diff.prometheus, diff.clymene, job, drops)
    problems += compare_api(diff.run.api, job,
                            discovered=not options["job"].get("relabel_configs"),
                            health=len(options["steps"]) == 1)  # a static answer
    errors = last_errors(diff.run.api, job)
    if len(options["steps"]) == 1:
        assert errors["prometheus"] == errors["clymene"], errors
    assert not problems, "\n".join(problems)
