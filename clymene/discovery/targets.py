"""Turn discovered target groups into scrape targets: Prometheus' populateLabels.

Defaults (job, __scheme__, __metrics_path__, __scrape_interval__, __scrape_timeout__,
__param_*) are added when the group does not set them, relabel_configs run, a default
port is added (2.42 still does this), `__meta_*` labels go, `instance` defaults to
`__address__`, and labels starting with `__` are kept out of the final label set but used
for the URL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from clymene import relabel
from clymene.config import format_duration, parse_duration
from clymene.registry import Target, target_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetGroup:
    """A group of targets as service discovery hands it over."""

    source: str
    targets: list[dict[str, str]]  # each has __address__ (and maybe more labels)
    labels: dict[str, str] = field(default_factory=dict)


def _add_default_port(address: str, scheme: str) -> str:
    # Prometheus 2.42 appends :80 or :443 when the address has no port.
    if address.startswith("["):
        if "]:" in address:
            return address
        return f"{address}:{443 if scheme == 'https' else 80}"
    if ":" in address:
        return address
    return f"{address}:{443 if scheme == 'https' else 80}"


def scrape_url(labels: dict[str, str], params: dict[str, list[str]]) -> str:
    """The URL of a target: like Prometheus' Target.URL(), `__param_*` overriding params."""
    values = {k: list(v) for k, v in params.items()}
    for name, value in labels.items():
        if name.startswith("__param_"):
            key = name[len("__param_"):]
            if values.get(key):
                values[key][0] = value
            else:
                values[key] = [value]
    url = f"{labels['__scheme__']}://{labels['__address__']}{quote(labels['__metrics_path__'], safe='/:@!$&()*+,;=-._~')}"
    if values:
        url += "?" + urlencode(sorted(values.items()), doseq=True)
    return url


def populate(scrape_config: Any, group: TargetGroup, config_rev: str
             ) -> tuple[list[Target], list[dict[str, str]], list[str]]:
    """Targets of one group: (active, dropped discovered labels, errors)."""
    sc = scrape_config
    active: list[Target] = []
    dropped: list[dict[str, str]] = []
    errors: list[str] = []
    for target in group.targets:
        lset = dict(group.labels)
        lset.update(target)
        defaults = {
            "job": sc.job_name,
            "__scrape_interval__": format_duration(sc.scrape_interval),
            "__scrape_timeout__": format_duration(sc.scrape_timeout),
            "__metrics_path__": sc.metrics_path,
            "__scheme__": sc.scheme,
        }
        for name, value in defaults.items():
            if not lset.get(name):
                lset[name] = value
        for name, values in (sc.params or {}).items():
            if values:
                lset["__param_" + name] = values[0]
        discovered = dict(lset)
        result = relabel.relabel(lset, sc.relabel_configs)
        if result is None:
            dropped.append(discovered)
            continue
        lset = result
        address = lset.get("__address__", "")
        if not address:
            errors.append(f"{group.source}: target {discovered}: no address")
            continue
        address = _add_default_port(address, lset.get("__scheme__", "http"))
        lset["__address__"] = address
        if "/" in address:
            errors.append(f"{group.source}: {address!r} is not a valid hostname")
            continue
        try:
            interval = parse_duration(lset["__scrape_interval__"])
            timeout = parse_duration(lset["__scrape_timeout__"])
        except (KeyError, ValueError) as exc:
            errors.append(f"{group.source}: target {address}: error parsing scrape interval or timeout: {exc}")
            continue
        if interval <= 0:
            errors.append(f"{group.source}: target {address}: scrape interval cannot be 0")
            continue
        if timeout > interval:
            errors.append(
                f"{group.source}: target {address}: scrape timeout cannot be greater than "
                f"scrape interval ({lset['__scrape_timeout__']!r} > {lset['__scrape_interval__']!r})")
            continue
        for name in [n for n in lset if n.startswith("__meta_")]:
            del lset[name]
        if not lset.get("instance"):
            lset["instance"] = address
        url = scrape_url(lset, sc.params or {})
        public = {k: v for k, v in lset.items() if not k.startswith("__")}
        tid = target_id(sc.job_name, url, public)
        body = Target(id=tid, job=sc.job_name, scrape_url=url, labels=public,
                      discovered_labels=discovered, interval=interval, timeout=timeout,
                      config_rev=config_rev)
        active.append(body.sealed())
    return active, dropped, errors
