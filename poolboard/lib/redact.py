"""Secrets out of URLs before they reach a message, a log line or a stored error.

No Django, no I/O.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

HIDDEN = "***"


def redact_url(url: str) -> str:
    """`url` without its user:password@ and with every query value replaced by ***.

    Parameter names are kept (`?token=***`) so the message still says what was sent;
    a URL that does not parse is hidden whole rather than echoed.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return HIDDEN
    if not parts.netloc and "@" in url:
        # Not a URL urlsplit understands (redis//:pw@host, user:pw@host): hide what precedes the @.
        return re.sub(r"[^/@]*@", f"{HIDDEN}@", url, count=1)
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    if parts.username is not None or parts.password is not None:
        netloc = f"{HIDDEN}@{netloc}"
    query = "&".join(f"{name}={HIDDEN}" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    if parts.query and not query:
        query = HIDDEN
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
