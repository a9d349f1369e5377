"""STORAGE_TYPE=gateway: agents and scrape workers send to a clymene gateway, which
writes on (here straight to a remote write receiver and to a Loki receiver)."""

from __future__ import annotations

import time

from clymene import settings as settings_module
from clymene.gateway import server as gateway_server
from clymene.logs.agent import open_output
from clymene.logs.config import load_string as load_promtail_config
from clymene.storage.factory import open_storages
from tests.loki_receiver import LokiReceiver
from tests.servers import free_port, wait_until
from tests.test_logs_gateway import _ready, _Running


def test_metrics_and_logs_through_the_gateway(tmp_path, receiver):
    loki = LokiReceiver()
    port = free_port()
    gateway = _Running(gateway_server.run, {
        "STORAGE_TYPE": "prometheus,loki", "PROMETHEUS_REMOTE_URL": receiver.url,
        "LOKI_CLIENT_URL": loki.url, "GATEWAY_HTTP_SERVER_HOST_PORT": f"127.0.0.1:{port}",
        "CONFIG_FILE": str(tmp_path / "none.yml")})
    try:
        wait_until(lambda: _ready(port), 10)
        agent_env = {"STORAGE_TYPE": "gateway", "GATEWAY_HTTP_URL": f"http://127.0.0.1:{port}",
                     "CONFIG_FILE": str(tmp_path / "none.yml")}
        settings = settings_module.load(agent_env)

        # Metrics: a batch written to the `gateway` storage reaches the receiver as sent.
        [storage] = open_storages(settings, config=_empty_config())
        assert storage.name == "gateway"
        now = int(time.time() * 1000)
        batch = [((("__name__", "up"), ("instance", "h:1"), ("job", "j")), 1.0, now),
                 ((("__name__", "x_total"), ("job", "j"), ("k", "한글 v")), 42.5, now)]
        storage.write(batch, time.monotonic() + 10)
        assert receiver.samples() == batch

        # Logs: the log agent's `gateway` output pushes Loki's API to the gateway.
        cfg = load_promtail_config("scrape_configs: []\n", "promtail.yml")
        output = open_output(settings, cfg)
        assert output.push([('{job="a"}', [(1, "one"), (2, "two")])], "", None) is True
        assert loki.lines("") == {'{job="a"}': [(1, "one"), (2, "two")]}
    finally:
        assert gateway.close() == 0
        loki.stop()


def _empty_config():
    from clymene.config import load_string

    return load_string("", "none.yml")
