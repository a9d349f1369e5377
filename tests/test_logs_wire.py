"""The Loki push wire format (checked against the official protobuf runtime), the Loki
client's retry rules, and the test receiver's ordering rule."""

from __future__ import annotations

import gzip
import json
import threading
import time

import pytest
import urllib3
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from clymene.logs import loki_pb
from clymene.logs.loki import LokiClient, PushAborted
from tests.loki_receiver import LokiReceiver


def _push_request_class():
    fdp = descriptor_pb2.FileDescriptorProto(name="push_test.proto", package="logproto",
                                             syntax="proto3")
    ts = fdp.message_type.add(name="Timestamp")
    ts.field.add(name="seconds", number=1, type=3, label=1)
    ts.field.add(name="nanos", number=2, type=5, label=1)
    entry = fdp.message_type.add(name="EntryAdapter")
    entry.field.add(name="timestamp", number=1, type=11, label=1, type_name=".logproto.Timestamp")
    entry.field.add(name="line", number=2, type=9, label=1)
    stream = fdp.message_type.add(name="StreamAdapter")
    stream.field.add(name="labels", number=1, type=9, label=1)
    stream.field.add(name="entries", number=2, type=11, label=3,
                     type_name=".logproto.EntryAdapter")
    stream.field.add(name="hash", number=3, type=4, label=1)
    req = fdp.message_type.add(name="PushRequest")
    req.field.add(name="streams", number=1, type=11, label=3,
                  type_name=".logproto.StreamAdapter")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("logproto.PushRequest"))


STREAMS = [
    ('{app="a", pod="p-1"}', [(1_700_000_000_123_456_789, "hello"), (1_700_000_000_000_000_000, ""),
                              (5, "ünïcode ✓"), (0, "epoch")]),
    ('{app="b"}', [(1_700_000_001_000_000_001, "x" * 300)]),
    ("{}", []),
]


def test_encoding_is_what_the_protobuf_runtime_writes():
    cls = _push_request_class()
    msg = cls()
    for labels, entries in STREAMS:
        s = msg.streams.add(labels=labels)
        for ns, line in entries:
            e = s.entries.add(line=line)
            e.timestamp.seconds, e.timestamp.nanos = divmod(ns, 1_000_000_000)
    ours = loki_pb.encode_push_request(STREAMS)
    assert ours == msg.SerializeToString()
    assert loki_pb.decode_push_request(ours) == STREAMS
    parsed = cls.FromString(ours)
    assert parsed.streams[0].entries[0].timestamp.nanos == 123_456_789


def test_json_form_and_labels_text():
    body = loki_pb.encode_push_json(STREAMS[:2])
    doc = json.loads(body)
    assert doc["streams"][0] == {"stream": {"app": "a", "pod": "p-1"},
                                 "values": [["1700000000123456789", "hello"],
                                            ["1700000000000000000", ""],
                                            ["5", "ünïcode ✓"], ["0", "epoch"]]}
    assert loki_pb.decode_push_json(body) == STREAMS[:2]
    assert loki_pb.format_labels({"b": 'q"\\\n', "a": "x"}) == '{a="x", b="q\\"\\\\\\n"}'
    assert loki_pb.parse_labels('{a="x", b="q\\"\\\\\\n"}') == [("a", "x"), ("b", 'q"\\\n')]
    with pytest.raises(ValueError, match="invalid label name"):
        loki_pb.parse_labels('{1a="x"}')
    with pytest.raises(ValueError, match="truncated varint|past the end"):
        loki_pb.decode_push_request(b"\x0a\x05\x0a")


@pytest.fixture
def rx():
    r = LokiReceiver()
    yield r
    r.stop()


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    return urllib3.PoolManager().request("POST", url, body=body, headers=headers).status


def test_receiver_enforces_ordering_and_decodes_every_form(rx):
    pb = loki_pb.compress(loki_pb.encode_push_request([('{a="1"}', [(10, "x"), (20, "y")])]))
    assert _post(rx.url, pb, {"Content-Type": "application/x-protobuf"}) == 204
    # older than the newest: refused; same time and line as the newest: a duplicate
    body = loki_pb.compress(loki_pb.encode_push_request(
        [('{a="1"}', [(15, "old"), (20, "y"), (20, "z"), (30, "w")])]))
    assert _post(rx.url, body, {"Content-Type": "application/x-protobuf"}) == 400
    js = gzip.compress(loki_pb.encode_push_json([('{a="1"}', [(40, "j")])]))
    assert _post(rx.url, js, {"Content-Type": "application/json",
                              "Content-Encoding": "gzip", "X-Scope-OrgID": "t1"}) == 204
    assert rx.lines() == {'{a="1"}': [(10, "x"), (20, "y"), (20, "z"), (30, "w")]}
    assert rx.lines("t1") == {'{a="1"}': [(40, "j")]}
    assert (rx.rejected, rx.duplicates) == (1, 1)
    assert _post(rx.url, b"\xff\xff", {"Content-Type": "application/x-protobuf"}) == 400


def test_client_retries_429_and_5xx_not_other_4xx(rx):
    rx.responses = [503, 429, 500]
    client = LokiClient(rx.url, min_backoff=0.01, max_backoff=0.02, tenant="team-a")
    assert client.push([('{a="1"}', [(1, "x")])], None) is True
    assert client.retries == 3
    assert rx.requests[-1]["headers"]["X-Scope-OrgID"] == "team-a"
    assert rx.requests[-1]["headers"]["Content-Type"] == "application/x-protobuf"
    rx.responses = [400]
    assert client.push([('{a="1"}', [(2, "y")])], "other") is False
    assert client.retries == 3 and client.dropped_entries == 1
    assert rx.requests[-1]["headers"]["X-Scope-OrgID"] == "other"
    rx.responses = [413]
    assert client.push([('{a="1"}', [(3, "z")])], None) is False
    assert rx.lines("team-a") == {'{a="1"}': [(1, "x")]}


def test_client_json_encoding_and_give_up_and_abort(rx):
    client = LokiClient(rx.url, encoding="json", min_backoff=0.01, max_backoff=0.01,
                        max_retries=2)
    assert client.push([('{a="1"}', [(1, "x")])], None) is True
    assert rx.requests[-1]["headers"]["Content-Type"] == "application/json"
    rx.down = True
    assert client.push([('{a="1"}', [(2, "y")])], None) is False  # 1 try + 2 retries
    assert len(rx.requests) == 1
    forever = LokiClient(rx.url, min_backoff=0.05, max_backoff=0.05)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(PushAborted):
        forever.push([('{a="1"}', [(3, "z")])], None, stop)
    assert time.monotonic() - started < 2
    with pytest.raises(ValueError, match="encoding"):
        LokiClient(rx.url, encoding="xml")


def test_decode_push_for_the_gateway():
    import zlib

    from clymene.logs.push import PushDecodeError, decode_push

    streams = [('{a="1"}', [(5, "x")])]
    pb = loki_pb.compress(loki_pb.encode_push_request(streams))
    js = loki_pb.encode_push_json(streams)
    assert decode_push(pb, "application/x-protobuf") == streams
    assert decode_push(gzip.compress(pb), "application/x-protobuf", "gzip") == streams
    assert decode_push(js, "application/json; charset=utf-8") == streams
    assert decode_push(zlib.compress(js), "application/json", "deflate") == streams
    for args, status in [((pb, "text/plain"), 415), ((b"{", "application/json"), 400),
                         ((b"\x00\x01", "application/x-protobuf"), 400),
                         ((pb, "application/x-protobuf", "br"), 415),
                         ((b"nope", "application/json", "gzip"), 400)]:
        with pytest.raises(PushDecodeError) as exc:
            decode_push(*args)
        assert exc.value.status == status, args
