"""HTTP fetch of a target, the way Prometheus asks for it.

One `Fetcher` per job configuration holds a requests.Session, so connections to a target
are reused by the worker process. Auth files (password_file, credentials_file,
bearer_token_file) are read at each scrape, so a rotated secret is picked up.
"""

from __future__ import annotations

import time
from typing import Any

import requests

from clymene import __version__

# Prometheus 2.42's scrape Accept header: OpenMetrics preferred, text 0.0.4 next.
ACCEPT_HEADER = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
USER_AGENT = f"clymene/{__version__}"


class ScrapeError(Exception):
    """The target could not be scraped; the message is what the targets API shows."""


def _format_seconds(seconds: float) -> str:
    # Go's strconv.FormatFloat(f, 'f', -1, 64): shortest form, no exponent, "10" not "10.0".
    text = repr(float(seconds))
    if "e" in text or "E" in text:
        text = f"{seconds:.9f}".rstrip("0").rstrip(".")
    return text[:-2] if text.endswith(".0") else text


def _read_file(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


class Fetcher:
    """Fetches targets of one job with its auth and TLS settings.

    tls_config.server_name is not applied: requests cannot override SNI per request.
    """

    def __init__(self, scrape_config: Any):
        sc = scrape_config
        self.session = requests.Session()
        self.session.headers.update({
            "Accept": ACCEPT_HEADER,
            "Accept-Encoding": "gzip",
            "User-Agent": USER_AGENT,
        })
        client = sc.http_client
        self.follow_redirects = client.follow_redirects
        self.body_size_limit = max(0, int(sc.body_size_limit or 0))
        self._basic = client.basic_auth
        self._authorization = client.authorization  # bearer_token(_file) end up here too
        tls = client.tls_config
        if tls.insecure_skip_verify:
            self.session.verify = False
        elif tls.ca_file:
            self.session.verify = tls.ca_file
        if tls.cert_file:
            self.session.cert = (tls.cert_file, tls.key_file)
        if client.proxy_url:
            self.session.proxies = {"http": client.proxy_url, "https": client.proxy_url}
        else:
            self.session.trust_env = False  # like Prometheus: no proxy from the environment

    def _auth_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        auth = self._authorization
        if auth is not None and (auth.credentials or auth.credentials_file):
            cred = auth.credentials or _read_file(auth.credentials_file)
            headers["Authorization"] = f"{auth.type or 'Bearer'} {cred}"
        return headers

    def _basic_auth(self) -> tuple[str, str] | None:
        b = self._basic
        if b is None or not (b.username or b.password or b.password_file):
            return None
        password = b.password or (_read_file(b.password_file) if b.password_file else "")
        return (b.username, password)

    def fetch(self, url: str, timeout: float) -> tuple[bytes, str]:
        """GET the target: (body, content type). Raises ScrapeError with Prometheus' wording."""
        deadline = time.monotonic() + timeout
        headers = self._auth_headers()
        headers["X-Prometheus-Scrape-Timeout-Seconds"] = _format_seconds(timeout)
        try:
            resp = self.session.get(url, headers=headers, auth=self._basic_auth(),
                                    timeout=timeout, stream=True,
                                    allow_redirects=self.follow_redirects)
        except requests.Timeout:
            raise ScrapeError(f'Get "{url}": context deadline exceeded') from None
        except requests.RequestException as exc:
            raise ScrapeError(f'Get "{url}": {_short_reason(exc)}') from None
        except OSError as exc:
            raise ScrapeError(f'Get "{url}": {exc}') from None
        with resp:
            if resp.status_code != 200:
                raise ScrapeError(f"server returned HTTP status {resp.status_code} {resp.reason}")
            limit = self.body_size_limit
            chunks = []
            size = 0
            try:
                for chunk in resp.iter_content(65536):
                    size += len(chunk)
                    if limit and size > limit:
                        raise ScrapeError(
                            f"body size limit exceeded: the response is larger than {limit} bytes")
                    chunks.append(chunk)
                    # requests' timeout is per socket read; a scrape has one deadline in all.
                    if time.monotonic() > deadline:
                        raise ScrapeError(f'Get "{url}": context deadline exceeded')
            except requests.RequestException as exc:
                if isinstance(exc, requests.ConnectionError) and "timed out" in str(exc):
                    raise ScrapeError(f'Get "{url}": context deadline exceeded') from None
                raise ScrapeError(f'Get "{url}": {_short_reason(exc)}') from None
            return b"".join(chunks), resp.headers.get("Content-Type", "")


def _short_reason(exc: BaseException) -> str:
    # requests nests urllib3 errors deeply; the innermost reason is what an operator needs.
    reason: BaseException = exc
    while reason.args and isinstance(reason.args[0], BaseException):
        reason = reason.args[0]
    inner = getattr(reason, "reason", None)
    if isinstance(inner, BaseException):
        reason = inner
    text = str(reason)
    if "Connection refused" in text:
        return "connection refused"
    return text
