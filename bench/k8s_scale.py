"""Kubernetes discovery at scale: 5,000 pods on 500 nodes in the fake API server.

    python -m bench.k8s_scale [--pods 5000] [--nodes 500] [--churn 50] [--churn-seconds 20]
                              [--redis redis://127.0.0.1:6379/15]

Starts the fake API server (tests/k8s_fake.py, in this process) filled with the pods and
nodes, then `python -m clymene discovery` (its own process) with a `role: pod` job
keeping the pods annotated `prometheus.io/scrape` (the seed's rules), and measures:

- time from starting discovery to the full schedule: every pod's target in the Redis
  registry (`clymene:targets`);
- the discovery process' resident memory (VmRSS, peak VmHWM) once the schedule is full;
- churn: `--churn` pod changes per second for `--churn-seconds` (alternately a new pod and
  the deletion of an old one), and for each change the time until the registry shows it
  (p50, p95, max), polled every 50 ms.

The Redis database given is flushed first. Prints a Markdown block for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clymene import registry  # noqa: E402
from tests import k8s_fake as kf  # noqa: E402

CONFIG = """\
global:
  scrape_interval: 30s
  scrape_timeout: 10s
scrape_configs:
  - job_name: kubernetes-pods
    kubernetes_sd_configs:
      - role: pod
        api_server: {url}
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
        action: keep
        regex: "true"
      - action: labelmap
        regex: __meta_kubernetes_pod_label_(.+)
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: kubernetes_pod_name
      - target_label: cluster
        replacement: bench-cluster
"""


def make_pod(i: int, nodes: int) -> dict:
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    return kf.pod(f"pod-{i}", namespace=f"ns-{i % 20}", ip=ip, node_name=f"node-{i % nodes}",
                  containers=[kf.container("app", [("metrics", 9100)])],
                  labels={"app": f"app-{i % 50}", "pod-template-hash": "5d8f"},
                  annotations={"prometheus.io/scrape": "true", "prometheus.io/port": "9100"},
                  owner=("ReplicaSet", f"app-{i % 50}-5d8f"))


def addresses(client: redis.Redis) -> set[str]:
    return {json.loads(v)["labels"]["instance"] for v in client.hvals(registry.TARGETS_KEY)}


def rss_kib(pid: int) -> tuple[int, int]:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=5000)
    ap.add_argument("--nodes", type=int, default=500)
    ap.add_argument("--churn", type=float, default=50.0)
    ap.add_argument("--churn-seconds", type=float, default=20.0)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    args = ap.parse_args()

    client = redis.Redis.from_url(args.redis)
    client.flushdb()
    api = kf.FakeKube(bookmark_interval=60.0)
    api.start()
    for n in range(args.nodes):
        api.put(kf.node(f"node-{n}", f"192.168.{n >> 8}.{n & 255}"))
    for i in range(args.pods):
        api.put(make_pod(i, args.nodes))
    tmp = Path(tempfile.mkdtemp(prefix="k8s-scale-"))
    (tmp / "clymene.yml").write_text(CONFIG.format(url=api.url))
    env = dict(os.environ, CLYMENE_BROKER_URL=args.redis, CONFIG_FILE=str(tmp / "clymene.yml"),
               LOG_LEVEL="warn", PYTHONPATH=str(ROOT))
    log = open(tmp / "discovery.log", "wb")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "clymene", "discovery"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
                            start_new_session=True)
    try:
        while client.hlen(registry.TARGETS_KEY) < args.pods:
            if proc.poll() is not None:
                raise SystemExit(f"discovery exited; log {tmp / 'discovery.log'}")
            if time.monotonic() - started > 300:
                raise SystemExit("no full schedule within 300 s")
            time.sleep(0.05)
        full = time.monotonic() - started
        time.sleep(2)
        rss, hwm = rss_kib(proc.pid)

        # Churn: a new pod, then the deletion of an old one, alternately (built beforehand,
        # so that this loop keeps the rate).
        total = int(args.churn * args.churn_seconds)
        new_pods = [make_pod(args.pods + i, args.nodes) for i in range(total // 2 + 1)]
        pending: dict[str, tuple[float, bool]] = {}  # instance -> (sent, should exist)
        latencies: list[float] = []
        interval = 1.0 / args.churn
        next_new, next_old = args.pods, 0
        t0 = time.monotonic()
        last_poll = 0.0
        last_version = -1
        changes = 0
        while time.monotonic() - t0 < args.churn_seconds or pending:
            now = time.monotonic()
            if now - t0 < args.churn_seconds and now >= t0 + changes * interval:
                if changes % 2 == 0:
                    pod = new_pods[next_new - args.pods]
                    next_new += 1
                    api.put(pod)
                    pending[pod["status"]["podIP"] + ":9100"] = (now, True)
                else:
                    i = next_old
                    next_old += 1
                    old = make_pod(i, args.nodes)
                    api.delete("pod", old["metadata"]["namespace"], old["metadata"]["name"])
                    pending[old["status"]["podIP"] + ":9100"] = (now, False)
                changes += 1
            if now - last_poll >= 0.05 and registry.registry_version(client) != last_version:
                last_poll = now
                last_version = registry.registry_version(client)
                present = addresses(client)
                seen = time.monotonic()
                for inst, (sent, exists) in list(pending.items()):
                    if (inst in present) == exists:
                        latencies.append(seen - sent)
                        del pending[inst]
                if now - t0 > args.churn_seconds + 60:
                    raise SystemExit(f"{len(pending)} changes never reached the registry")
            time.sleep(0.002)
        rss_after, hwm_after = rss_kib(proc.pid)
        final = client.hlen(registry.TARGETS_KEY)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        api.stop()
    result = {
        "pods": args.pods, "nodes": args.nodes, "full_schedule_s": round(full, 2),
        "rss_mib": round(rss / 1024, 1), "peak_rss_mib": round(hwm / 1024, 1),
        "rss_after_churn_mib": round(rss_after / 1024, 1),
        "peak_rss_after_churn_mib": round(hwm_after / 1024, 1),
        "churn_per_s": args.churn, "churn_changes": changes,
        "latency_p50_s": round(percentile(latencies, 0.5), 3),
        "latency_p95_s": round(percentile(latencies, 0.95), 3),
        "latency_max_s": round(max(latencies), 3) if latencies else None,
        "final_targets": final,
    }
    print(json.dumps(result, indent=2))
    print(f"""
| pods / nodes | full schedule | discovery RSS (peak) | churn | change -> registry p50 / p95 / max |
|---|---:|---:|---:|---:|
| {args.pods:,} / {args.nodes} | {full:.1f} s | {rss / 1024:.0f} MiB ({hwm / 1024:.0f} MiB) | {args.churn:g}/s for {args.churn_seconds:g} s ({changes} changes) | {result['latency_p50_s']} / {result['latency_p95_s']} / {result['latency_max_s']} s |
""")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
