"""A target's steady state (loop.Steady): a document laid out like the one before is read
by its values alone. Every outcome must be exactly what the full path gives: each sequence
here is replayed twice, once with one per-target cache (the steady path taken where it
can be) and once with a fresh cache and the state read back from its stored form at every
scrape (the full path always), and the two must agree scrape by scrape."""

from __future__ import annotations

import math

import pytest

from clymene import config
from clymene.scrape import loop

TEXT = "text/plain; version=0.0.4; charset=utf-8"
TARGET = {"job": "j", "instance": "127.0.0.1:1"}
BASE_MS = 1_700_000_000_000

HEAD = "# HELP a_total A counter.\n# TYPE a_total counter\n"


def doc(a: str = "1", b: str = "2", c: str = "3", extra: str = "", head: str = HEAD) -> bytes:
    return (f"{head}a_total{{x=\"1\"}} {a}\na_total{{x=\"2\"}} {b}\n"
            f"# TYPE g gauge\ng {c}\n{extra}").encode()


def _run(bodies: list[tuple[bytes, str]], settings: loop.ScrapeSettings,
         steady: bool) -> tuple[list[tuple], int]:
    cache = loop.SeriesCache()
    state = None
    out = []
    fast = 0
    for k, (body, ctype) in enumerate(bodies):
        outcome = loop.process(body, ctype, "", BASE_MS + 1000 * k, TARGET, settings,
                               cache if steady else loop.SeriesCache(), state)
        if state is not None and outcome.series is state:
            fast += 1
        state = outcome.series if steady else loop.decode_state(loop.encode_state(outcome.series))
        out.append((outcome.up, outcome.error, outcome.scraped, outcome.post_relabel,
                    outcome.series_added, outcome.stale_markers,
                    [(labels, repr(v), t) for labels, v, t in outcome.samples]))
    return out, fast


def _check(bodies: list[bytes | tuple[bytes, str]], settings: loop.ScrapeSettings | None = None
           ) -> tuple[list[tuple], int]:
    settings = settings or loop.ScrapeSettings()
    seq = [b if isinstance(b, tuple) else (b, TEXT) for b in bodies]
    steady, fast = _run(seq, settings, steady=True)
    full, _ = _run(seq, settings, steady=False)
    for k, (a, b) in enumerate(zip(steady, full, strict=True)):
        assert a == b, f"scrape {k} differs:\n steady {a}\n full   {b}"
    return steady, fast


def test_new_values_in_the_same_layout():
    out, fast = _check([doc("1", "2", "3"), doc("4", "5", "6"), doc("7", "8.5", "-1e-3"),
                        doc("NaN", "+Inf", "-Inf")])
    assert fast == 3
    assert [v for _, v, _ in out[2][6]] == ["7.0", "8.5", "-0.001"]
    assert out[3][0] and math.isnan(float(out[3][6][0][1]))
    assert all(o[4] == 0 for o in out[1:])  # no series added after the first scrape


@pytest.mark.parametrize("bad", ["abc", "1_000", "0x1p-2", "1e999", "", "1 x"])
def test_a_bad_value_in_the_same_layout_fails_as_the_parser_says(bad):
    out, _ = _check([doc(), doc("5"), doc(bad), doc("6"), doc("7")])
    assert out[2][0] is False or bad == "0x1p-2"  # Go parses hex floats
    assert out[4][0] is True


def test_a_changed_comment_is_read_in_full():
    bad_type = HEAD.replace("counter", "countr")
    out, _ = _check([doc(), doc("2"), doc("3", head=bad_type), doc("4"), doc("5")])
    assert out[2][0] is False and "countr" in out[2][1]
    assert out[3][0] is True


def test_series_come_and_go():
    out, _ = _check([doc(), doc("2"), doc("3", extra="h 1\n"), doc("4", extra="h 2\n"),
                     doc("5"), doc("6"), doc("7", extra="h 3\n")])
    assert out[2][4] == 1 and out[4][5] == 1  # h added, then marked stale
    assert out[6][4] == 1  # forgotten by Prometheus' scrape cache after scrape 4


def test_layout_changes_that_keep_the_keys():
    out, _ = _check([doc(), doc("2"),
                     doc("3").replace(b"a_total{x=\"1\"} 3", b"a_total{x=\"1\"}  3"),
                     doc("4").replace(b"\n", b"\r\n"),
                     doc("5").replace(b"g 3", b"g\t5"),
                     doc("6") + b"\n\n",
                     doc("7")[:-1],
                     doc("8").replace(b"a_total{x=\"2\"} 5", b"a_total{x=\"2\"} 5 1700000000000"),
                     doc("9")])
    assert [o[0] for o in out] == [True, True, True, False, True, True, True, True, True]
    assert "carriage return" in out[3][1]  # two blanks and a tab are fine


def test_duplicates_timestamps_and_openmetrics_stay_on_the_full_path():
    twice = doc() + b"g 9\n"
    stamped = doc().replace(b"g 3", b"g 3 1700000000500")
    om = (b"# TYPE a counter\na_total 1\n# EOF\n", "application/openmetrics-text; version=1.0.0")
    out, fast = _check([twice, twice, stamped, stamped, om, om, doc(), doc("2"), doc("3")])
    assert fast == 2  # only the last two


def _job_settings(yaml_job: str, **limits: int) -> loop.ScrapeSettings:
    cfg = config.load_string(
        f"scrape_configs:\n  - job_name: j\n    static_configs: [{{targets: ['x:1']}}]\n"
        f"{yaml_job}", "t.yml", None)
    sc = cfg.scrape_configs[0]
    return loop.ScrapeSettings(metric_relabel=list(sc.metric_relabel_configs), **limits)


def test_metric_relabeling_drops_in_the_steady_state():
    drop_one = _job_settings("    metric_relabel_configs:\n"
                             "      - {source_labels: [x], regex: '2', action: drop}\n")
    out, fast = _check([doc(), doc("5", "6", "7"), doc("8", "9", "10")], drop_one)
    assert fast == 2
    assert [v for _, v, _ in out[2][6]] == ["8.0", "10.0"] and out[2][3] == 2
    keep_one = _job_settings("    metric_relabel_configs:\n"
                             "      - {source_labels: [__name__], regex: g, action: keep}\n")
    out, fast = _check([doc(), doc("5", "6", "7")], keep_one)
    assert fast == 1 and [v for _, v, _ in out[1][6]] == ["7.0"]
    drop_all = _job_settings("    metric_relabel_configs:\n"
                             "      - {source_labels: [__name__], regex: '.*', action: drop}\n")
    out, fast = _check([doc(), doc("5", "6", "7")], drop_all)
    assert fast == 1 and out[1][6] == [] and out[1][2] == 3 and out[1][3] == 0


def test_sample_limit_in_the_steady_state():
    out, fast = _check([doc(), doc("2"), doc("3")], loop.ScrapeSettings(sample_limit=3))
    assert fast == 2 and all(o[0] for o in out)
    out, _ = _check([doc(), doc("2")], loop.ScrapeSettings(sample_limit=2))
    assert [o[0] for o in out] == [False, False]
