"""Elasticsearch storage against a real Elasticsearch 7.9.2: every document read back,
daily index names, the template, idempotent rewrites, the field limit, refused auth."""

from __future__ import annotations

import math
import time

import pytest

from clymene import stats
from clymene.storage import WriteError
from clymene.storage.elasticsearch import ElasticsearchStorage, import_client
from tests.servers import free_port
from tests.test_storage_batches import is_stale, many_series, tricky_batch
from tests.test_storage_fanout import RecordingServer


def now_ms() -> int:
    return int(time.time() * 1000)


def expected_docs(batch) -> set:
    out = set()
    for lbls, value, ts in batch:
        if is_stale(value):
            continue
        name = dict(lbls)["__name__"]
        rest = tuple((k, v) for k, v in lbls if k != "__name__")
        if math.isnan(value):
            field = ("special", "NaN")
        elif math.isinf(value):
            field = ("special", "+Inf" if value > 0 else "-Inf")
        else:
            field = ("value", value)
        out.add((name, rest, field, ts))
    return out


def read_docs(url: str, pattern: str) -> tuple[set, list[dict]]:
    es = import_client()
    from elasticsearch import helpers

    client = es.Elasticsearch([url])
    client.indices.refresh(index=pattern)
    hits = list(helpers.scan(client, index=pattern, query={"query": {"match_all": {}}}))
    docs = set()
    for hit in hits:
        src = hit["_source"]
        field = ("special", src["special"]) if "special" in src else ("value", src["value"])
        docs.add((src["name"], tuple(sorted(src["labels"].items())), field, src["@timestamp"]))
    client.transport.close()
    return docs, hits


def test_documents_read_back_exactly_in_daily_indices(elasticsearch_server):
    url = elasticsearch_server.url
    t0 = now_ms()
    batch = tricky_batch(t0) + many_series(10_000, t0 + 1000)
    storage = ElasticsearchStorage([url], index_prefix="t1", num_replicas=0, bulk_actions=2000,
                                   bulk_workers=2)
    stats.drain()
    storage.write(batch, time.monotonic() + 60)
    counts = stats.drain()
    want = expected_docs(batch)
    assert counts['clymene_storage_samples_written_total{storage="elasticsearch"}'] == len(want)
    assert counts['clymene_storage_samples_dropped_total{reason="stale",storage="elasticsearch"}'] == 1
    assert counts['clymene_storage_special_values_total{kind="NaN",storage="elasticsearch"}'] == 1
    got, hits = read_docs(url, "t1-clymene-metrics-*")
    assert got == want, (sorted(want - got, key=repr)[:3], sorted(got - want, key=repr)[:3])
    day = time.strftime("%Y.%m.%d", time.gmtime(t0 / 1000))
    assert {h["_index"] for h in hits} <= {f"t1-clymene-metrics-{day}",
                                          time.strftime("t1-clymene-metrics-%Y.%m.%d",
                                                        time.gmtime(t0 / 1000 + 2))}
    # Written again (a retry, a Kafka replay): the same documents, not twice as many.
    storage.write(batch, time.monotonic() + 60)
    again, hits_again = read_docs(url, "t1-clymene-metrics-*")
    assert again == want and len(hits_again) == len(hits) == len(want)
    es = import_client()
    client = es.Elasticsearch([url])
    template = client.indices.get_template(name="t1-clymene-metrics")["t1-clymene-metrics"]
    assert template["index_patterns"] == ["t1-clymene-metrics-*"]
    mapping = client.indices.get_mapping(index=f"t1-clymene-metrics-{day}")
    props = next(iter(mapping.values()))["mappings"]["properties"]
    assert props["value"] == {"type": "double"}
    assert props["@timestamp"] == {"type": "date", "format": "epoch_millis"}
    assert props["labels"]["properties"]["kind"] == {"type": "keyword"}
    client.transport.close()
    storage.close()


def test_label_explosion_is_rejected_per_document_and_counted(elasticsearch_server):
    url = elasticsearch_server.url
    t0 = now_ms()
    storage = ElasticsearchStorage([url], index_prefix="t2", num_replicas=0,
                                   total_fields_limit=30, date_pattern="")
    ok = [((("__name__", "ok"), ("a", "1")), 1.0, t0)]
    storage.write(ok, time.monotonic() + 30)
    explosion = [(tuple(sorted({"__name__": "boom", **{f"l{i:03d}": "x" for i in range(50)}}
                               .items())), 2.0, t0 + 1)]
    stats.drain()
    with pytest.raises(WriteError) as info:
        storage.write(explosion + [((("__name__", "ok"), ("a", "2")), 3.0, t0 + 2)],
                      time.monotonic() + 30)
    counts = stats.drain()
    assert not info.value.retryable
    assert "1 of 2 documents not stored" in str(info.value)
    assert "illegal_argument_exception" in str(info.value) and "fields" in str(info.value)
    assert counts['clymene_storage_samples_written_total{storage="elasticsearch"}'] == 1
    assert counts['clymene_storage_rejected_documents_total{error="illegal_argument_exception",'
                  'storage="elasticsearch"}'] == 1
    got, _ = read_docs(url, "t2-clymene-metrics")
    assert {(d[0], d[1]) for d in got} == {("ok", (("a", "1"),)), ("ok", (("a", "2"),))}
    storage.close()


def test_auth_refused_names_backend_and_url_not_the_password():
    fake = RecordingServer(statuses=[401])
    try:
        storage = ElasticsearchStorage([f"http://127.0.0.1:{fake.port}"], username="elastic",
                                       password="hunter2-pw")
        with pytest.raises(WriteError) as info:
            storage.write(tricky_batch(now_ms())[:1], time.monotonic() + 5)
        message = str(info.value)
        assert not info.value.retryable
        assert message.startswith(f"elasticsearch: http://127.0.0.1:{fake.port} refused")
        assert "authentication refused" in message and "401" in message
        assert "hunter2-pw" not in message
        headers = {k.lower(): v for k, v in fake.bodies[0][1].items()}
        assert headers["authorization"].startswith("Basic ")
    finally:
        fake.stop()


def test_stopped_server_is_retried_until_the_deadline_then_given_up():
    storage = ElasticsearchStorage([f"http://127.0.0.1:{free_port()}"], timeout=1.0)
    start = time.monotonic()
    with pytest.raises(WriteError) as info:
        storage.write(tricky_batch(now_ms())[:2], start + 1.0)
    assert info.value.retryable
    assert 0.5 < time.monotonic() - start < 2.0
    storage.close()


def test_encoding_index_names_and_ids():
    s = ElasticsearchStorage(["http://127.0.0.1:1"], index_prefix="prod",
                             date_pattern="YYYY-MM")
    items, kinds = s.encode([((("__name__", "up"), ("job", "한국")), 1.0, 1_700_000_000_123)])
    assert kinds == {}
    action, doc, _ = items[0].decode().split("\n")
    assert action.startswith('{"index":{"_index":"prod-clymene-metrics-2023-11","_id":"')
    assert action.endswith('-1700000000123"}}')
    assert doc == '{"@timestamp":1700000000123,"name":"up","labels":{"job":"한국"},"value":1.0}'
    with pytest.raises(ValueError, match="invalid Elasticsearch index name 'Prod-clymene"):
        ElasticsearchStorage(["http://127.0.0.1:1"], index_prefix="Prod")


class FakeBulk:
    """Answers _template with {} and each _bulk with the next scripted item statuses
    (one list per request; 201 for every item when the script is empty)."""

    def __init__(self, scripts: list[list[int]]) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.scripts = list(scripts)
        self.bulks: list[list[str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                payload: dict = {}
                if "_bulk" in self.path:
                    lines = body.decode().splitlines()
                    ids = [json.loads(a)["index"]["_id"] for a in lines[0::2]]
                    owner.bulks.append(ids)
                    statuses = owner.scripts.pop(0) if owner.scripts else [201] * len(ids)
                    items = []
                    for status in statuses:
                        item: dict = {"status": status}
                        if status >= 300:
                            item["error"] = {"type": f"type_{status}", "reason": "scripted"}
                        items.append({"index": item})
                    payload = {"errors": any(s >= 300 for s in statuses), "items": items}
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PUT = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_items_answered_429_or_5xx_are_retried_alone_others_rejected_and_counted():
    fake = FakeBulk([[201, 429, 400, 503], [201, 201]])
    try:
        storage = ElasticsearchStorage([fake.url])
        batch = [((("__name__", "m"), ("i", str(i))), float(i), 1_700_000_000_000)
                 for i in range(4)]
        stats.drain()
        with pytest.raises(WriteError) as info:
            storage.write(batch, time.monotonic() + 10)
        counts = stats.drain()
        assert len(fake.bulks) == 2
        assert fake.bulks[1] == [fake.bulks[0][1], fake.bulks[0][3]]
        assert not info.value.retryable
        assert "rejected 1 documents, first: type_400: scripted" in str(info.value)
        assert counts['clymene_storage_samples_written_total{storage="elasticsearch"}'] == 3
        assert counts['clymene_storage_samples_dropped_total{reason="rejected",'
                      'storage="elasticsearch"}'] == 1
        assert counts['clymene_storage_retries_total{storage="elasticsearch"}'] == 1
    finally:
        fake.stop()
