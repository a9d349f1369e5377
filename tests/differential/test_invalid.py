"""Invalid expositions (issue 3, item 1): both systems fail the scrape the same way.

Each file of invalid/ (and each case of invalid/manifest.yml) is a target in its own
job. Prometheus and clymene must both report up 0 in every scrape, deliver no sample of
the document, and write the same report series: Prometheus appends samples while it
parses, so scrape_samples_scraped, scrape_samples_post_metric_relabeling and
scrape_series_added count what came before the error. clymene's lastError contains
Prometheus' and names the line.
"""

from __future__ import annotations

import pytest

from tests.differential.cases import case_names
from tests.differential.harness import (
    REPORT_NAMES,
    compare_api,
    compare_job,
    last_errors,
    name_of,
    up_values,
)

INVALID = case_names("invalid")


@pytest.mark.parametrize("name", INVALID)
def test_invalid_document(diff, name: str) -> None:
    job = diff.suite.invalid[name]
    for delivery in (diff.prometheus, diff.clymene):
        ups = up_values(delivery, job)
        assert ups and set(ups) == {0.0}, f"{delivery.name}: up {ups}"
        for key in delivery.keys_of_job(job):
            names = {name_of(labels) for labels in delivery.target(key).series}
            assert names == set(REPORT_NAMES), f"{delivery.name} delivered {names}"
    problems = compare_job(diff.prometheus, diff.clymene, job, need=4)
    problems += compare_api(diff.run.api, job, health=True)
    errors = last_errors(diff.run.api, job)
    [prometheus_error], [clymene_error] = errors["prometheus"], errors["clymene"]
    if name != "truncated_http_body":  # a transport error: Go's wording is its own
        assert prometheus_error in clymene_error, errors
        assert clymene_error.startswith("line "), errors
    assert not problems, "\n".join(problems)


def test_every_invalid_input_of_issue_3_is_covered() -> None:
    wanted = {"duplicate_label_name", "invalid_metric_name", "invalid_label_name_digit",
              "broken_escape_newline", "non_numeric_value", "truncated_labels",
              "truncated_http_body", "invalid_utf8_label_value", "om_missing_eof"}
    assert wanted <= set(INVALID), wanted - set(INVALID)
