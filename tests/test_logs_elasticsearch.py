"""The elasticsearch log output against a real Elasticsearch 7.9.2: one document per line
with its labels in the daily index, idempotent when a batch is sent twice."""

from __future__ import annotations

import json
import urllib.request

from clymene.logs.elasticsearch import ElasticsearchLogOutput


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_lines_become_documents_in_daily_indices(elasticsearch_server):
    url = elasticsearch_server.url
    out = ElasticsearchLogOutput([url], index_prefix="t1", num_replicas=0)
    day1 = 1704067200_123456789  # 2024-01-01
    day2 = day1 + 86_400 * 1_000_000_000
    streams = [('{app="web", pod="web-1"}', [(day1, "hello"), (day2, "next day ✓")]),
               ('{app="db"}', [(day1 + 1, "db line")])]
    assert out.push(streams, "team-a") is True
    assert out.push(streams, "team-a") is True  # sent twice: stored once
    urllib.request.urlopen(f"{url}/t1-clymene-logs-*/_refresh", data=b"", timeout=10)
    hits = _get(f"{url}/t1-clymene-logs-*/_search?size=10&sort=@timestamp:asc")["hits"]["hits"]
    assert [(h["_index"], h["_source"]) for h in hits] == [
        ("t1-clymene-logs-2024.01.01", {"@timestamp": "2024-01-01T00:00:00.123456789Z",
                                        "line": "hello", "tenant": "team-a",
                                        "labels": {"app": "web", "pod": "web-1"}}),
        ("t1-clymene-logs-2024.01.01", {"@timestamp": "2024-01-01T00:00:00.123456790Z",
                                        "line": "db line", "tenant": "team-a",
                                        "labels": {"app": "db"}}),
        ("t1-clymene-logs-2024.01.02", {"@timestamp": "2024-01-02T00:00:00.123456789Z",
                                        "line": "next day ✓", "tenant": "team-a",
                                        "labels": {"app": "web", "pod": "web-1"}}),
    ]
    mapping = _get(f"{url}/t1-clymene-logs-2024.01.01/_mapping")
    props = mapping["t1-clymene-logs-2024.01.01"]["mappings"]["properties"]
    assert props["@timestamp"] == {"type": "date_nanos"}
    assert props["labels"]["properties"]["pod"] == {"type": "keyword"}
    assert out.sent_entries == 6 and out.dropped_entries == 0
    out.close()
