"""The log agent loop: find files, read lines, run the pipeline, batch, send, and store
positions only after the output accepted the batch.

One reader thread (this loop) and one sender thread, with at most `max_pending` batches
between them: when the output is down the sender retries, the queue fills, and the
reader stops reading (memory stays bounded, positions stand still), then catches up.

Each batch carries a snapshot of every file's position taken when the batch was closed:
all lines read before it are in that batch or an earlier one, or still held by a stage
(then the snapshot is the start of the oldest held line). The sender applies the
snapshot once the batch was accepted (or refused for good), and writes the positions
file every `sync_period` and at a clean stop.
"""

from __future__ import annotations

import glob
import logging
import os
import queue
import threading
import time
from typing import Any, Protocol

from clymene.logs import config as log_config
from clymene.logs import loki_pb
from clymene.logs.config import PromtailConfig, ScrapeConfig, targets_of
from clymene.logs.loki import PushAborted
from clymene.logs.positions import Position, Positions
from clymene.logs.stages import TENANT_LABEL, Pipeline
from clymene.logs.tail import Entry, FileTail, is_compressed

log = logging.getLogger(__name__)


class Output(Protocol):
    def push(self, streams: list[loki_pb.Stream], tenant: str | None,
             stop: threading.Event | None = None) -> bool: ...

    def close(self) -> None: ...


class _Target:
    __slots__ = ("scrape", "labels", "glob", "pipeline")

    def __init__(self, scrape: ScrapeConfig, labels: dict[str, str], pipeline: Pipeline):
        self.scrape = scrape
        self.labels = labels
        self.glob = labels["__path__"]
        self.pipeline = pipeline


class Agent:
    def __init__(self, cfg: PromtailConfig, output: Output, *, batch_wait: float = 1.0,
                 batch_size: int = 1 << 20, poll_interval: float = 0.05,
                 sync_interval: float = 0.25, max_pending: int = 2,
                 hostname: str | None = None) -> None:
        self.cfg = cfg
        self.output = output
        self.batch_wait = batch_wait
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.sync_interval = min(sync_interval, cfg.target_sync_period)
        self.positions = Positions(cfg.positions_file)
        self.host = hostname or log_config.hostname()
        self.static_targets = [_Target(sc, labels, cfg.build_pipeline(sc))
                               for sc, labels in targets_of(cfg, self.host)]
        self.targets = list(self.static_targets)
        # kubernetes_sd_configs: one KubernetesSD per entry, started lazily in run()
        self._sds: list[tuple[ScrapeConfig, Any]] = []
        self._sd_lists: dict[int, object] = {}
        self._sd_targets: dict[tuple, _Target] = {}
        self._finished: dict[tuple[int, int], int] = {}  # (dev, ino) -> offset read to
        self._last_snapshot: dict[str, Position | None] = {}
        self._removed: set[str] = set()
        self._stop: threading.Event | None = None
        self.tails: dict[str, tuple[FileTail, _Target]] = {}
        self._queue: queue.Queue[Any] = queue.Queue(max_pending)
        self._label_cache: dict[tuple, str] = {}
        self._batch: dict[str, dict[str, list[tuple[int, str]]]] = {}
        self._batch_bytes = 0
        self._batch_started = 0.0
        self.lines_read = 0
        self.dropped_no_labels = 0
        self.entries_sent = 0
        self._sender_error: BaseException | None = None
        self._sender_stop = threading.Event()
        self.stop_grace = 5.0  # at a clean stop, how long a failing push may still retry

    # -- discovery

    def start_discovery(self) -> None:
        from clymene.discovery.kubernetes import KubernetesSD

        for sc in self.cfg.scrape_configs:
            for i, k in enumerate(sc.kubernetes_sd_configs):
                self._sds.append((sc, KubernetesSD(k, f"{sc.job_name}/kubernetes/{i}")))

    def sync_targets(self) -> None:
        """Rebuild the discovered targets when a discovery's groups changed."""
        changed = False
        for _sc, sd in self._sds:
            groups = sd.groups()
            if self._sd_lists.get(id(sd)) is not groups:
                self._sd_lists[id(sd)] = groups
                changed = True
        if not changed:
            return
        targets: dict[tuple, _Target] = {}
        for sc, sd in self._sds:
            for group in self._sd_lists[id(sd)]:  # type: ignore[attr-defined]
                for t in group.targets:
                    labels = log_config.relabel_target(sc, {**group.labels, **t}, self.host)
                    if labels is None:
                        continue
                    key = (sc.job_name, tuple(sorted(labels.items())))
                    old = self._sd_targets.get(key)
                    targets[key] = old or _Target(sc, labels, self.cfg.build_pipeline(sc))
        self._sd_targets = targets
        self.targets = self.static_targets + list(targets.values())

    def sync_files(self) -> None:
        if self._sds:
            self.sync_targets()
        seen: set[str] = set()
        new: list[tuple[str, _Target]] = []
        for target in self.targets:
            for path in glob.glob(target.glob):
                if path in seen or is_compressed(path) or not os.path.isfile(path):
                    continue
                seen.add(path)
                if path not in self.tails:
                    new.append((path, target))
        if not new:
            return
        # A file already open under another name (a rotated file still being read, which
        # the glob also matches) is not opened twice; paths with a saved position go
        # first, so after a restart the file they name is drained under its old path.
        new.sort(key=lambda pt: self.positions.get(pt[0]) is None)
        open_ids = {(h.dev, h.ino) for t, _ in self.tails.values() for h in t.handles}
        for path, target in new:
            try:
                st = os.stat(path)
            except OSError:
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in open_ids:
                continue
            saved = self.positions.get(path)
            if saved is None and ident in self._finished:
                saved = (self._finished[ident], *ident)  # read to its end under its old name
            labels = {k: v for k, v in target.labels.items() if not k.startswith("__")}
            labels["filename"] = path
            tail = FileTail(path, labels, time.time_ns())
            try:
                tail.open_at(saved)
            except OSError as exc:
                log.warning("cannot open %s: %s", path, exc)
                continue
            open_ids.update((h.dev, h.ino) for h in tail.handles)
            self.tails[path] = (tail, target)
            log.info("tailing %s", path)

    # -- the loop

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        sender = threading.Thread(target=self._send_loop, name="log-sender", daemon=True)
        sender.start()
        self.start_discovery()
        next_sync = 0.0
        idle = self.poll_interval
        next_save = time.monotonic() + self.cfg.positions_sync
        try:
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_save:
                    self.positions.save()  # what the sender recorded as acknowledged
                    next_save = now + self.cfg.positions_sync
                if now >= next_sync:
                    self.sync_files()
                    next_sync = now + self.sync_interval
                    if not self._batch:
                        # Positions that moved with no line to send (a file opened at a
                        # known offset, a truncation) go through the queue too, in order.
                        snap = self._snapshot()
                        if snap != self._last_snapshot:
                            self._enqueue(({}, snap))
                got = self.read_round()
                for target in self.targets:
                    if target.pipeline.holders:
                        self._add(target.pipeline.flush(time.monotonic(), False))
                if self._batch and (self._batch_bytes >= self.batch_size or
                                    time.monotonic() - self._batch_started >= self.batch_wait):
                    self._close_batch()
                if self._sender_error is not None:
                    raise RuntimeError("log sender failed") from self._sender_error
                if got:
                    idle = self.poll_interval
                else:  # idle: poll less often, up to 4x (many files cost a read each)
                    stop.wait(idle)
                    idle = min(idle * 2, self.poll_interval * 4)
        finally:
            # A clean stop: what was read goes out (for up to stop_grace while the output
            # fails); held partial lines and undelivered batches stay unread.
            deadline = time.monotonic() + self.stop_grace
            if self._batch:
                self._close_batch(deadline)
            self._enqueue(None, deadline)
            sender.join(max(0.0, deadline - time.monotonic()))
            if sender.is_alive():
                self._sender_stop.set()
                sender.join()
            self.positions.save()
            for tail, _ in self.tails.values():
                tail.close()
            for _, sd in self._sds:
                sd.close()

    def read_round(self) -> int:
        total = 0
        finished = []
        for path, (tail, target) in self.tails.items():
            lines, starts = tail.read()
            if tail.finished:
                if len(self._finished) > 10_000:
                    self._finished.clear()
                for dev, ino, offset in tail.finished:
                    self._finished[(dev, ino)] = offset
                tail.finished.clear()
            if lines:
                total += len(lines)
                ts = time.time_ns()
                labels = tail.labels
                entries = [Entry(labels, line, ts, tail, start)
                           for line, start in zip(lines, starts, strict=True)]
                self._add(target.pipeline.run(entries))
                if self._batch_bytes >= self.batch_size:
                    self._close_batch()
            elif tail.done:
                finished.append(path)
        for path in finished:
            self.tails.pop(path)[0].close()
            self._removed.add(path)  # its position goes once the last lines were accepted
        self.lines_read += total
        return total

    def _add(self, entries: list[Entry]) -> None:
        if not entries:
            return
        if not self._batch:
            self._batch_started = time.monotonic()
        cache = self._label_cache
        batch = self._batch
        size = 0
        for e in entries:
            labels = e.labels
            key = tuple(labels.items())
            text = cache.get(key)
            if text is None:
                if len(cache) > 100_000:
                    cache.clear()
                text = loki_pb.format_labels(
                    {k: v for k, v in labels.items() if not k.startswith("__")})
                cache[key] = text
            if text == "{}":
                # Loki refuses a whole push holding a stream without labels
                self.dropped_no_labels += 1
                continue
            tenant = labels.get(TENANT_LABEL, "")
            streams = batch.get(tenant)
            if streams is None:
                streams = batch[tenant] = {}
            stream = streams.get(text)
            if stream is None:
                streams[text] = [(e.ts, e.line)]
            else:
                stream.append((e.ts, e.line))
            size += len(e.line)
        self._batch_bytes += size

    def _snapshot(self) -> dict[str, Position | None]:
        """Every file's position now; None for files deleted and read to their end (an
        inode number may come back for a new file at the same path)."""
        snap: dict[str, Position | None] = {}
        for path, (tail, target) in self.tails.items():
            pos = tail.position()
            if pos is None:
                continue
            held = target.pipeline.held(tail) if target.pipeline.holders else None
            if held is not None and held < pos[0]:
                pos = (held, pos[1], pos[2])
            snap[path] = pos
        for path in self._removed:
            if path not in snap:
                snap[path] = None
        self._removed.clear()
        return snap

    def _close_batch(self, give_up_at: float | None = None) -> None:
        item = (self._batch, self._snapshot())
        self._batch = {}
        self._batch_bytes = 0
        self._enqueue(item, give_up_at)

    def _enqueue(self, item: tuple | None, give_up_at: float | None = None) -> None:
        """Hand an item to the sender; blocks while the output is down (reading stops
        here). When stopping (`give_up_at`), gives up at that time: the sender is told
        to stop and the item's lines stay unread (positions did not move)."""
        if item is not None:
            self._last_snapshot = item[1]
        while True:
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                if give_up_at is None and self._stop is not None and self._stop.is_set():
                    give_up_at = time.monotonic() + self.stop_grace
                if give_up_at is not None:
                    if time.monotonic() > give_up_at or self._sender_error is not None:
                        self._sender_stop.set()
                        return
                elif self._sender_error is not None:
                    raise RuntimeError("log sender failed") from self._sender_error

    def _send_loop(self) -> None:
        stop = self._sender_stop
        last_save = time.monotonic()
        try:
            while True:
                try:
                    item = self._queue.get(timeout=0.2)
                except queue.Empty:
                    item = False
                if item is None or stop.is_set():
                    return
                if item:
                    batch, snapshot = item
                    for tenant, streams in batch.items():
                        self.output.push(list(streams.items()), tenant or None, stop)
                        self.entries_sent += sum(len(v) for v in streams.values())
                    self.positions.update(snapshot)
                if time.monotonic() - last_save >= self.cfg.positions_sync:
                    self.positions.save()
                    last_save = time.monotonic()
        except PushAborted:
            log.warning("stopped before a batch was delivered; it will be read again")
        except BaseException as exc:  # surfaced by the reader
            self._sender_error = exc
            log.exception("log sender failed")


def metrics_text(agent: Agent) -> str:
    """The agent's counters in Prometheus text format (promtail's names where they exist)."""
    out = agent.output
    tails = [t for t, _ in agent.tails.values()]
    rows = [
        ("promtail_files_active_total", "gauge", "Files being tailed.", len(tails)),
        ("promtail_read_lines_total", "counter", "Lines read from files.", agent.lines_read),
        ("promtail_sent_entries_total", "counter", "Entries the output accepted.",
         getattr(out, "sent_entries", 0)),
        ("promtail_dropped_entries_total", "counter",
         "Entries the output refused for good (4xx) or gave up on.",
         getattr(out, "dropped_entries", 0)),
        ("promtail_batch_retries_total", "counter", "Push retries.", getattr(out, "retries", 0)),
        ("promtail_dropped_no_labels_total", "counter",
         "Entries left with no label after the pipeline (Loki refuses them).",
         agent.dropped_no_labels),
        ("promtail_file_rotations_total", "counter", "Rotations by rename seen.",
         sum(t.rotations for t in tails)),
        ("promtail_file_truncations_total", "counter", "Truncations (copytruncate) seen.",
         sum(t.truncations for t in tails)),
    ]
    lines = []
    for name, kind, help_, value in rows:
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {value}"]
    return "\n".join(lines) + "\n"


def serve_http(agent: Agent, address: str, port: int) -> Any:
    """promtail's HTTP server: /ready and /metrics."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/ready":
                code, body, ctype = 200, b"Ready\n", "text/plain"
            elif self.path == "/metrics":
                code, body = 200, metrics_text(agent).encode()
                ctype = "text/plain; version=0.0.4"
            else:
                code, body, ctype = 404, b"not found\n", "text/plain"
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="promtail-http", daemon=True).start()
    return server


def open_output(settings: Any, cfg: PromtailConfig) -> Output:
    """The outputs STORAGE_TYPE names (loki, kafka, elasticsearch, gateway; none: loki).
    Loki's URL comes from
    --loki.client.url, else the config's clients[0].url."""
    from clymene.storage import storage_names
    from clymene.storage.factory import OPENERS

    log_kinds = ("loki", "kafka", "elasticsearch", "gateway")
    names = storage_names(settings)
    kinds = [k for k in names if k in log_kinds]
    # One STORAGE_TYPE serves metrics and logs: metrics-only backends are skipped here,
    # a name neither side knows is refused.
    unknown = [k for k in names if k not in log_kinds and k not in OPENERS]
    if unknown:
        raise ValueError(f"STORAGE_TYPE: {', '.join(unknown)} cannot store logs "
                         f"(log outputs: {', '.join(log_kinds)})")
    kinds = kinds or ["loki"]
    outputs: list[Any] = []
    for kind in kinds:
        if kind == "elasticsearch":
            from clymene.logs.elasticsearch import ElasticsearchLogOutput

            outputs.append(ElasticsearchLogOutput(
                list(settings.es_server_urls), settings.es_index_prefix,
                settings.es_clymene_promtail_index_name, settings.es_index_date_pattern,
                settings.es_timeout, settings.es_username, settings.es_password,
                settings.es_num_shards, settings.es_num_replicas,
                settings.es_create_index_templates, settings.loki_client_min_backoff))
        elif kind == "kafka":
            from clymene.kafka.client import producer_config
            from clymene.kafka.producer import Publisher
            from clymene.logs.kafka import KafkaLogOutput

            topic = settings.kafka_producer_promtail_topic
            outputs.append(KafkaLogOutput(Publisher(producer_config(settings), topic,
                                                    name="kafka-logs"), topic,
                                          min_backoff=settings.loki_client_min_backoff))
        elif kind == "gateway":
            # The clymene gateway speaks Loki's push API (clymene/gateway/logs.py).
            base = settings.gateway_http_url.rstrip("/")
            outputs.append(_loki_client(settings, cfg, url=base + "/loki/api/v1/push"))
        else:
            outputs.append(_loki_client(settings, cfg))
    if len(outputs) == 1:
        return outputs[0]
    from clymene.logs.kafka import MultiOutput

    return MultiOutput(outputs)


def _loki_client(settings: Any, cfg: PromtailConfig, url: str = "") -> Output:
    from clymene.logs import loki

    client = cfg.clients[0] if cfg.clients else {}
    url = url or settings.loki_client_url or client.get("url", "")
    if not url:
        raise ValueError("no output: set --loki.client.url (LOKI_CLIENT_URL) or clients[0].url")
    return loki.from_settings(
        settings, url,
        tenant=settings.loki_client_tenant_id or str(client.get("tenant_id") or ""))


def run_promtail(settings: Any, stop: threading.Event) -> int:
    """`clymene promtail`: load the config, open the output, tail until `stop`."""
    from clymene.logs import config as log_config

    path = settings.promtail_config_file or settings.config_file
    try:
        cfg = log_config.load_file(path)
        output = open_output(settings, cfg)
    except ValueError as exc:
        log.error("refusing to start: %s", exc)
        return 1
    agent = Agent(cfg, output, batch_wait=settings.loki_client_batch_wait,
                  batch_size=settings.loki_client_batch_size_bytes)
    log.info("promtail: %d targets, positions in %s", len(agent.targets), cfg.positions_file)
    server = None
    if not cfg.server.get("disable"):
        address = str(cfg.server.get("http_listen_address") or "0.0.0.0")
        port = int(cfg.server.get("http_listen_port", 9080))
        try:
            server = serve_http(agent, address, port)
            log.info("promtail: /ready and /metrics on %s:%d", *server.server_address[:2])
        except OSError as exc:
            log.error("promtail: cannot listen on %s:%d: %s", address, port, exc)
            return 1
    try:
        agent.run(stop)
    finally:
        output.close()
        if server is not None:
            server.shutdown()
            server.server_close()
    return 0
