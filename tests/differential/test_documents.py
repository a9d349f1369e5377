"""Exposition documents scraped by Prometheus 2.42 and clymene: the same delivery.

Every file of documents/ (and every case of documents/manifest.yml) is one target in its
own job; all of them are valid for Prometheus (up 1 in every scrape).
"""

from __future__ import annotations

import pytest

from tests.differential.cases import case_names
from tests.differential.harness import compare_api, compare_job, last_errors, up_values

DOCUMENTS = case_names("documents")


def test_there_are_at_least_40_documents() -> None:
    assert len(DOCUMENTS) >= 40, DOCUMENTS


@pytest.mark.parametrize("name", DOCUMENTS)
def test_document(diff, name: str) -> None:
    job = diff.suite.documents[name]
    ups = up_values(diff.prometheus, job)
    assert ups and 0.0 not in ups, \
        f"the document is not valid for Prometheus: {last_errors(diff.run.api, job)}"
    problems = compare_job(diff.prometheus, diff.clymene, job, need=4)
    problems += compare_api(diff.run.api, job)
    assert not problems, "\n".join(problems)


def test_every_series_is_assigned_to_a_target(diff) -> None:
    """Each delivered series belongs to one target (by its scrape timestamps and labels),
    so no sample escapes the comparisons."""
    for delivery in (diff.prometheus, diff.clymene):
        assert delivery.unowned() == [], (delivery.name, delivery.unowned()[:5])
