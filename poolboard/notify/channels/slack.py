"""Slack incoming webhook: one message per batch; the webhook URL is the channel's secret.

Slack takes only its own fields, so the idempotency key rides in a context block (and the header).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from poolboard.notify.channels import absolute, post, secret_or_error
from poolboard.notify.models import Notification
from poolboard.sources.http import Outcome

if TYPE_CHECKING:
    from poolboard.notify.dispatch import Claim

MAX_LINES = 20


def alert_line(payload: dict) -> str:
    labels = payload.get("labels") or {}
    summary = (payload.get("annotations") or {}).get("summary") or labels.get("alertname", "alert")
    mark = ":red_circle:" if payload.get("status", "firing") == "firing" else ":large_green_circle:"
    link = absolute(payload.get("generatorURL") or "")
    return f"{mark} <{link}|{labels.get('alertname', 'alert')}> {summary}"


def text_of(found: Claim) -> str:
    if found.kind == Notification.REPORT:
        payload = found.rows[0].payload
        return f"*{payload.get('subject', 'poolboard report')}*\n{payload.get('text', '')}"[:3000]
    if found.kind == Notification.TEST:
        return f"Test notification from poolboard for channel {found.channel.name}."
    firing = sum(1 for row in found.rows if row.payload.get("status", "firing") == "firing")
    group = found.channel.group_key(found.rows[0].payload.get("labels") or {})
    head = f"*[{'FIRING' if firing else 'RESOLVED'}:{firing or len(found.rows)}]* {group}"
    lines = [alert_line(row.payload) for row in found.rows[:MAX_LINES]]
    if len(found.rows) > MAX_LINES:
        lines.append(f"… and {len(found.rows) - MAX_LINES} more")
    return "\n".join([head, *lines])


def send(found: Claim) -> Outcome:
    url, failed = secret_or_error(found)
    if failed:
        return failed
    if not url:
        return Outcome(delivered=False, retryable=False, error="the channel has no secret holding the Slack webhook URL")
    text = text_of(found)
    body = {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"idempotency key: {found.batch_key}"}]},
        ],
    }
    return post(url, body, found.batch_key)
