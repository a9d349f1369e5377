"""The scrape state a target carries from one scrape to the next, stored and read back.

Consecutive scrapes of a target may run on different worker processes: the state must go
through Redis (loop.encode_state / loop.decode_state) without changing anything the next
scrape writes. Each staleness and limits case of the differential suite is replayed here
through clymene.scrape.loop, once keeping the state in memory and once through
encode/decode with a fresh per-worker cache at every scrape; both must deliver the same.
"""

from __future__ import annotations

import pytest

from clymene.scrape import loop
from tests.differential.cases import case_names, case_options, fill_timestamps
from tests.differential.harness import OPENMETRICS, TEXT

TARGET = {"job": "j", "instance": "127.0.0.1:1"}
BASE_MS = 1_700_000_000_000


def _replay(steps: list[dict], settings: loop.ScrapeSettings, persist: bool) -> list[tuple]:
    cache = loop.SeriesCache()
    state: dict | None = None
    out = []
    for k in range(len(steps) + 2):
        step = steps[min(k, len(steps) - 1)]
        ts = BASE_MS + 1000 * k
        body = fill_timestamps(str(step.get("body", "")).encode(), BASE_MS + 60_000)
        ctype = OPENMETRICS if step.get("content_type") == "om" else TEXT
        error = "server returned HTTP status 500" if step.get("status", 200) >= 400 or \
            step.get("delay") else ""
        outcome = loop.process(None if error else body, ctype, error, ts, TARGET, settings,
                               loop.SeriesCache() if persist else cache, state)
        state = outcome.series
        if persist:
            state = loop.decode_state(loop.encode_state(state))
        out.append((outcome.up, outcome.scraped, outcome.post_relabel, outcome.series_added,
                    sorted((labels, repr(v), t) for labels, v, t in outcome.samples)))
    end = loop.end_of_run(state, [], BASE_MS + 1000 * (len(steps) + 3))
    out.append(sorted((labels, repr(v), t) for labels, v, t in end))
    return out


def _settings(options: dict) -> loop.ScrapeSettings:
    job = options.get("job", {})
    return loop.ScrapeSettings(sample_limit=job.get("sample_limit", 0),
                               label_limit=job.get("label_limit", 0),
                               label_name_length_limit=job.get("label_name_length_limit", 0),
                               label_value_length_limit=job.get("label_value_length_limit", 0))


CASES = [("staleness", n) for n in case_names("staleness")] + \
    [("limits", n) for n in case_names("limits")]


@pytest.mark.parametrize("kind,name", CASES, ids=[f"{k}-{n}" for k, n in CASES])
def test_state_survives_encode_and_decode(kind: str, name: str) -> None:
    options = case_options(kind, name)
    settings = _settings(options)  # (relabeling is not part of this replay)
    assert _replay(options["steps"], settings, persist=True) == \
        _replay(options["steps"], settings, persist=False)


def test_a_plain_series_dict_is_read_as_the_cache_too() -> None:
    """A state stored as a bare list of series (no cache): the series stand in for
    Prometheus' scrape cache, so an unchanged target adds no series."""
    settings = loop.ScrapeSettings()
    first = loop.process(b"a 1\nb 2\n", TEXT, "", BASE_MS, TARGET, settings,
                         loop.SeriesCache(), None)
    plain = dict(first.series)
    again = loop.process(b"a 1\nb 2\n", TEXT, "", BASE_MS + 1000, TARGET, settings,
                         loop.SeriesCache(), plain)
    assert (again.series_added, again.stale_markers, again.up) == (0, 0, True)
    assert set(again.series) == set(first.series)


def test_encoded_state_keeps_cache_and_timestamps() -> None:
    settings = loop.ScrapeSettings()
    body = f"a 1\nb 2 {BASE_MS + 5000}\n".encode()
    outcome = loop.process(body, TEXT, "", BASE_MS, TARGET, settings, loop.SeriesCache(), None)
    state = loop.decode_state(loop.encode_state(outcome.series))
    assert isinstance(state, loop.ScrapeState)
    assert dict(state) == dict(outcome.series)
    assert state.cache == {"a": False, "b": False}
    b = (("__name__", "b"), ("instance", "127.0.0.1:1"), ("job", "j"))
    assert state.last_ts == {b: BASE_MS + 5000}
    assert loop.set_fingerprint(state) == loop.set_fingerprint(outcome.series)
