"""One module per channel kind; each turns a claimed batch into its request(s) and says how it went.

Every request carries the batch's idempotency key in the `Idempotency-Key` header and in its
body; an alert inside a batch also carries its own key (`<fingerprint>:<transition>`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from django.conf import settings

from poolboard.databases.models import SecretError
from poolboard.notify.models import allowed_networks
from poolboard.sources import http

if TYPE_CHECKING:
    from poolboard.notify.dispatch import Claim

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of an alert still firing


def external_url() -> str:
    return str(getattr(settings, "PUBLIC_URL", "") or "http://127.0.0.1:8000").rstrip("/") + "/"


def absolute(url: str) -> str:
    return urljoin(external_url(), url or "")


def post(url: str, body: dict, key: str, extra_headers: dict | None = None) -> http.Outcome:
    data = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
    return http.post_json(
        url, data, {"Idempotency-Key": key, **(extra_headers or {})},
        timeout=float(getattr(settings, "NOTIFY_TIMEOUT", 10)), allowed=allowed_networks(),
        max_redirects=int(getattr(settings, "NOTIFY_MAX_REDIRECTS", 3)),
    )


def secret_or_error(found: Claim) -> tuple[str | None, http.Outcome | None]:
    try:
        return found.channel.secret(), None
    except SecretError as exc:
        return None, http.Outcome(delivered=False, retryable=False, error=str(exc))


def send(found: Claim) -> http.Outcome:
    from poolboard.notify.channels import email, pagerduty, slack, webhook

    sender = {"email": email.send, "webhook": webhook.send, "slack": slack.send, "pagerduty": pagerduty.send}
    return sender[found.channel.kind](found)
