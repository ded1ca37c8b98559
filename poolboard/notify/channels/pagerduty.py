"""PagerDuty Events API v2: one event per alert (trigger or resolve), dedup_key = the alert's fingerprint.

The routing key is the channel's secret; the endpoint is settings["url"] when given (tests point
it at a local receiver), else PagerDuty's. A batch stops at its first undelivered event and is
retried whole: PagerDuty deduplicates the events already accepted by dedup_key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from poolboard.notify.channels import absolute, external_url, post, secret_or_error
from poolboard.notify.models import PAGERDUTY_EVENTS_URL, Notification
from poolboard.sources.http import Outcome

if TYPE_CHECKING:
    from poolboard.notify.dispatch import Claim

SEVERITIES = {"critical", "error", "warning", "info"}


def event(routing_key: str, payload: dict, key: str) -> dict:
    labels = payload.get("labels") or {}
    annotations = payload.get("annotations") or {}
    severity = str(labels.get("severity", "error")).lower()
    summary = annotations.get("summary") or labels.get("alertname", "poolboard alert")
    return {
        "routing_key": routing_key,
        "event_action": "trigger" if payload.get("status", "firing") == "firing" else "resolve",
        "dedup_key": str(payload.get("fingerprint", ""))[:255],
        "payload": {
            "summary": str(summary)[:1024],
            "source": str(labels.get("service") or labels.get("server") or "poolboard"),
            "severity": severity if severity in SEVERITIES else "error",
            "custom_details": {"labels": labels, "annotations": annotations, "value": payload.get("value"),
                               "idempotency_key": key},
        },
        "links": [{"href": absolute(payload.get("generatorURL") or ""), "text": "poolboard"}],
        "client": "poolboard",
        "client_url": external_url(),
    }


def send(found: Claim) -> Outcome:
    if found.kind == Notification.REPORT:
        return Outcome(delivered=False, retryable=False, error="a PagerDuty channel does not take reports")
    routing_key, failed = secret_or_error(found)
    if failed:
        return failed
    if not routing_key:
        return Outcome(delivered=False, retryable=False, error="the channel has no secret holding the PagerDuty routing key")
    url = str(found.channel.settings.get("url") or PAGERDUTY_EVENTS_URL)
    if found.kind == Notification.TEST:
        test = {"status": "firing", "fingerprint": f"poolboard-test-{found.channel.name}",
                "labels": {"alertname": "PoolboardTestNotification", "severity": "info"},
                "annotations": {"summary": f"Test notification from poolboard (channel {found.channel.name})"}}
        events = [(event(routing_key, test, found.batch_key), found.batch_key)]
    else:
        events = [(event(routing_key, row.payload, row.idempotency_key), row.idempotency_key) for row in found.rows]
    outcome = Outcome(delivered=False, retryable=False, error="nothing to send")
    for body, key in events:
        outcome = post(url, body, key)
        if not outcome.delivered:
            return outcome
    return outcome
