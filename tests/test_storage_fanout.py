"""Several storages at once: the fanout (concurrency, own budgets, soft deadline), the
factory with every backend and the YAML remote_write section, the storage flags, and
the farm end to end with Prometheus up and Elasticsearch stopped."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from clymene import settings as settings_module
from clymene import stats
from clymene.storage import WriteError
from clymene.storage.fanout import Fanout, soft_deadline_for


class RecordingServer:
    """Records POSTs (path, headers, body); answers `statuses` in turn, then 204."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.bodies: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.bodies.append((self.path, dict(self.headers.items()), body))
                status = owner.statuses.pop(0) if owner.statuses else 204
                payload = b'{"error":"nope"}' if status >= 300 else b""
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_PUT = do_POST

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class FakeStorage:
    def __init__(self, name: str, delay: float = 0.0, fail: WriteError | None = None,
                 until_deadline: bool = False) -> None:
        self.name = name
        self.delay = delay
        self.fail = fail
        self.until_deadline = until_deadline
        self.calls: list[tuple[int, float, float, float]] = []  # (n, start, end, deadline)

    def write(self, batch, deadline):
        start = time.monotonic()
        if self.until_deadline:
            time.sleep(max(0.0, deadline - time.monotonic()))
        else:
            time.sleep(self.delay)
        self.calls.append((len(batch), start, time.monotonic(), deadline))
        if self.until_deadline:
            raise WriteError(f"{self.name}: gave up at the deadline", retryable=True)
        if self.fail is not None:
            raise self.fail

    def close(self):
        pass


BATCH = [((("__name__", "m"),), 1.0, 1)]


def test_fanout_writes_every_storage_concurrently():
    a, b, c = FakeStorage("a", 0.3), FakeStorage("b", 0.3), FakeStorage("c", 0.3)
    fanout = Fanout([a, b, c])
    start = time.monotonic()
    assert fanout.write(BATCH, start + 10) == []
    took = time.monotonic() - start
    assert 0.3 <= took < 0.55, took
    assert [s.calls[0][0] for s in (a, b, c)] == [1, 1, 1]
    fanout.close()


def test_failing_storage_does_not_stop_the_others_and_is_reported():
    stats.drain()
    bad = FakeStorage("bad", fail=WriteError("bad: HTTP 500", retryable=True))
    good = FakeStorage("good")
    fanout = Fanout([bad, good])
    failures = fanout.write(BATCH, time.monotonic() + 5)
    assert [(name, str(e)) for name, e in failures] == [("bad", "bad: HTTP 500")]
    assert len(good.calls) == 1
    assert stats.drain()['clymene_write_failures_total{storage="bad"}'] == 1
    fanout.close()


def test_unexpected_exception_becomes_a_failure_not_a_crash():
    class Broken(FakeStorage):
        def write(self, batch, deadline):
            raise KeyError("bug")

    good = FakeStorage("good")
    failures = Fanout([Broken("broken"), good]).write(BATCH, time.monotonic() + 5)
    assert failures[0][0] == "broken" and "KeyError" in str(failures[0][1])
    assert len(good.calls) == 1


def test_with_several_storages_an_unproven_one_gives_up_at_the_soft_deadline():
    down = FakeStorage("down", until_deadline=True)
    up = FakeStorage("up", 0.01)
    fanout = Fanout([up, down])
    now = time.monotonic()
    start = time.monotonic()
    failures = fanout.write(BATCH, now + 30, soft_deadline_for(1.0, now))
    took = time.monotonic() - start
    assert [n for n, _ in failures] == ["down"]
    assert 0.45 <= took < 0.8, took
    assert down.calls[0][3] == pytest.approx(now + 0.5)
    assert up.calls[0][3] == pytest.approx(now + 0.5)  # not proven healthy yet either
    # `up` succeeded: from now on it is waited for until the hard deadline; `down` not.
    now = time.monotonic()
    fanout.write(BATCH, now + 30, soft_deadline_for(1.0, now))
    assert up.calls[1][3] == now + 30
    assert down.calls[1][3] == pytest.approx(now + 0.5)
    fanout.close()


def test_healthy_storage_that_fails_transiently_is_unproven_again_and_kafka_always_waited():
    flaky = FakeStorage("flaky")
    kafka = FakeStorage("kafka")
    fanout = Fanout([flaky, kafka])
    now = time.monotonic()
    fanout.write(BATCH, now + 30, now + 0.5)
    assert kafka.calls[0][3] == now + 30  # the pipeline is always waited for
    flaky.fail = WriteError("flaky: 503", retryable=True)
    fanout.write(BATCH, now + 30, now + 0.5)
    assert flaky.calls[1][3] == now + 30  # healthy after its first success
    flaky.fail = None
    fanout.write(BATCH, now + 30, now + 0.5)
    assert flaky.calls[2][3] == now + 0.5  # unproven after the transient failure
    flaky.fail = WriteError("flaky: 400", retryable=False)
    fanout.write(BATCH, now + 30, now + 0.5)
    fanout.write(BATCH, now + 30, now + 0.5)
    assert flaky.calls[4][3] == now + 30  # a rejection is an answer: it is up
    fanout.close()


def test_a_single_storage_keeps_the_hard_deadline():
    only = FakeStorage("only")
    now = time.monotonic()
    Fanout([only]).write(BATCH, now + 30, soft_deadline_for(1.0, now))
    assert only.calls[0][3] == now + 30


# ---------------------------------------------------------------- flags and factory


def test_storage_flags_have_the_original_names_and_env():
    by_name = {f.name: f for f in settings_module.FLAGS}
    for name, env in [("--es.server-urls", "ES_SERVER_URLS"),
                      ("--es.bulk.flush-interval", "ES_BULK_FLUSH_INTERVAL"),
                      ("--es.clymene-agent.index.name", "ES_CLYMENE_AGENT_INDEX_NAME"),
                      ("--opentsdb.http-api-path", "OPENTSDB_HTTP_API_PATH"),
                      ("--opentsdb.max-tags", "OPENTSDB_MAX_TAGS"),
                      ("--influxdb.use-gzip", "INFLUXDB_USE_GZIP"),
                      ("--cortex.distributor.url", "CORTEX_DISTRIBUTOR_URL"),
                      ("--prometheus.remote.tenant", "PROMETHEUS_REMOTE_TENANT")]:
        assert by_name[name].env == env
    loaded = settings_module.load({"ES_SERVER_URLS": "http://a:9200, http://b:9200",
                                   "ES_BULK_ACTIONS": "50", "OPENTSDB_HTTP": "true",
                                   "PROMETHEUS_REMOTE_HEADERS": "X-A=1,X-B=two"})
    assert loaded.es_server_urls == ["http://a:9200", "http://b:9200"]
    assert loaded.es_bulk_actions == 50 and loaded.opentsdb_http is True
    assert loaded.prometheus_remote_headers == {"X-A": "1", "X-B": "two"}
    with pytest.raises(settings_module.SettingsError, match="--prometheus.remote.headers"):
        settings_module.load({"PROMETHEUS_REMOTE_HEADERS": "novalue"})


def _settings(**env: str) -> Any:
    return settings_module.load({"CONFIG_FILE": "/nonexistent/clymene.yml", **env})


def test_factory_opens_every_backend_by_name(tmp_path):
    from clymene.storage.factory import open_storages

    s = _settings(STORAGE_TYPE="prometheus,cortex,elasticsearch,opentsdb,influxdb,file",
                  PROMETHEUS_REMOTE_URL="http://127.0.0.1:1/api/v1/write",
                  CORTEX_DISTRIBUTOR_URL="http://127.0.0.1:1/api/v1/push",
                  INFLUXDB_DATABASE="db", STORAGE_FILE_PATH=str(tmp_path))
    storages = open_storages(s)
    try:
        assert [x.name for x in storages] == ["prometheus", "cortex", "elasticsearch",
                                              "opentsdb", "influxdb", "file"]
    finally:
        for x in storages:
            x.close()
    with pytest.raises(ValueError, match="cortex.distributor.url"):
        open_storages(_settings(STORAGE_TYPE="cortex"))


def test_remote_write_section_becomes_storages_with_auth_and_relabeling(tmp_path):
    from clymene.config import load_string
    from clymene.storage.factory import open_storages
    from tests.receiver import RemoteWriteReceiver

    rx = RemoteWriteReceiver()
    (tmp_path / "pw").write_text("s3cret\n")
    config = load_string(f"""
remote_write:
  - url: {rx.url}
    name: first
    basic_auth: {{username: u, password_file: {tmp_path / 'pw'}}}
    headers: {{X-Scope-OrgID: team-a, X-Extra: "1"}}
    write_relabel_configs:
      - source_labels: [__name__]
        regex: drop_.*
        action: drop
      - target_label: env
        replacement: prod
    queue_config: {{max_samples_per_send: 2}}
  - url: {rx.url}
    authorization: {{credentials: tok}}
""", "test.yml", str(tmp_path))
    storages = open_storages(_settings(), config)
    try:
        assert [s.name for s in storages] == ["remote_write/first", "remote_write/1"]
        batch = [((("__name__", "keep"), ("a", "1")), 1.0, 1),
                 ((("__name__", "drop_me"),), 2.0, 2),
                 ((("__name__", "keep"), ("a", "2")), 3.0, 3),
                 ((("__name__", "keep"), ("a", "3")), 4.0, 4)]
        storages[0].write(batch, time.monotonic() + 5)
        storages[1].write(batch[:1], time.monotonic() + 5)
    finally:
        for s in storages:
            s.close()
        rx.stop()
    first = rx.requests[:2]
    assert [r.samples for r in first] == [
        [((("__name__", "keep"), ("a", "1"), ("env", "prod")), 1.0, 1),
         ((("__name__", "keep"), ("a", "2"), ("env", "prod")), 3.0, 3)],
        [((("__name__", "keep"), ("a", "3"), ("env", "prod")), 4.0, 4)]]
    import base64
    assert first[0].headers["Authorization"] == "Basic " + base64.b64encode(b"u:s3cret").decode()
    assert first[0].headers["X-Scope-OrgID"] == "team-a"
    assert first[0].headers["X-Extra"] == "1"
    assert rx.requests[2].headers["Authorization"] == "Bearer tok"
    assert rx.requests[2].samples == [((("__name__", "keep"), ("a", "1")), 1.0, 1)]


def test_no_storage_type_and_no_remote_write_means_file(tmp_path):
    from clymene.storage.factory import open_storages

    storages = open_storages(_settings(STORAGE_FILE_PATH=str(tmp_path)),
                             SimpleNamespace(remote_write=()))
    assert [s.name for s in storages] == ["file"]
    storages[0].close()


# ---------------------------------------------------------------- the farm end to end


def test_farm_prometheus_keeps_getting_everything_on_time_while_elasticsearch_is_down(
        tmp_path, redis_url, prometheus):
    """STORAGE_TYPE=prometheus,elasticsearch with nothing listening at the Elasticsearch
    URL: from the first scrape on, every 1 s scrape reaches Prometheus within the
    second (no gap, no skipped scrape), and the Elasticsearch failures are counted."""
    from tests.exporter import Exporter
    from tests.farm import Farm
    from tests.servers import free_port, http_get, query, wait_until

    exp = Exporter(body=b"# TYPE m gauge\nm 1\n")
    config = ("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
              f"  - job_name: f\n    static_configs:\n      - targets: ['{exp.address}']\n")
    farm = Farm(tmp_path, redis_url, config, {
        "STORAGE_TYPE": "prometheus,elasticsearch",
        "PROMETHEUS_REMOTE_URL": prometheus.write_url,
        "ES_SERVER_URLS": f"http://127.0.0.1:{free_port()}",
        "ES_TIMEOUT": "1s"})
    farm.start("run")
    try:
        wait_until(lambda: query(prometheus, 'up{job="f"}'), timeout=30, interval=0.2)
        time.sleep(8)
        end = time.time()
        result = query(prometheus, 'm{job="f"}[60s]', at=end)
        stamps = [float(ts) for ts, _ in result[0]["values"]]
        # Within 0.5 s of the query time the newest scrape may still be on its way.
        newest = query(prometheus, 'timestamp(m{job="f"})', at=end)
        assert end - float(newest[0]["value"][1]) < 1.6

        def metrics() -> str:
            return http_get(farm.web_url + "/metrics")[1].decode()

        text = wait_until(lambda: (t := metrics()) and
                          'clymene_write_failures_total{storage="elasticsearch"}' in t and t,
                          timeout=10, interval=0.3)
    finally:
        farm.stop()
        exp.stop()
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert len(stamps) >= 7, stamps
    assert max(gaps) < 1.5, gaps
    assert 'clymene_storage_samples_dropped_total{reason="deadline",storage="elasticsearch"}' in text
