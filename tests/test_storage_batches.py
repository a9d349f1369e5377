"""The batches every storage backend test writes and reads back (plus checks of them).

`tricky_batch(t0)`: plain series, labels with spaces, commas, equals signs, quotes,
backslashes (also trailing and before a comma), newlines, Unicode (Korean, emoji),
`=` and spaces in label *names* is impossible in Prometheus, so names stay valid; NaN,
±Inf and a staleness marker; a series with 20 labels. `many_series(n, t0)`: n plain
series. Timestamps are near t0 (ms), so Prometheus accepts them.
"""

from __future__ import annotations

import math
import struct

STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]

TRICKY_VALUES = [
    "with space",
    "a,b,c",
    "x=y=z",
    'say "hi"',
    "back\\slash",
    "two\\\\slashes",
    "trailing\\",
    "slash\\,comma",
    "한국어 라벨",
    "서울",
    "emoji 😀 ok",
    "tab\tand\nnewline",
    "'single'",
    "a:b;c|d/e.f-g_h",
]


def labels(name: str, **extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"__name__": name, **extra}.items()))


def tricky_batch(t0: int) -> list:
    """(labels, value, ts) samples; see the module doc."""
    batch = []
    for i in range(3):
        batch.append((labels("plain_metric", job="j", instance="host:9100"), float(i), t0 + i))
    for i, value in enumerate(TRICKY_VALUES):
        batch.append((labels("tricky_metric", job="j", kind=value, idx=str(i)),
                      0.5 + i, t0 + 10 + i))
    specials = [("nan", math.nan), ("pinf", math.inf), ("ninf", -math.inf), ("stale", STALE),
                ("big", 1.5e300), ("tiny", -2.5e-300), ("neg", -42.0), ("zero", 0.0)]
    for i, (case, value) in enumerate(specials):
        batch.append((labels("special_metric", job="j", case=case), value, t0 + 100 + i))
    wide = {f"label_{i:02d}": f"v{i}" for i in range(20)}
    batch.append((labels("wide_metric", **wide), 7.0, t0 + 200))
    batch.append((labels("colon:metric", job="j"), 1.0, t0 + 300))
    return batch


def many_series(n: int, t0: int) -> list:
    return [(labels("many_series_metric", job="bulk", series=str(i), pod=f"pod-{i % 97}"),
             float(i), t0) for i in range(n)]


def is_stale(value: float) -> bool:
    return math.isnan(value) and struct.pack("<d", value) == struct.pack("<d", STALE)


def test_tricky_batch_shape():
    batch = tricky_batch(1_700_000_000_000)
    for lbls, _, _ in batch:
        assert list(lbls) == sorted(lbls)
        assert all(v for _, v in lbls)
    assert len({lbls for lbls, _, _ in batch}) == len(batch) - 2  # plain_metric thrice
    assert sum(1 for _, v, _ in batch if is_stale(v)) == 1
    assert len(many_series(10_000, 0)) == 10_000
