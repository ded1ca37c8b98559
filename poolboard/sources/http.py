"""Sending one notification request: HTTP POST with a timeout, capped redirects and an address guard.

No Django. Every hop (the first URL and each redirect's Location) is checked against
poolboard.lib.urlpolicy after resolving its host, at send time, since DNS can change after a
channel was saved. Error messages never contain the URL: for Slack the URL is the secret.

The outcome says whether to retry, as Alertmanager and PagerDuty ask: 2xx is delivered;
5xx, 429, timeouts and connection errors are retryable; any other status (4xx) is not.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urljoin

import requests

from poolboard.lib import urlpolicy

REDIRECT_STATUSES = {301, 302, 303, 307, 308}
ERRNO_RE = re.compile(r"\[Errno -?\d+\][^'\"]*")


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    retryable: bool
    status: int | None = None
    error: str = ""
    seconds: float = 0.0


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise urlpolicy.AddressRefused(f"{host} does not resolve ({exc.strerror})") from None
    return sorted({info[4][0] for info in infos})


def guard(url: str, allowed: list) -> None:
    """Raise AddressRefused unless every address of the URL's host may be sent to."""
    host, port = urlpolicy.check_url(url)
    urlpolicy.check_addresses(host, resolve(host, port), allowed)


def _connection_reason(exc: Exception) -> str:
    found = ERRNO_RE.search(str(exc))
    return found.group(0).strip() if found else type(exc).__name__


def post_json(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    allowed: list,
    max_redirects: int = 3,
) -> Outcome:
    """POST `body` (JSON bytes) to `url`; follow at most `max_redirects` redirects, each one guarded."""
    started = time.monotonic()
    all_headers = {"Content-Type": "application/json", "User-Agent": "poolboard-notify", **headers}

    def outcome(**fields) -> Outcome:
        return Outcome(seconds=time.monotonic() - started, **fields)

    for hop in range(max_redirects + 1):
        try:
            guard(url, allowed)
        except urlpolicy.AddressRefused as exc:
            where = "redirect target: " if hop else ""
            return outcome(delivered=False, retryable=False, error=f"refused {where}{exc}")
        try:
            response = requests.post(url, data=body, headers=all_headers, timeout=timeout, allow_redirects=False)
        except requests.Timeout:
            return outcome(delivered=False, retryable=True, error=f"no answer within {timeout:g} s (timeout)")
        except requests.ConnectionError as exc:
            return outcome(delivered=False, retryable=True, error=f"connection failed: {_connection_reason(exc)}")
        except requests.RequestException as exc:
            return outcome(delivered=False, retryable=False, error=f"request failed: {type(exc).__name__}")
        status = response.status_code
        if status in REDIRECT_STATUSES and response.headers.get("Location"):
            url = urljoin(url, response.headers["Location"])
            response.close()
            continue
        text = response.text[:300].strip() if response.content else ""
        response.close()
        if 200 <= status < 300:
            return outcome(delivered=True, retryable=False, status=status)
        detail = f"HTTP {status}" + (f": {text}" if text else "")
        return outcome(delivered=False, retryable=status >= 500 or status == 429, status=status, error=detail)
    return outcome(delivered=False, retryable=False, error=f"more than {max_redirects} redirects")
