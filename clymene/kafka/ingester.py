"""`clymene ingester`: drain `--kafka.consumer.topic` into every backend of STORAGE_TYPE.

One consumer thread per backend (see clymene.kafka.consumer). The process serves
`/metrics` (counters plus `clymene_ingester_consumer_lag{backend,topic,partition}` and
`clymene_ingester_backend_retrying{backend}`), `/-/healthy` and `/-/ready` on
`--ingester.listen-address`, and adds its counters to the farm's Redis hash
`clymene:stats` when a broker URL (`--broker.url`) is set.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from clymene.kafka import encoding as enc
from clymene.kafka.client import consumer_config, producer_config
from clymene.kafka.consumer import BackendConsumer
from clymene.kafka.metrics import Exporter, run_flusher
from clymene.kafka.producer import Publisher
from clymene.storage import Storage

log = logging.getLogger(__name__)


def dlq_publisher(settings: Any) -> Publisher:
    """A producer on the consumer side's brokers and credentials, acks=all."""
    conf = producer_config(settings)
    consumer = consumer_config(settings, "unused")
    for key in list(conf):
        if key.startswith(("ssl.", "sasl.", "security.")):
            del conf[key]
    for key, value in consumer.items():
        if key == "bootstrap.servers" or key.startswith(("ssl.", "sasl.", "security.")):
            conf[key] = value
    conf["acks"] = "all"
    conf["enable.idempotence"] = True
    conf.pop("max.in.flight.requests.per.connection", None)
    return Publisher(conf, settings.kafka_consumer_topic + ".dlq", partitions=1, name="dlq")


class Ingester:
    def __init__(self, settings: Any, storages: list[Storage],
                 redis_client: object | None = None) -> None:
        for storage in storages:
            if storage.name == "kafka":
                raise ValueError("the ingester cannot write to STORAGE_TYPE=kafka (it would "
                                 "feed its own topic); name the databases instead")
        if not storages:
            raise ValueError("the ingester needs at least one backend in STORAGE_TYPE")
        enc.check_encoding(settings.kafka_consumer_encoding, "--kafka.consumer.encoding")
        self.settings = settings
        self.topic = settings.kafka_consumer_topic
        self.storages = storages
        self.stop = threading.Event()
        self.dlq = dlq_publisher(settings)
        self.consumers = [
            BackendConsumer(
                storage, consumer_config(settings,
                                         f"{settings.kafka_consumer_group_id}-{storage.name}"),
                self.topic, settings.kafka_consumer_encoding, self.dlq,
                self.stop, batch_messages=settings.ingester_batch_messages,
                write_timeout=settings.ingester_write_timeout,
                max_backoff=settings.ingester_max_backoff,
                partitions=settings.kafka_consumer_partitions)
            for storage in storages
        ]
        self.exporter = Exporter(redis_client)
        self.exporter.add_gauges(self._gauges)
        self._threads: list[threading.Thread] = []

    def _gauges(self) -> list[tuple[str, str, float]]:
        out = []
        topic = self.topic
        for c in self.consumers:
            for partition, lag in sorted(c.lag().items()):
                out.append(("clymene_ingester_consumer_lag",
                            f'clymene_ingester_consumer_lag{{backend="{c.backend}",'
                            f'partition="{partition}",topic="{topic}"}}', float(lag)))
        for c in self.consumers:
            out.append(("clymene_ingester_backend_retrying",
                        f'clymene_ingester_backend_retrying{{backend="{c.backend}"}}',
                        1.0 if c.retrying else 0.0))
        return out

    def ready(self) -> bool:
        return all(c.ready.is_set() for c in self.consumers)

    def start(self) -> None:
        for c in self.consumers:
            t = threading.Thread(target=c.run, name=f"ingester-{c.backend}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=run_flusher, args=(self.exporter, self.stop),
                             name="ingester-stats", daemon=True)
        t.start()
        self._threads.append(t)

    def close(self, timeout: float = 30.0) -> None:
        """Stop consuming: the batches being written finish and are committed, the
        consumers leave their groups."""
        self.stop.set()
        for t in self._threads:
            t.join(timeout)
        self.exporter.flush()
        self.dlq.close()
        for storage in self.storages:
            storage.close()


def serve_admin(address: str, exporter: Exporter, ready: Any) -> ThreadingHTTPServer:
    """/metrics, /-/healthy and /-/ready on `host:port`, in a daemon thread."""
    host, _, port = address.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, exporter.render(), "text/plain; version=0.0.4")
            elif path == "/-/healthy":
                self._send(200, b"OK\n")
            elif path == "/-/ready":
                ok = ready()
                self._send(200 if ok else 503, b"OK\n" if ok else b"not ready\n")
            else:
                self._send(404, b"not found\n")

        def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("admin: " + fmt, *args)

    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="ingester-admin", daemon=True).start()
    return server


def run(settings: Any, stop: threading.Event, redis_client: object | None = None) -> int:
    """The ingester process until `stop` is set."""
    from clymene.storage.factory import open_storages

    storages = open_storages(settings)
    try:
        ingester = Ingester(settings, storages, redis_client)
    except ValueError:
        for storage in storages:
            storage.close()
        raise
    server = None
    if settings.ingester_listen_address:
        server = serve_admin(settings.ingester_listen_address, ingester.exporter, ingester.ready)
    ingester.start()
    log.info("ingester: %s -> %s", settings.kafka_consumer_topic,
             ", ".join(s.name for s in storages))
    stop.wait()
    log.info("ingester stopping")
    ingester.close()
    if server is not None:
        server.shutdown()
    return 0
