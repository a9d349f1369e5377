"""FileStorage: the JSON lines, special values, rotation, several writers at once."""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from clymene import stats
from clymene.storage import Storage
from clymene.storage.file import FileStorage

STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
DEADLINE = time.monotonic() + 3600


def read_lines(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_one_json_line_per_sample(tmp_path):
    stats.drain()
    storage = FileStorage(tmp_path)
    assert isinstance(storage, Storage) and storage.name == "file"
    up = (("__name__", "up"), ("instance", "a:9100"), ("job", "node"))
    odd = (("__name__", "odd"), ("path", 'C:\\x "q"\n'), ("zone", "東京"))
    storage.write([(up, 1.0, 1_700_000_000_000), (odd, -0.5, 5)], DEADLINE)
    storage.write([(up, 0.0, 1_700_000_015_000)], DEADLINE)
    storage.close()
    raw = (tmp_path / "samples.jsonl").read_text(encoding="utf-8")
    assert raw.splitlines()[0] == (
        '{"name":"up","labels":{"instance":"a:9100","job":"node"},'
        '"value":1.0,"timestamp":1700000000000}'
    )
    assert raw.endswith("\n")
    assert read_lines(tmp_path / "samples.jsonl") == [
        {
            "name": "up",
            "labels": {"instance": "a:9100", "job": "node"},
            "value": 1.0,
            "timestamp": 1700000000000,
        },
        {
            "name": "odd",
            "labels": {"path": 'C:\\x "q"\n', "zone": "東京"},
            "value": -0.5,
            "timestamp": 5,
        },
        {
            "name": "up",
            "labels": {"instance": "a:9100", "job": "node"},
            "value": 0.0,
            "timestamp": 1700000015000,
        },
    ]
    assert stats.drain() == {'clymene_storage_samples_written_total{storage="file"}': 3}


def test_special_values(tmp_path):
    storage = FileStorage(tmp_path)
    labels = (("__name__", "v"),)
    values = [
        math.nan,
        STALE,
        math.inf,
        -math.inf,
        -0.0,
        1e-300,
        1.7976931348623157e308,
        0.1 + 0.2,
        2.0**53 + 2,
    ]
    storage.write([(labels, v, i) for i, v in enumerate(values)], DEADLINE)
    storage.close()
    got = [line["value"] for line in read_lines(tmp_path / "samples.jsonl")]
    assert got[:4] == ["NaN", "stale", "+Inf", "-Inf"]
    assert [struct.pack("<d", v) for v in got[4:]] == [struct.pack("<d", v) for v in values[4:]]
    # Any other NaN payload is a plain NaN.
    other_nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0]
    storage = FileStorage(tmp_path)
    storage.write([(labels, other_nan, 99), (labels, -math.nan, 100)], DEADLINE)
    storage.close()
    assert [line["value"] for line in read_lines(tmp_path / "samples.jsonl")][-2:] == ["NaN", "NaN"]


def test_empty_batch_writes_nothing(tmp_path):
    storage = FileStorage(tmp_path)
    storage.write([], DEADLINE)
    storage.close()
    assert not (tmp_path / "samples.jsonl").exists()


def batch_of(k: int, n: int = 10):
    return [
        ((("__name__", "m"), ("batch", f"{k:04d}"), ("i", str(i))), float(i), k) for i in range(n)
    ]


def test_rotation_keeps_max_files(tmp_path):
    storage = FileStorage(tmp_path, max_bytes=1000, max_files=3)
    batch_size = len(storage.encode(batch_of(0, 5)))
    assert 340 < batch_size < 490  # two batches fit in a file, three do not
    for k in range(20):
        storage.write(batch_of(k, 5), DEADLINE)
    storage.close()
    names = sorted(os.listdir(tmp_path))
    assert names == ["samples.jsonl", "samples.jsonl.1", "samples.jsonl.2", "samples.jsonl.lock"]
    for name in names[:3]:
        assert os.path.getsize(tmp_path / name) <= 1000
    # Oldest to newest: .2, .1, live; together the last batches, in order, none missing.
    batches = [
        line["timestamp"]
        for name in ["samples.jsonl.2", "samples.jsonl.1", "samples.jsonl"]
        for line in read_lines(tmp_path / name)[::5]
    ]
    assert batches == list(range(14, 20))
    assert len(read_lines(tmp_path / "samples.jsonl.1")) == 2 * 5


def test_rotation_with_one_file_starts_over(tmp_path):
    storage = FileStorage(tmp_path, max_bytes=500, max_files=1)
    for k in range(5):
        storage.write(batch_of(k, 3), DEADLINE)
    storage.close()
    assert sorted(os.listdir(tmp_path)) == ["samples.jsonl", "samples.jsonl.lock"]
    assert {line["timestamp"] for line in read_lines(tmp_path / "samples.jsonl")} == {4}


def test_batch_larger_than_max_bytes_is_written_whole(tmp_path):
    storage = FileStorage(tmp_path, max_bytes=100, max_files=5)
    storage.write(batch_of(1, 20), DEADLINE)
    storage.write(batch_of(2, 20), DEADLINE)
    storage.close()
    assert [line["timestamp"] for line in read_lines(tmp_path / "samples.jsonl.1")] == [1] * 20
    assert [line["timestamp"] for line in read_lines(tmp_path / "samples.jsonl")] == [2] * 20


def test_reopens_after_another_writer_rotated(tmp_path):
    a = FileStorage(tmp_path, max_bytes=2000, max_files=10)
    b = FileStorage(tmp_path, max_bytes=2000, max_files=10)
    a.write(batch_of(0, 3), DEADLINE)
    for k in range(1, 10):
        b.write(batch_of(k, 3), DEADLINE)
    a.write(batch_of(10, 3), DEADLINE)  # after b rotated: must land in the live file
    a.close()
    b.close()
    assert read_lines(tmp_path / "samples.jsonl")[-1]["timestamp"] == 10


@pytest.mark.parametrize("kwargs", [{"max_bytes": 0}, {"max_files": 0}])
def test_bad_limits(tmp_path, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        FileStorage(tmp_path, **kwargs)


WRITER = textwrap.dedent(
    """
    import sys, time
    from clymene.storage.file import FileStorage
    directory, who = sys.argv[1], sys.argv[2]
    storage = FileStorage(directory, max_bytes=20_000, max_files=10_000)
    for k in range(300):
        batch = [((("__name__", "m"), ("i", str(i)), ("k", str(k)), ("who", who)), float(i), k)
                 for i in range(10)]
        storage.write(batch, time.monotonic() + 60)
    storage.close()
    """
)


def test_two_processes_and_threads_appending_lose_nothing(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), who], env=env)
        for who in ("p1", "p2")
    ]
    # A third writer in this process, in two threads sharing one storage.
    local = FileStorage(tmp_path, max_bytes=20_000, max_files=10_000)

    def write(who):
        for k in range(150):
            batch = [
                ((("__name__", "m"), ("i", str(i)), ("k", str(k)), ("who", who)), float(i), k)
                for i in range(10)
            ]
            local.write(batch, DEADLINE)

    threads = [threading.Thread(target=write, args=(w,)) for w in ("t1", "t2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        assert p.wait(timeout=60) == 0
    local.close()

    seen = []
    files = [
        n
        for n in os.listdir(tmp_path)
        if n.startswith("samples.jsonl") and n != "samples.jsonl.lock"
    ]
    assert len(files) > 10  # rotation happened many times while all wrote
    for name in files:
        assert os.path.getsize(tmp_path / name) <= 20_000
        for line in read_lines(tmp_path / name):
            labels = line["labels"]
            seen.append((labels["who"], int(labels["k"]), int(labels["i"])))
    expected = [(w, k, i) for w in ("p1", "p2") for k in range(300) for i in range(10)]
    expected += [(w, k, i) for w in ("t1", "t2") for k in range(150) for i in range(10)]
    assert sorted(seen) == sorted(expected)
    # Each batch is contiguous in one file, and each writer's batches are in order.
    for name in files:
        lines = read_lines(tmp_path / name)
        for start in range(0, len(lines), 10):
            chunk = lines[start : start + 10]
            assert [int(x["labels"]["i"]) for x in chunk] == list(range(10))
            assert len({(x["labels"]["who"], x["labels"]["k"]) for x in chunk}) == 1
