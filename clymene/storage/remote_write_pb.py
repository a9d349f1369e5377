"""Prometheus remote write 1.0 `WriteRequest`, encoded and decoded by hand.

Hand-written because encoding is the hot path of every write: no message objects,
just bytes. Field numbers are those of prometheus/prompb (types.proto, remote.proto):

    WriteRequest { repeated TimeSeries timeseries = 1; repeated MetricMetadata metadata = 3; }
    TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2;
                   repeated Exemplar exemplars = 3; repeated Histogram histograms = 4; }
    Label        { string name = 1; string value = 2; }
    Sample       { double value = 1; int64 timestamp = 2; }

The encoder writes exactly what the official protobuf runtime writes for the same
message (proto3: fields in number order, default values left out; a double is left out
only when all its bits are zero, so -0.0 and every NaN payload travel as they are).
The body of a remote write request is this message compressed with snappy's block
format (`compress` / `decompress` here).
"""

from __future__ import annotations

import struct
from array import array
from itertools import accumulate, chain, repeat
from operator import itemgetter

import cramjam

try:
    from clymene import _speedups  # built by `pip install`; see clymene/_speedups.c
except ImportError:  # a source tree without the build: the Python path alone
    _speedups = None

Labels = tuple[tuple[str, str], ...]
Sample = tuple[Labels, float, int]

_U64 = (1 << 64) - 1
_ZERO8 = b"\x00" * 8
_SMALL = [bytes((i,)) for i in range(128)]
_pack_double = struct.Struct("<d").pack
_unpack_double = struct.Struct("<d").unpack_from

# Encoded `labels` fields of a TimeSeries per Labels tuple: the same series come back
# every scrape, so their bytes are built once. Cleared when it grows past the bound.
_label_cache: dict[Labels, bytes] = {}
_id_cache: dict[int, tuple[Labels, bytes]] = {}
# Per sample length: id(labels) -> (labels, the TimeSeries bytes up to the value's
# 8 bytes, value tag included). An entry holds its tuple, so no other object can have
# that id while the entry exists.
_head_cache: dict[int, dict[int, tuple[Labels, bytes]]] = {}
LABEL_CACHE_MAX = 200_000
# A target's scrape batch holds the same labels tuples in the same order at every scrape
# (the scrape cache hands them over), so its TimeSeries heads are kept in that order in
# one buffer: encoding then reads them front to back instead of looking each up (a
# lookup in a large dict misses the CPU caches, and a farm's scrapes start cold).
# (id of the first labels, samples, timestamp bytes) -> (labels list, heads, uint32 ends);
# an entry holds its labels, so no other tuple can have that id meanwhile.
_runs: dict[tuple[int, int, int], tuple[list[Labels], bytes, bytes]] = {}
RUN_CACHE_MAX = 20_000
_HEAD = itemgetter(1)


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field_bytes(tag: bytes, data: bytes) -> bytes:
    return tag + _varint(len(data)) + data


def _encode_labels(labels: Labels) -> bytes:
    parts = []
    for name, value in labels:
        label = b""
        if name:
            label = _field_bytes(b"\x0a", name.encode("utf-8"))
        if value:
            label += _field_bytes(b"\x12", value.encode("utf-8"))
        parts.append(_field_bytes(b"\x0a", label))
    encoded = b"".join(parts)
    if len(_label_cache) >= LABEL_CACHE_MAX:
        _label_cache.clear()
    _label_cache[labels] = encoded
    return encoded


def _labels_bytes(labels: Labels) -> bytes:
    """Encoded labels, found by the tuple's identity first (scrape caches hand the same
    tuple object over every scrape), then by value."""
    entry = _id_cache.get(id(labels))
    if entry is not None and entry[0] is labels:
        return entry[1]
    lb = _label_cache.get(labels)
    if lb is None:
        lb = _encode_labels(labels)
    if len(_id_cache) >= LABEL_CACHE_MAX:
        _id_cache.clear()
    # The entry holds the tuple, so its id cannot be reused while the entry exists.
    _id_cache[id(labels)] = (labels, lb)
    return lb


def encode_write_request(batch: list[Sample]) -> bytes:
    """Serialize a batch as a `WriteRequest`: one TimeSeries per distinct labels (in
    order of first appearance), holding that series' samples in batch order."""
    if not batch:
        return b""
    fast = _encode_known(batch)
    if fast is not None:
        return fast
    if len({s[0] for s in batch}) == len(batch):
        return _encode_each(batch)
    return _encode_grouped(batch)


def _series_head(lb: bytes, inner_len: int) -> bytes:
    """The bytes of a TimeSeries up to its one sample's payload: tag, length, labels,
    sample tag and sample length."""
    n = len(lb) + inner_len + 2
    return b"\x0a" + _varint(n) + lb + b"\x12" + _SMALL[inner_len]


def _encode_known(batch: list[Sample]) -> bytes | None:
    """The usual scrape batch, without a step per sample in Python: one timestamp, every
    labels once and every labels tuple seen before (its TimeSeries head cached by the
    tuple's identity). Equal heads mean equal labels, and bytes keep their hash, so a
    set of the heads finds a labels twice cheaply. None when the batch is not of that
    kind. A zero value, which proto3 leaves out, gets a head of its own."""
    ts = batch[0][2]
    ts_bytes = b"\x10" + _varint(ts & _U64) if ts else b""
    heads = _head_cache.get(9 + len(ts_bytes))
    if heads is None:
        return None
    if _speedups is not None:
        # The loop below, in C; first as a run (see _runs) when the batch is one.
        key = (id(batch[0][0]), len(batch), len(ts_bytes))
        run = _runs.get(key)
        if run is not None:
            encoded = _speedups.encode_run(batch, run[0], run[1], run[2], ts, ts_bytes)
            if encoded is not None:
                return encoded
        encoded = _speedups.encode_known(batch, heads, ts, ts_bytes)
        if encoded is not None:
            _remember_run(key, batch, heads)
        return encoded
    labels_col, values, stamps = zip(*batch, strict=True)
    if stamps.count(ts) != len(stamps):
        return None
    try:
        entries = list(map(heads.__getitem__, map(id, labels_col)))
    except KeyError:
        return None
    head_col = list(map(_HEAD, entries))
    if len(set(head_col)) != len(head_col):
        return None
    value_col = list(map(_pack_double, values))
    if 0.0 in values:
        _leave_zeros_out(values, labels_col, head_col, value_col, len(ts_bytes))
    return b"".join(chain.from_iterable(zip(head_col, value_col, repeat(ts_bytes))))


def _remember_run(key: tuple[int, int, int], batch: list[Sample],
                  heads: dict[int, tuple[Labels, bytes]]) -> None:
    labels = [sample[0] for sample in batch]
    run_heads = [heads[id(lb)][1] for lb in labels]
    if len(_runs) >= RUN_CACHE_MAX:
        _runs.clear()
    _runs[key] = (labels, b"".join(run_heads),
                  array("I", accumulate(map(len, run_heads))).tobytes())


def _leave_zeros_out(values: tuple[float, ...], labels_col: tuple[Labels, ...],
                     head_col: list[bytes], value_col: list[bytes], ts_len: int) -> None:
    i = -1
    try:
        while True:
            i = values.index(0.0, i + 1)
            if value_col[i] == _ZERO8:  # not -0.0
                head_col[i] = _series_head(_labels_bytes(labels_col[i]), ts_len)
                value_col[i] = b""
    except ValueError:
        return


def _encode_each(batch: list[Sample]) -> bytes:
    """One TimeSeries per sample (every labels once), caching each series' head."""
    out: list[bytes] = []
    append = out.append
    last_ts: int | None = None
    ts_bytes = b""
    pack = _pack_double
    heads: dict[int, tuple[Labels, bytes]] = {}
    for labels, value, ts in batch:
        if ts != last_ts:
            last_ts = ts
            ts_bytes = b"\x10" + _varint(ts & _U64) if ts else b""
            full = 9 + len(ts_bytes)
            heads = _head_cache.setdefault(full, {})
        entry = heads.get(id(labels))
        if entry is None:
            if len(heads) >= LABEL_CACHE_MAX:
                heads.clear()
            entry = heads[id(labels)] = (labels,
                                         _series_head(_labels_bytes(labels), full) + b"\x09")
        vb = pack(value)
        if vb == _ZERO8:  # proto3 leaves a zero double out
            append(_series_head(_labels_bytes(labels), len(ts_bytes)) + ts_bytes)
        else:
            append(entry[1] + vb + ts_bytes)
    return b"".join(out)


def _encode_grouped(batch: list[Sample]) -> bytes:
    groups: dict[Labels, list[bytes]] = {}
    last_ts: int | None = None
    ts_bytes = b""
    small = _SMALL
    pack = _pack_double
    for labels, value, ts in batch:
        if ts != last_ts:
            last_ts = ts
            ts_bytes = b"\x10" + _varint(ts & _U64) if ts else b""
        vb = pack(value)
        inner = ts_bytes if vb == _ZERO8 else b"\x09" + vb + ts_bytes
        sample = b"\x12" + small[len(inner)] + inner  # at most 20 bytes
        group = groups.get(labels)
        if group is None:
            groups[labels] = [sample]
        else:
            group.append(sample)

    parts: list[bytes] = []
    append = parts.append
    for labels, samples in groups.items():
        lb = _labels_bytes(labels)
        joined = samples[0] if len(samples) == 1 else b"".join(samples)
        append(b"\x0a" + _varint(len(lb) + len(joined)))
        append(lb)
        append(joined)
    return b"".join(parts)


def compress(data: bytes) -> bytes:
    """Snappy block format, as remote write bodies use."""
    return bytes(cramjam.snappy.compress_raw(data))


def decompress(data: bytes) -> bytes:
    return bytes(cramjam.snappy.decompress_raw(data))


def snappy_length(data: bytes) -> int:
    """The uncompressed length a snappy block announces (its leading varint), read
    before decompressing to refuse an oversized body; ValueError when it is corrupt."""
    result = shift = 0
    for i in range(min(len(data), 10)):
        b = data[i]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result
        shift += 7
    raise ValueError("snappy: corrupt length header")


# ---------------------------------------------------------------- decoding


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    b = data[pos]
    pos += 1
    if b < 0x80:
        return b, pos
    result = b & 0x7F
    shift = 7
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _U64, pos
        shift += 7
        if shift >= 70:
            raise ValueError(f"varint longer than 10 bytes at offset {pos}")


def _skip(data: bytes, pos: int, end: int, key: int) -> int:
    """Skip the value of an unknown (or unexpected) field; return the new position."""
    wire_type = key & 7
    if key < 8:
        raise ValueError(f"invalid field number 0 at offset {pos}")
    if wire_type == 0:
        _, pos = _read_varint(data, pos)
    elif wire_type == 1:
        pos += 8
    elif wire_type == 2:
        length, pos = _read_varint(data, pos)
        pos += length
    elif wire_type == 5:
        pos += 4
    elif wire_type == 3:
        # A (deprecated) group: skip fields until its matching end-group tag.
        field = key >> 3
        while True:
            if pos >= end:
                raise ValueError(f"unterminated group of field {field}")
            inner, pos = _read_varint(data, pos)
            if inner & 7 == 4:
                if inner >> 3 != field:
                    raise ValueError(f"mismatched end group at offset {pos}")
                break
            pos = _skip(data, pos, end, inner)
    else:
        raise ValueError(f"invalid wire type {wire_type} at offset {pos}")
    if pos > end:
        raise ValueError(f"field runs past the end of its message at offset {pos}")
    return pos


def _decode_label(data: bytes, pos: int, end: int) -> tuple[str, str]:
    name = value = ""
    while pos < end:
        key, pos = _read_varint(data, pos)
        if key == 0x0A or key == 0x12:
            length, pos = _read_varint(data, pos)
            stop = pos + length
            if stop > end:
                raise ValueError(f"label string runs past its message at offset {pos}")
            text = data[pos:stop].decode("utf-8")
            if key == 0x0A:
                name = text
            else:
                value = text
            pos = stop
        else:
            pos = _skip(data, pos, end, key)
    return name, value


def _decode_sample(data: bytes, pos: int, end: int) -> tuple[float, int]:
    value = 0.0
    ts = 0
    while pos < end:
        key, pos = _read_varint(data, pos)
        if key == 0x09:
            if pos + 8 > end:
                raise ValueError(f"sample value runs past its message at offset {pos}")
            value = _unpack_double(data, pos)[0]
            pos += 8
        elif key == 0x10:
            ts, pos = _read_varint(data, pos)
            if ts > 0x7FFFFFFFFFFFFFFF:
                ts -= 1 << 64
        else:
            pos = _skip(data, pos, end, key)
    if pos != end:
        raise ValueError(f"sample runs past its message at offset {pos}")
    return value, ts


def _decode_series(data: bytes, pos: int, end: int) -> tuple[Labels, list[tuple[float, int]]]:
    labels: list[tuple[str, str]] = []
    samples: list[tuple[float, int]] = []
    while pos < end:
        key, pos = _read_varint(data, pos)
        if key == 0x0A or key == 0x12:
            length, pos = _read_varint(data, pos)
            stop = pos + length
            if stop > end:
                raise ValueError(f"field runs past its time series at offset {pos}")
            if key == 0x0A:
                labels.append(_decode_label(data, pos, stop))
            else:
                samples.append(_decode_sample(data, pos, stop))
            pos = stop
        else:
            pos = _skip(data, pos, end, key)
    if pos != end:
        raise ValueError(f"time series runs past its message at offset {pos}")
    # Senders sort labels by name (Prometheus does); sort only when one did not.
    for i in range(1, len(labels)):
        if labels[i][0] < labels[i - 1][0]:
            labels.sort(key=lambda pair: pair[0])
            break
    return tuple(labels), samples


def decode_write_request(data: bytes) -> list[tuple[Labels, list[tuple[float, int]]]]:
    """Parse an (uncompressed) `WriteRequest`: `(labels, [(value, timestamp_ms), ...])`
    per time series, in message order. Labels come back sorted by name. Unknown fields
    (metadata, exemplars, histograms, anything newer) are skipped. Raises ValueError on
    bytes that are not a valid message."""
    data = bytes(data)
    series: list[tuple[Labels, list[tuple[float, int]]]] = []
    pos = 0
    end = len(data)
    try:
        while pos < end:
            key, pos = _read_varint(data, pos)
            if key == 0x0A:
                length, pos = _read_varint(data, pos)
                stop = pos + length
                if stop > end:
                    raise ValueError(f"time series runs past the end at offset {pos}")
                series.append(_decode_series(data, pos, stop))
                pos = stop
            else:
                pos = _skip(data, pos, end, key)
    except IndexError:
        raise ValueError("truncated remote write message") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"label is not valid UTF-8: {exc.object[exc.start : exc.end]!r}") from None
    if pos != end:
        raise ValueError("truncated remote write message")
    return series
