"""Kafka message bodies and keys.

A message holds at most `split` series of one target, in one of the original Clymene's
encodings:
- `protobuf`: the snappy-compressed remote-write `WriteRequest`, byte for byte a remote
  write request body (an ingester could POST it as it is);
- `json`: the same message in the protobuf JSON mapping the original wrote with
  gogo's jsonpb: `{"timeseries":[{"labels":[{"name":..,"value":..}],"samples":[{"value":1,
  "timestamp":"1700000000000"}]}]}` (int64 as a string, NaN/Infinity as strings, zero
  values left out). JSON cannot carry a NaN's payload, so staleness markers decode as a
  plain NaN; use protobuf to keep them.

The key is the target: the values of the `cluster`, `job` and `instance` labels, so that
all of a target's messages land in one partition, in order.
"""

from __future__ import annotations

import json
import math
import struct

from clymene.storage.remote_write_pb import (
    compress,
    decode_write_request,
    decompress,
    encode_write_request,
)

Labels = tuple[tuple[str, str], ...]
Sample = tuple[Labels, float, int]

ENCODINGS = ("protobuf", "json")
_KEY_LABELS = ("cluster", "instance", "job")  # sorted, like the labels themselves

# Key per labels tuple, found by identity first: a scrape hands the same tuples over on
# every scrape. The entry holds the tuple so its id cannot be reused while it exists.
_key_cache: dict[int, tuple[Labels, bytes]] = {}
_KEY_CACHE_MAX = 200_000


def check_encoding(encoding: str, where: str) -> str:
    value = encoding.strip().lower()
    if value not in ENCODINGS:
        raise ValueError(f"{where}: unknown encoding {encoding!r}; use protobuf or json")
    return value


def target_key(labels: Labels) -> bytes:
    """`cluster/job/instance` of a series (empty parts when a label is missing)."""
    entry = _key_cache.get(id(labels))
    if entry is not None and entry[0] is labels:
        return entry[1]
    found = {n: v for n, v in labels if n in _KEY_LABELS}
    key = f"{found.get('cluster', '')}/{found.get('job', '')}/{found.get('instance', '')}"
    key_bytes = key.encode("utf-8")
    if len(_key_cache) >= _KEY_CACHE_MAX:
        _key_cache.clear()
    _key_cache[id(labels)] = (labels, key_bytes)
    return key_bytes


def split_by_target(batch: list[Sample], split: int) -> list[tuple[bytes, list[Sample]]]:
    """Group a batch by target key (in order of first appearance, samples in batch order)
    and cut each group into chunks of at most `split` series. A series' samples stay in
    one chunk, so no series is cut at a boundary and none is lost."""
    if split < 1:
        raise ValueError(f"--metric.split.length must be at least 1, got {split}")
    groups: dict[bytes, list[Sample]] = {}
    for sample in batch:
        key = target_key(sample[0])
        group = groups.get(key)
        if group is None:
            groups[key] = [sample]
        else:
            group.append(sample)
    out: list[tuple[bytes, list[Sample]]] = []
    for key, samples in groups.items():
        for chunk in _chunks(samples, split):
            out.append((key, chunk))
    return out


def _chunks(samples: list[Sample], split: int) -> list[list[Sample]]:
    if len(samples) <= split:
        return [samples]
    if len({s[0] for s in samples}) == len(samples):  # one sample per series: slices
        return [samples[i : i + split] for i in range(0, len(samples), split)]
    series: dict[Labels, list[Sample]] = {}
    for sample in samples:
        series.setdefault(sample[0], []).append(sample)
    groups = list(series.values())
    return [[s for g in groups[i : i + split] for s in g] for i in range(0, len(groups), split)]


def encode(samples: list[Sample], encoding: str) -> bytes:
    if encoding == "protobuf":
        return compress(encode_write_request(samples))
    return encode_json(samples)


def decode(value: bytes, encoding: str) -> list[Sample]:
    """The samples of a message; ValueError when it is not a valid message."""
    if encoding == "protobuf":
        try:
            raw = decompress(value)
        except Exception as exc:  # cramjam raises its own error type
            raise ValueError(f"not snappy-compressed: {exc}") from None
        return [(labels, v, ts) for labels, samples in decode_write_request(raw)
                for v, ts in samples]
    return decode_json(value)


# ---------------------------------------------------------------- JSON (jsonpb)


def _json_double(value: float) -> object:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


_pack = struct.Struct("<d").pack


def encode_json(samples: list[Sample]) -> bytes:
    series: dict[Labels, list[dict]] = {}
    for labels, value, ts in samples:
        sample: dict[str, object] = {}
        if _pack(value) != b"\x00" * 8:
            sample["value"] = _json_double(value)
        if ts:
            sample["timestamp"] = str(ts)
        series.setdefault(labels, []).append(sample)
    out = []
    for labels, points in series.items():
        pairs = []
        for name, value in labels:
            pair = {}
            if name:
                pair["name"] = name
            if value:
                pair["value"] = value
            pairs.append(pair)
        out.append({"labels": pairs, "samples": points})
    return json.dumps({"timeseries": out}, separators=(",", ":")).encode()


def _parse_double(raw: object, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValueError(f"{where}: value must be a number, got {raw!r}")
    try:
        return float(raw)  # "NaN", "Infinity", "-Infinity" and numeric strings too
    except ValueError:
        raise ValueError(f"{where}: value must be a number, got {raw!r}") from None


def decode_json(value: bytes) -> list[Sample]:
    try:
        doc = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("timeseries", []), list):
        raise ValueError('not a WriteRequest: expected {"timeseries": [...]}')
    batch: list[Sample] = []
    for i, ts in enumerate(doc.get("timeseries", [])):
        where = f"timeseries[{i}]"
        if not isinstance(ts, dict):
            raise ValueError(f"{where}: must be an object")
        pairs = []
        for j, pair in enumerate(ts.get("labels", [])):
            if not isinstance(pair, dict):
                raise ValueError(f"{where}.labels[{j}]: must be an object")
            name, val = pair.get("name", ""), pair.get("value", "")
            if not isinstance(name, str) or not isinstance(val, str):
                raise ValueError(f"{where}.labels[{j}]: name and value must be strings")
            pairs.append((name, val))
        pairs.sort(key=lambda p: p[0])
        labels = tuple(pairs)
        for j, point in enumerate(ts.get("samples", [])):
            if not isinstance(point, dict):
                raise ValueError(f"{where}.samples[{j}]: must be an object")
            v = _parse_double(point.get("value", 0), f"{where}.samples[{j}]")
            raw_ts = point.get("timestamp", 0)
            try:
                t = int(raw_ts)
            except (TypeError, ValueError):
                raise ValueError(f"{where}.samples[{j}]: timestamp must be an integer, "
                                 f"got {raw_ts!r}") from None
            batch.append((labels, v, t))
    return batch
