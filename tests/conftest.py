"""Shared fixtures. The servers themselves live in tests/servers.py and tests/receiver.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.receiver import RemoteWriteReceiver
from tests.servers import RedisServer, Server, start_node_exporter, start_prometheus, start_redis


@pytest.fixture
def prometheus(tmp_path) -> Iterator[Server]:
    """A fresh Prometheus (no scrape configs) with its remote write receiver on."""
    server = start_prometheus(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def node_exporter(tmp_path) -> Iterator[Server]:
    server = start_node_exporter(tmp_path)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    """One Redis for the session; each test takes its own database with `redis_url`."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """`redis://127.0.0.1:PORT/N`: a database no other test of the session uses, empty."""
    return redis_server.redis_url(redis_server.fresh_db())


@pytest.fixture
def receiver() -> Iterator[RemoteWriteReceiver]:
    """A remote write receiver answering 204 unless scripted (`receiver.respond(...)`)."""
    rx = RemoteWriteReceiver()
    yield rx
    rx.stop()


@pytest.fixture(scope="session")
def elasticsearch_server(tmp_path_factory) -> Iterator[Server]:
    """One Elasticsearch 7.9.2 for the session (~10 s to start, ~740 MB)."""
    from tests.servers import start_elasticsearch

    server = start_elasticsearch(tmp_path_factory.mktemp("es"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def vm_listeners(tmp_path_factory) -> Iterator[Server]:
    """One VictoriaMetrics with its OpenTSDB HTTP/telnet listeners for the session."""
    from tests.servers import start_victoria_metrics_listeners

    server = start_victoria_metrics_listeners(tmp_path_factory.mktemp("vm"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def influxdb_server(tmp_path_factory) -> Iterator[Server]:
    """One InfluxDB 1.6 (v1 API, OpenTSDB listener into database `opentsdb`)."""
    from tests.servers import start_influxdb

    server = start_influxdb(tmp_path_factory.mktemp("influxdb"))
    yield server
    server.stop()
