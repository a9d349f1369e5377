"""The differential suite's cases, loaded from the data files of this directory.

    suite = build_suite(sd_dir, base_ms)     # scripted targets + one Prometheus config
    suite.documents / invalid / staleness / limits: {case name: job name}
    suite.target_relabel / metric_relabel: job names of relabel/target.yml, metric.yml

Every case is its own job (so its series are told apart by `job`); documents, invalid
documents, staleness and limit cases each get their own scripted target(s); relabel cases
scrape the shared echo targets.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

from tests.differential.harness import OPENMETRICS, TEXT, Step, TargetSet

DATA = Path(__file__).resolve().parent
INTERVAL = "1s"
EXTERNAL_LABELS = {"ext_region": "eu-1", "ext_conflict": "from-global"}

_TS = re.compile(rb"\{\{ts_(ms|s)(?:\+(\d+))?\}\}")
_CONTENT_TYPES = {"om": OPENMETRICS, "text": TEXT}


def fill_timestamps(body: bytes, base_ms: int) -> bytes:
    """`{{ts_ms}}`, `{{ts_ms+N}}` (milliseconds) and `{{ts_s}}`, `{{ts_s+N}}` (seconds)."""

    def repl(m: re.Match[bytes]) -> bytes:
        offset = int(m.group(2) or 0)
        if m.group(1) == b"ms":
            return str(base_ms + offset).encode()
        return str(base_ms // 1000 + offset).encode()

    return _TS.sub(repl, body)


def _content_type_of(path: Path) -> str:
    return OPENMETRICS if path.suffix == ".om" else TEXT


def _file_cases(directory: Path) -> dict[str, dict[str, Any]]:
    """name -> {file, content_type, truncate} for a directory of documents + manifest."""
    cases: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix in (".txt", ".om"):
            cases[path.stem] = {"file": path, "content_type": _content_type_of(path)}
    manifest = directory / "manifest.yml"
    if manifest.exists():
        for name, opts in (yaml.safe_load(manifest.read_text()) or {}).items():
            case = dict(cases.get(name, {}))
            if "file" in opts:
                path = (directory / opts["file"]).resolve()
                case["file"] = path
                case.setdefault("content_type", _content_type_of(path))
            if "content_type" in opts:
                case["content_type"] = opts["content_type"]
            case["truncate"] = bool(opts.get("truncate", False))
            if "file" not in case:
                raise ValueError(f"{manifest}: case {name} has no file")
            cases[name] = case
    return cases


def _steps(raw: list[dict[str, Any]], base_ms: int, where: str) -> list[Step]:
    steps = []
    for i, item in enumerate(raw):
        unknown = set(item) - {"body", "status", "delay", "content_type"}
        if unknown:
            raise ValueError(f"{where}: step {i}: unknown keys {sorted(unknown)}")
        ctype = item.get("content_type", "text")
        steps.append(Step(body=fill_timestamps(str(item.get("body", "")).encode(), base_ms),
                          content_type=_CONTENT_TYPES.get(ctype, ctype),
                          status=int(item.get("status", 200)),
                          delay=float(item.get("delay", 0.0))))
    return steps


def echo_body(base: bytes) -> Any:
    """The echo targets' answer: relabel/body.txt plus the request's path and params."""

    def body(path: str) -> bytes:
        parts = urlsplit(path)
        lines = [base, b'echo_request{path="%s"} 1\n' % _escape(parts.path)]
        for i, (name, value) in enumerate(parse_qsl(parts.query, keep_blank_values=True)):
            lines.append(b'echo_param{index="%d",name="%s",value="%s"} 1\n'
                         % (i, _escape(name), _escape(value)))
        return b"".join(lines)

    return body


def _escape(s: str) -> bytes:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").encode()


@dataclass
class Suite:
    targets: TargetSet
    scrape_configs: list[dict[str, Any]] = field(default_factory=list)
    documents: dict[str, str] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)
    staleness: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)
    target_relabel: list[str] = field(default_factory=list)
    metric_relabel: list[str] = field(default_factory=list)
    exporters: dict[str, str] = field(default_factory=dict)
    sd_removal_job: str = ""
    config_removal_job: str = ""

    def add_job(self, job: str, target_names: list[str], **extra: Any) -> None:
        config = {"job_name": job,
                  "static_configs": [{"targets": ["{{" + t + "}}" for t in target_names]}]}
        config.update(extra)
        self.scrape_configs.append(config)

    def config_yaml(self, without: tuple[str, ...] = ()) -> str:
        """The configuration of both systems (jobs named in `without` left out)."""
        config = {"global": {"scrape_interval": INTERVAL, "scrape_timeout": INTERVAL,
                             "external_labels": EXTERNAL_LABELS},
                  "scrape_configs": [c for c in self.scrape_configs
                                     if c["job_name"] not in without]}
        return self.targets.substitute(yaml.safe_dump(config, allow_unicode=True,
                                                      sort_keys=False))


def build_suite(sd_dir: Path, base_ms: int, exporters: dict[str, str]) -> Suite:
    """Every case of the data files, with its scripted targets started."""
    suite = Suite(TargetSet())
    targets = suite.targets

    for name, case in _file_cases(DATA / "documents").items():
        body = fill_timestamps(case["file"].read_bytes(), base_ms)
        targets.add(f"doc-{name}", [Step(body, case["content_type"],
                                          truncate=case.get("truncate", False))])
        suite.documents[name] = f"doc-{name}"
        suite.add_job(f"doc-{name}", [f"doc-{name}"])

    for name, case in _file_cases(DATA / "invalid").items():
        body = fill_timestamps(case["file"].read_bytes(), base_ms)
        targets.add(f"bad-{name}", [Step(body, case["content_type"],
                                          truncate=case.get("truncate", False))])
        suite.invalid[name] = f"bad-{name}"
        suite.add_job(f"bad-{name}", [f"bad-{name}"])

    for name, case in yaml.safe_load((DATA / "staleness.yml").read_text()).items():
        targets.add(f"stale-{name}", _steps(case["steps"], base_ms, f"staleness.yml: {name}"))
        suite.staleness[name] = f"stale-{name}"
        suite.add_job(f"stale-{name}", [f"stale-{name}"])

    for name, case in yaml.safe_load((DATA / "limits.yml").read_text()).items():
        steps = _steps(case["steps"], base_ms, f"limits.yml: {name}")
        names = [f"limit-{name}-{i}" for i in range(int(case.get("targets", 1)))]
        for target in names:
            targets.add(target, steps)
        suite.limits[name] = f"limit-{name}"
        suite.add_job(f"limit-{name}", names, **case.get("job", {}))

    # Relabel cases: echo targets and one target with explicit timestamps.
    echo = echo_body((DATA / "relabel" / "body.txt").read_bytes())
    for i in range(1, 5):
        targets.add(f"echo{i}", [Step(echo)])
    stamped = [{"body": f"with_ts {k} {{{{ts_ms+{100 * k}}}}}\nwithout_ts 2\n"}
               for k in range(1, 5)] + [{"body": "without_ts 2\n"}]
    for honor in ("true", "false"):
        targets.add(f"stamped-{honor}", _steps(stamped, base_ms, "stamped"))
    for kind, out in (("target", suite.target_relabel), ("metric", suite.metric_relabel)):
        text = (DATA / "relabel" / f"{kind}.yml").read_text()
        text = text.replace("{{sd_dir}}", str(sd_dir))
        for job in yaml.safe_load(text):
            suite.scrape_configs.append(job)
            out.append(job["job_name"])
    meta_dir = sd_dir / "meta"
    meta_dir.mkdir(parents=True, exist_ok=True)
    (meta_dir / "group-one.json").write_text(targets.substitute(json.dumps(
        [{"targets": ["{{echo4}}"], "labels": {"from_file": "yes"}}])))

    # Target removal: a file_sd job; the run rewrites its file without `sd-gone`.
    steps = [Step(b"kept 1\n")]
    targets.add("sd-kept", steps)
    targets.add("sd-gone", [Step(b'gone_series{a="1"} 1\ngone_series{a="2"} 2\n')])
    suite.sd_removal_job = "sd-removal"
    removal_dir = sd_dir / "removal"
    removal_dir.mkdir(parents=True, exist_ok=True)
    suite.scrape_configs.append({"job_name": "sd-removal",
                                 "file_sd_configs": [{"files": [f"{removal_dir}/*.json"]}]})
    write_sd_file(removal_dir / "targets.json", ["{{sd-kept}}", "{{sd-gone}}"], targets)

    # Job removal: the run rewrites the configuration without this job.
    targets.add("cfg-gone", [Step(b'job_gone{a="1"} 1\njob_gone{a="2"} 2\n')])
    suite.config_removal_job = "cfg-removal"
    suite.add_job("cfg-removal", ["cfg-gone"])

    # Real exporters, scraped live by both; their addresses are given.
    for name, address in exporters.items():
        suite.exporters[name] = f"exporter-{name}"
        suite.scrape_configs.append({"job_name": f"exporter-{name}",
                                     "static_configs": [{"targets": [address]}]})
    # The captured copies are added by the caller (they need a live fetch first).
    return suite


def write_sd_file(path: Path, addresses: list[str], targets: TargetSet) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(targets.substitute(json.dumps(
        [{"targets": addresses, "labels": {"sd": "removal"}}])))
    tmp.replace(path)


# ---------------------------------------------------------------- for test collection


def case_names(kind: str) -> list[str]:
    """The case names of one kind, read from the data files (no server started)."""
    if kind in ("documents", "invalid"):
        return list(_file_cases(DATA / kind))
    if kind in ("staleness", "limits"):
        return list(yaml.safe_load((DATA / f"{kind}.yml").read_text()))
    if kind in ("target", "metric"):
        return [job["job_name"] for job in yaml.safe_load((DATA / "relabel" / f"{kind}.yml")
                                                          .read_text())]
    raise ValueError(f"unknown kind of case {kind!r}")


def case_options(kind: str, name: str) -> dict[str, Any]:
    """A staleness or limits case as written in its YAML file."""
    return yaml.safe_load((DATA / f"{kind}.yml").read_text())[name]


def relabel_job(kind: str, name: str) -> dict[str, Any]:
    """A relabel case's scrape config as written in relabel/<kind>.yml."""
    jobs = yaml.safe_load((DATA / "relabel" / f"{kind}.yml").read_text())
    return next(job for job in jobs if job["job_name"] == name)
