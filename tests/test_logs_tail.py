"""FileTail (rotation, truncation, deletion, identity), the positions file, and the
agent's rule that positions move only after the output accepted the lines."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from clymene.logs import config as log_config
from clymene.logs.agent import Agent
from clymene.logs.positions import Positions, PositionsError, read_positions
from clymene.logs.tail import FileTail, is_compressed


def lines_of(tail: FileTail) -> list[str]:
    """Read until two reads in a row give nothing (rotation and truncation are noticed
    on a read that finds the end; the next read goes on in the new file)."""
    out: list[str] = []
    empty = 0
    while empty < 2:
        lines, _ = tail.read()
        empty = 0 if lines else empty + 1
        out.extend(lines)
    return out


def test_reads_whole_lines_with_their_offsets(tmp_path):
    p = tmp_path / "a.log"
    p.write_bytes(b"one\ntw\xc3\xa9\nunfinish")
    t = FileTail(str(p), {}, 0)
    t.open_at(None)
    lines, starts = t.read()
    assert (lines, starts) == (["one", "twé"], [0, 4])
    assert t.position()[0] == 9
    with open(p, "ab") as f:
        f.write(b"ed\n")
    assert t.read() == (["unfinished"], [9])
    st = os.stat(p)
    assert t.position() == (20, st.st_dev, st.st_ino)


def test_rename_and_create_reads_the_old_file_to_its_end_first(tmp_path):
    p = tmp_path / "0.log"
    p.write_text("a1\na2\n")
    t = FileTail(str(p), {}, 0)
    t.open_at(None)
    assert lines_of(t) == ["a1", "a2"]
    with open(p, "a") as f:
        f.write("a3\n")  # not read yet when the file is rotated
    os.rename(p, tmp_path / "0.log.20240101-000000")
    p.write_text("b1\n")
    assert lines_of(t) == ["a3", "b1"]
    assert t.rotations == 1 and len(t.handles) == 1
    assert t.position() == (3, os.stat(p).st_dev, os.stat(p).st_ino)


def test_copytruncate_starts_again_from_the_top(tmp_path):
    p = tmp_path / "0.log"
    p.write_text("a1\na2\n")
    t = FileTail(str(p), {}, 0)
    t.open_at(None)
    assert lines_of(t) == ["a1", "a2"]
    os.truncate(p, 0)
    with open(p, "a") as f:
        f.write("b\n")
    assert lines_of(t) == ["b"]
    assert t.truncations == 1


def test_deleted_while_open_is_read_to_its_end(tmp_path):
    p = tmp_path / "0.log"
    p.write_text("a1\n")
    t = FileTail(str(p), {}, 0)
    t.open_at(None)
    with open(p, "a") as f:
        f.write("a2\nlast-without-newline")
    os.unlink(p)
    assert lines_of(t) == ["a1", "a2", "last-without-newline"]
    assert t.done and t.handles == []


def test_restart_after_rotation_while_down_finishes_the_old_file(tmp_path):
    p = tmp_path / "0.log"
    p.write_text("a1\na2\na3\n")
    st = os.stat(p)
    saved = (3, st.st_dev, st.st_ino)  # "a1" was delivered before the stop
    os.rename(p, tmp_path / "0.log.20240101-000000")
    p.write_text("b1\n")
    t = FileTail(str(p), {}, 0)
    t.open_at(saved)
    assert lines_of(t) == ["a2", "a3", "b1"]
    # the same path with the saved identity: resume; with a smaller size: from the top
    t2 = FileTail(str(p), {}, 0)
    st = os.stat(p)
    t2.open_at((3, st.st_dev, st.st_ino))
    assert lines_of(t2) == []
    t3 = FileTail(str(p), {}, 0)
    t3.open_at((100, st.st_dev, st.st_ino))
    assert lines_of(t3) == ["b1"]


def test_compressed_names():
    assert is_compressed("/x/0.log.20240101-000000.gz")
    assert is_compressed("/x/0.log.ZST")
    assert not is_compressed("/x/0.log")


def test_positions_file_is_written_atomically_and_read_back(tmp_path):
    f = tmp_path / "sub" / "positions.yaml"
    pos = Positions(str(f))
    pos.update({"/a.log": (10, 1, 2)})
    pos.save()
    assert json.loads(f.read_text()) == {"positions": {"/a.log": {"offset": 10, "dev": 1,
                                                                  "ino": 2}}}
    assert os.listdir(f.parent) == ["positions.yaml"]  # no temporary file left
    assert Positions(str(f)).get("/a.log") == (10, 1, 2)
    promtail = tmp_path / "promtail.yaml"
    promtail.write_text('positions:\n  /var/log/x.log: "1234"\n')
    assert read_positions(str(promtail)) == {"/var/log/x.log": (1234, 0, 0)}
    promtail.write_text("just text")
    with pytest.raises(PositionsError, match="missing 'positions'"):
        read_positions(str(promtail))


def test_positions_saved_from_two_threads_at_once(tmp_path):
    # The agent's reader and sender threads both save; they must not trip over one
    # temporary file, and the file must end with the newest offsets.
    f = tmp_path / "positions.yaml"
    pos = Positions(str(f))
    errors: list[BaseException] = []

    def saver(path: str) -> None:
        try:
            for offset in range(1, 301):
                pos.update({path: (offset, 1, 2)})
                pos.save()
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=saver, args=(f"/{n}.log",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert read_positions(str(f)) == {f"/{n}.log": (300, 1, 2) for n in range(4)}
    assert os.listdir(tmp_path) == ["positions.yaml"]


class GatedOutput:
    """Accepts a push only when allowed; records what it accepted."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.pushed: list[tuple[str, int, str]] = []

    def push(self, streams, tenant, stop=None):
        while not self.open.wait(0.05):
            if stop is not None and stop.is_set():
                from clymene.logs.loki import PushAborted
                raise PushAborted("stopped")
        for labels, entries in streams:
            self.pushed.extend((labels, ts, line) for ts, line in entries)
        return True

    def close(self) -> None:
        pass


def _config(tmp_path, stages: str) -> log_config.PromtailConfig:
    return log_config.load_string(f"""
positions: {{filename: {tmp_path}/pos.yaml, sync_period: 50ms}}
scrape_configs:
  - job_name: j
    static_configs: [{{labels: {{__path__: '{tmp_path}/*.log'}}}}]
    pipeline_stages: {stages}
""", "test.yml")


def _run_agent(agent: Agent) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    th = threading.Thread(target=agent.run, args=(stop,))
    th.start()
    return stop, th


def test_positions_move_only_after_the_output_accepted(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("2024-01-01T00:00:00Z stdout F one\n2024-01-01T00:00:01Z stdout P tw\n")
    out = GatedOutput()
    agent = Agent(_config(tmp_path, "[{cri: {}}]"), out, batch_wait=0.01)
    agent.stop_grace = 0.2
    stop, th = _run_agent(agent)
    def offset() -> int:
        return json.loads((tmp_path / "pos.yaml").read_text())["positions"][str(log)]["offset"]

    time.sleep(0.5)
    assert offset() == 0  # nothing accepted yet
    stop.set()
    th.join(5)
    assert out.pushed == [] and offset() == 0

    out.open.set()
    agent = Agent(_config(tmp_path, "[{cri: {}}]"), out, batch_wait=0.01)
    stop, th = _run_agent(agent)
    deadline = time.monotonic() + 5
    while not out.pushed and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    th.join(5)
    labels = f'{{filename="{log}", stream="stdout"}}'
    assert out.pushed == [(labels, 1704067200_000000000, "one")]
    # the partial line "tw" is held: the position stays at its start
    assert offset() == 34

    with open(log, "a") as f:
        f.write("2024-01-01T00:00:02Z stdout F o\n")
    agent = Agent(_config(tmp_path, "[{cri: {}}]"), out, batch_wait=0.01)
    stop, th = _run_agent(agent)
    deadline = time.monotonic() + 5
    while len(out.pushed) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    th.join(5)
    assert out.pushed[1:] == [(labels, 1704067201_000000000, "two")]
    assert offset() == os.path.getsize(log)


def test_a_rotated_file_the_glob_also_matches_is_not_read_twice(tmp_path):
    cfg = log_config.load_string(f"""
positions: {{filename: {tmp_path}/pos/pos.yaml, sync_period: 50ms}}
scrape_configs:
  - job_name: j
    static_configs: [{{labels: {{__path__: '{tmp_path}/logs/*'}}}}]
""", "test.yml")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("a1\na2\n")
    out = GatedOutput()
    out.open.set()
    agent = Agent(cfg, out, batch_wait=0.01)
    stop, th = _run_agent(agent)
    try:
        deadline = time.monotonic() + 5
        while len(out.pushed) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        with open(logs / "app.log", "a") as f:
            f.write("a3\n")
        os.rename(logs / "app.log", logs / "app.log.1")  # matched by the glob too
        (logs / "app.log").write_text("b1\n")
        while len(out.pushed) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.6)  # a few more file syncs: app.log.1 must not be read again
    finally:
        stop.set()
        th.join(5)
    assert sorted(line for _, _, line in out.pushed) == ["a1", "a2", "a3", "b1"]
    # restart: both paths known, nothing is read again
    out.pushed.clear()
    agent = Agent(cfg, out, batch_wait=0.01)
    stop, th = _run_agent(agent)
    time.sleep(0.6)
    stop.set()
    th.join(5)
    assert out.pushed == []


def test_clean_stop_while_the_output_is_down_does_not_hang(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("".join(f"line {i} {'x' * 100}\n" for i in range(20_000)))
    out = GatedOutput()  # never opens
    agent = Agent(_config(tmp_path, "[]"), out, batch_wait=0.01, batch_size=10_000)
    agent.stop_grace = 0.5
    stop, th = _run_agent(agent)
    time.sleep(0.5)  # the queue is full, the reader waits for the output
    assert agent.lines_read < 20_000
    started = time.monotonic()
    stop.set()
    th.join(10)
    assert not th.is_alive() and time.monotonic() - started < 3
    saved = json.loads((tmp_path / "pos.yaml").read_text())["positions"][str(log)]
    assert saved["offset"] == 0 and out.pushed == []


def test_copytruncate_noticed_even_after_the_file_grew_back(tmp_path):
    p = tmp_path / "0.log"
    p.write_text("old-1\nold-2\n")
    t = FileTail(str(p), {}, 0)
    t.open_at(None)
    assert lines_of(t) == ["old-1", "old-2"]
    os.truncate(p, 0)
    with open(p, "a") as f:
        f.write("new-1 longer than before\nnew-2\n")  # past the old offset already
    assert lines_of(t) == ["new-1 longer than before", "new-2"]
    assert t.truncations == 1


def test_renamed_without_a_successor_yet_is_kept(tmp_path):
    p = tmp_path / "0.log"
    p.write_text("a1\n")
    t = FileTail(str(p), {}, 0)
    t.open_at(None)
    assert lines_of(t) == ["a1"]
    os.rename(p, tmp_path / "0.log.1")
    assert lines_of(t) == [] and not t.done  # not taken for a deletion
    with open(tmp_path / "0.log.1", "a") as f:
        f.write("a2\n")  # the writer still had it open
    p.write_text("b1\n")
    assert lines_of(t) == ["a2", "b1"]


def test_tenants_go_in_separate_pushes_with_their_header(tmp_path):
    from clymene.logs.loki import LokiClient
    from tests.loki_receiver import LokiReceiver

    log = tmp_path / "a.log"
    log.write_text("team=a one\nteam=b two\nnone three\n")
    (tmp_path / "b.log").write_text("dropped: no label left\n")
    stages = ("[{regex: {expression: 'team=(?P<team>\\w+)'}}, "
              "{tenant: {source: team}}, "
              "{match: {selector: '{filename=~\".*/a[.]log\"}', "
              "stages: [{static_labels: {f: a}}]}}, {labeldrop: [filename]}]")
    rx = LokiReceiver()
    agent = Agent(_config(tmp_path, stages), LokiClient(rx.url, tenant="default"),
                  batch_wait=0.01)
    stop, th = _run_agent(agent)
    try:
        deadline = time.monotonic() + 5
        while rx.count() < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        th.join(5)
        rx.stop()
    assert [(t, len(v)) for (t, _), v in sorted(rx.entries.items())] == \
        [("a", 1), ("b", 1), ("default", 1)]
    assert rx.lines("a") == {'{f="a"}': [(rx.lines("a")['{f="a"}'][0][0], "team=a one")]}
    assert rx.lines("default")['{f="a"}'][0][1] == "none three"
    assert agent.dropped_no_labels == 1 and rx.violations == []


def test_limit_without_drop_waits():
    from tests.test_logs_stages import run

    started = time.monotonic()
    out, _ = run("- limit: {rate: 20, burst: 1}", ["a", "b", "c", "d", "e"])
    assert [line for _, line, _ in out] == ["a", "b", "c", "d", "e"]
    assert 0.15 < time.monotonic() - started < 1.0  # 4 lines over the burst at 20/s


def test_a_deleted_file_is_read_to_its_end_and_forgotten(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("one\n")
    out = GatedOutput()
    out.open.set()
    agent = Agent(_config(tmp_path, "[]"), out, batch_wait=0.01)
    stop, th = _run_agent(agent)
    try:
        deadline = time.monotonic() + 5
        while len(out.pushed) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        with open(log, "a") as f:
            f.write("two\nthree")
        os.unlink(log)
        while len(out.pushed) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.6)
    finally:
        stop.set()
        th.join(5)
    assert [line for _, _, line in out.pushed] == ["one", "two", "three"]
    assert json.loads((tmp_path / "pos.yaml").read_text())["positions"] == {}
    assert agent.tails == {}
