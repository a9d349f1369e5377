"""Elasticsearch output for logs: one document per line, daily indices, a template.

Index `<prefix>-clymene-logs-<date>` (`--es.index-prefix`,
`--es.clymene-promtail.index.name`, `--es.index-date-pattern` of the line's UTC day).
A document:

    {"@timestamp": "2024-01-01T00:00:00.123456789Z", "line": "...",
     "labels": {"namespace": "shop", "pod": "web-1", ...}, "tenant": "team-a"}

`@timestamp` is `date_nanos` (no precision lost); `labels.*` are keywords, `line` is
text. `_id` is a hash of stream, time and line, so a batch sent twice (a retry after a
timeout, a restart after SIGKILL) is stored once. Items answered 429/5xx are retried
with backoff; items refused otherwise are counted as dropped (the rest is kept).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Any

from clymene.logs import loki_pb
from clymene.logs.loki import PushAborted

log = logging.getLogger(__name__)


def _rfc3339(ns: int) -> str:
    sec, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{nanos:09d}Z"


class ElasticsearchLogOutput:
    name = "elasticsearch"

    def __init__(self, urls: list[str], index_prefix: str = "", index_name: str = "clymene-logs",
                 date_pattern: str = "%Y.%m.%d", timeout: float = 30.0, username: str = "",
                 password: str = "", num_shards: int = 1, num_replicas: int = 1,
                 create_template: bool = True, min_backoff: float = 0.5,
                 max_backoff: float = 30.0) -> None:
        from clymene.storage.elasticsearch import import_client

        if not urls:
            raise ValueError("the elasticsearch log output needs --es.server-urls")
        es = import_client()
        self._es = es
        kwargs: dict[str, Any] = {"timeout": timeout, "max_retries": 0}
        if username:
            kwargs["http_auth"] = (username, password)
        self.client = es.Elasticsearch(urls, **kwargs)
        prefix = index_prefix + "-" if index_prefix and not index_prefix.endswith("-") \
            else index_prefix
        self.base = f"{prefix}{index_name}"
        # --es.index-date-pattern is written YYYY.MM.DD (like the metrics storage);
        # a pattern holding "%" is taken as strftime as it is.
        if "%" not in date_pattern:
            date_pattern = (date_pattern.replace("YYYY", "%Y").replace("MM", "%m")
                            .replace("DD", "%d"))
        self.date_pattern = date_pattern
        self.num_shards = num_shards
        self.num_replicas = num_replicas
        self._template_pending = create_template
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.sent_entries = 0
        self.dropped_entries = 0
        self.retries = 0
        self._labels: dict[str, dict[str, str]] = {}

    def index_for(self, ns: int) -> str:
        if not self.date_pattern:
            return self.base
        return f"{self.base}-{time.strftime(self.date_pattern, time.gmtime(ns // 1_000_000_000))}"

    def template(self) -> dict:
        return {
            "index_patterns": [f"{self.base}-*" if self.date_pattern else self.base],
            "settings": {"number_of_shards": self.num_shards,
                         "number_of_replicas": self.num_replicas},
            "mappings": {
                "dynamic_templates": [
                    {"labels": {"path_match": "labels.*", "mapping": {"type": "keyword"}}}],
                "properties": {"@timestamp": {"type": "date_nanos"},
                               "line": {"type": "text"},
                               "tenant": {"type": "keyword"},
                               "labels": {"type": "object"}},
            },
        }

    def _actions(self, streams: list[loki_pb.Stream], tenant: str | None) -> list[bytes]:
        out: list[bytes] = []
        dumps = json.dumps
        for labels_text, entries in streams:
            labels = self._labels.get(labels_text)
            if labels is None:
                if len(self._labels) > 10_000:
                    self._labels.clear()
                labels = self._labels[labels_text] = dict(loki_pb.parse_labels(labels_text))
            for ns, line in entries:
                doc_id = hashlib.sha1(f"{tenant}\x00{labels_text}\x00{ns}\x00{line}".encode(),
                                      usedforsecurity=False).hexdigest()
                head = {"index": {"_index": self.index_for(ns), "_id": doc_id}}
                doc: dict[str, Any] = {"@timestamp": _rfc3339(ns), "line": line,
                                       "labels": labels}
                if tenant:
                    doc["tenant"] = tenant
                out.append(dumps(head).encode() + b"\n" + dumps(doc, ensure_ascii=False)
                           .encode() + b"\n")
        return out

    def _wait(self, backoff: float, stop: threading.Event | None) -> float:
        self.retries += 1
        if stop is not None:
            if stop.wait(backoff):
                raise PushAborted("stopped while retrying")
        else:
            time.sleep(backoff)
        return min(backoff * 2, self.max_backoff)

    def push(self, streams: list[loki_pb.Stream], tenant: str | None,
             stop: threading.Event | None = None) -> bool:
        es = self._es
        backoff = self.min_backoff
        while self._template_pending:
            try:
                self.client.indices.put_template(name=self.base, body=self.template())
                self._template_pending = False
            except (es.ConnectionError, es.TransportError) as exc:
                log.warning("elasticsearch: cannot install the template (%s)", exc)
                backoff = self._wait(backoff, stop)
        todo = self._actions(streams, tenant)
        while todo:
            try:
                result = self.client.bulk(body=b"".join(todo))
            except es.TransportError as exc:
                code = exc.status_code if isinstance(exc.status_code, int) else 0
                if code and code != 429 and code < 500:
                    log.error("elasticsearch refused %d log lines: %s", len(todo), exc)
                    self.dropped_entries += len(todo)
                    return False
                log.warning("elasticsearch bulk failed (%s); retrying", exc)
                backoff = self._wait(backoff, stop)
                continue
            retry = []
            for action, item in zip(todo, result.get("items", []), strict=False):
                status = item.get("index", {}).get("status", 500)
                if status < 300:
                    self.sent_entries += 1
                elif status == 429 or status >= 500:
                    retry.append(action)
                else:
                    self.dropped_entries += 1
                    log.error("elasticsearch rejected a log line: %s",
                              item.get("index", {}).get("error"))
            todo = retry
            if todo:
                backoff = self._wait(backoff, stop)
        return True

    def close(self) -> None:
        self.client.close()


def from_settings(settings: Any) -> ElasticsearchLogOutput:
    """The output from the --es.* flags (index --es.clymene-promtail.index.name)."""
    return ElasticsearchLogOutput(
        list(settings.es_server_urls), settings.es_index_prefix,
        settings.es_clymene_promtail_index_name, settings.es_index_date_pattern,
        settings.es_timeout, settings.es_username, settings.es_password,
        settings.es_num_shards, settings.es_num_replicas,
        settings.es_create_index_templates, settings.loki_client_min_backoff)
