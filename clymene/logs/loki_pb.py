"""Loki push API `logproto.PushRequest`, encoded and decoded by hand (no protobuf runtime).

Field numbers are those of grafana/loki pkg/push/push.proto:

    PushRequest   { repeated StreamAdapter streams = 1; }
    StreamAdapter { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }
    EntryAdapter  { Timestamp timestamp = 1; string line = 2;
                    repeated LabelPairAdapter structuredMetadata = 3; }
    Timestamp     { int64 seconds = 1; int32 nanos = 2; }   (google.protobuf)

`labels` is the stream's label set in Prometheus text form: `{a="b", c="d"}`. The body of
a push request is the message compressed with snappy's block format; the JSON form is
`{"streams": [{"stream": {...}, "values": [["<ns>", "<line>"], ...]}]}`.
"""

from __future__ import annotations

import json

import cramjam

# The same protobuf wire helpers as remote write's encoder.
from clymene.storage.remote_write_pb import _SMALL, _U64, _varint

# A stream: (labels text, [(timestamp_ns, line), ...])
Stream = tuple[str, list[tuple[int, str]]]

def encode_push_request(streams: list[Stream]) -> bytes:
    """Serialize streams (in the given order, entries in list order) as a PushRequest."""
    parts: list[bytes] = []
    append = parts.append
    last_sec = -1
    sec_bytes = b""
    for labels, entries in streams:
        body: list[bytes] = []
        lb = labels.encode("utf-8")
        size = 0
        if lb:
            head = b"\x0a" + _varint(len(lb))
            body.append(head)
            body.append(lb)
            size += len(head) + len(lb)
        for ns, line in entries:
            seconds, nanos = divmod(ns, 1_000_000_000)
            if seconds != last_sec:
                last_sec = seconds
                sec_bytes = b"\x08" + _varint(seconds & _U64) if seconds else b""
            ts = sec_bytes + b"\x10" + _varint(nanos) if nanos else sec_bytes
            raw = line.encode("utf-8")
            # Loki's Go code writes the timestamp (a non-nullable field) even when zero
            entry = b"\x0a" + _SMALL[len(ts)] + ts
            if raw:
                entry += b"\x12" + _varint(len(raw)) + raw
            chunk = b"\x12" + _varint(len(entry)) + entry
            body.append(chunk)
            size += len(chunk)
        append(b"\x0a" + _varint(size))
        parts.extend(body)
    return b"".join(parts)


def encode_push_json(streams: list[Stream]) -> bytes:
    """The JSON form of the push API."""
    out = []
    for labels, entries in streams:
        out.append({"stream": dict(parse_labels(labels)),
                    "values": [[str(ns), line] for ns, line in entries]})
    return json.dumps({"streams": out}, ensure_ascii=False, separators=(",", ":")).encode()


def compress(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(data))


def decompress(data: bytes) -> bytes:
    return bytes(cramjam.snappy.decompress_raw(data))


def format_labels(labels: dict[str, str]) -> str:
    """`{a="b", c="d"}`: names sorted, values escaped like Prometheus' text form."""
    return "{" + ", ".join(
        f'{k}="{_escape(v)}"' for k, v in sorted(labels.items())) + "}"


def _escape(v: str) -> str:
    if "\\" in v or '"' in v or "\n" in v:
        v = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return v


def parse_labels(text: str) -> list[tuple[str, str]]:
    """Parse `{a="b", c="d"}` (the StreamAdapter labels) into pairs; ValueError if bad."""
    s = text.strip()
    if not (s.startswith("{") and s.endswith("}")):
        raise ValueError(f"labels {text!r}: expected {{...}}")
    out: list[tuple[str, str]] = []
    i, n = 1, len(s) - 1
    while True:
        while i < n and s[i] in " ,":
            i += 1
        if i >= n:
            return out
        j = s.find("=", i)
        if j < 0:
            raise ValueError(f"labels {text!r}: missing '=' at {i}")
        name = s[i:j].strip()
        if not name or not (name[0].isalpha() or name[0] == "_") or \
                not all(c.isalnum() or c == "_" for c in name):
            raise ValueError(f"labels {text!r}: invalid label name {name!r}")
        i = j + 1
        if i >= n or s[i] != '"':
            raise ValueError(f"labels {text!r}: value of {name} not quoted")
        i += 1
        value = []
        while True:
            if i >= n:
                raise ValueError(f"labels {text!r}: unterminated value of {name}")
            c = s[i]
            if c == "\\" and i + 1 < n:
                nxt = s[i + 1]
                value.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
                i += 2
                continue
            if c == '"':
                i += 1
                break
            value.append(c)
            i += 1
        out.append((name, "".join(value)))


# ---------------------------------------------------------------- decoding


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")


def _fields(data: bytes, start: int, end: int):
    """Yield (field number, wire type, value) of a message; value is int or bytes."""
    pos = start
    while pos < end:
        key, pos = _read_varint(data, pos)
        field, wt = key >> 3, key & 7
        if field == 0:
            raise ValueError(f"invalid field number 0 at offset {pos}")
        if wt == 0:
            v, pos = _read_varint(data, pos)
            yield field, wt, v
        elif wt == 2:
            n, pos = _read_varint(data, pos)
            if pos + n > end:
                raise ValueError(f"field {field} runs past the end of its message")
            yield field, wt, data[pos:pos + n]
            pos += n
        elif wt == 1:
            pos += 8
        elif wt == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wt} at offset {pos}")
    if pos != end:
        raise ValueError("message runs past its end")


def decode_push_request(data: bytes) -> list[Stream]:
    """Decode an (uncompressed) PushRequest into streams; ValueError when malformed."""
    streams: list[Stream] = []
    for field, wt, value in _fields(data, 0, len(data)):
        if field != 1 or wt != 2:
            continue
        labels = ""
        entries: list[tuple[int, str]] = []
        for f2, w2, v2 in _fields(value, 0, len(value)):
            if f2 == 1 and w2 == 2:
                labels = v2.decode("utf-8")
            elif f2 == 2 and w2 == 2:
                seconds = nanos = 0
                line = ""
                for f3, w3, v3 in _fields(v2, 0, len(v2)):
                    if f3 == 1 and w3 == 2:
                        for f4, w4, v4 in _fields(v3, 0, len(v3)):
                            if f4 == 1 and w4 == 0:
                                seconds = v4 - (1 << 64) if v4 >> 63 else v4
                            elif f4 == 2 and w4 == 0:
                                nanos = v4
                    elif f3 == 2 and w3 == 2:
                        line = v3.decode("utf-8")
                entries.append((seconds * 1_000_000_000 + nanos, line))
        streams.append((labels, entries))
    return streams


def decode_push_json(data: bytes) -> list[Stream]:
    """Decode the JSON form; ValueError when malformed."""
    doc = json.loads(data)
    if not isinstance(doc, dict) or not isinstance(doc.get("streams"), list):
        raise ValueError('JSON push body needs a "streams" list')
    out: list[Stream] = []
    for s in doc["streams"]:
        stream = s.get("stream")
        if not isinstance(stream, dict):
            raise ValueError('each stream needs a "stream" object of labels')
        entries = []
        for v in s.get("values") or []:
            if not isinstance(v, list) or len(v) < 2 or not isinstance(v[1], str):
                raise ValueError('each value must be ["<unix ns>", "<line>"]')
            entries.append((int(v[0]), v[1]))
        out.append((format_labels({str(k): str(x) for k, x in stream.items()}), entries))
    return out
