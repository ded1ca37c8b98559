"""Generic webhook: Alertmanager's v4 webhook JSON, so receivers written for Alertmanager work unchanged.

One batch is one POST: `alerts` holds the batch's alerts (each with its own `idempotencyKey`,
an extra field receivers ignore), the envelope `idempotencyKey` is the batch key (also the
Idempotency-Key header). groupKey, groupLabels and receiver say which channel and group.
settings["max_alerts"] caps the alerts sent, the rest counted in truncatedAlerts (Alertmanager's max_alerts).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from poolboard.notify.channels import ZERO_TIME, absolute, external_url, post, secret_or_error
from poolboard.notify.models import Notification

if TYPE_CHECKING:
    from poolboard.notify.dispatch import Claim
    from poolboard.sources.http import Outcome


def am_alert(payload: dict, key: str) -> dict:
    firing = payload.get("status", "firing") == "firing"
    return {
        "status": "firing" if firing else "resolved",
        "labels": {k: str(v) for k, v in (payload.get("labels") or {}).items()},
        "annotations": {k: str(v) for k, v in (payload.get("annotations") or {}).items()},
        "startsAt": payload.get("startsAt") or ZERO_TIME,
        "endsAt": ZERO_TIME if firing else (payload.get("endsAt") or ZERO_TIME),
        "generatorURL": absolute(payload.get("generatorURL") or ""),
        "fingerprint": str(payload.get("fingerprint", "")),
        "idempotencyKey": key,
    }


def common(dicts: list[dict]) -> dict:
    """The pairs every dict has (Alertmanager's commonLabels / commonAnnotations)."""
    if not dicts:
        return {}
    shared = dict(dicts[0])
    for d in dicts[1:]:
        shared = {k: v for k, v in shared.items() if d.get(k) == v}
    return shared


def test_alert(found: Claim) -> dict:
    labels = {"alertname": "PoolboardTestNotification", "channel": found.channel.name, "severity": "info"}
    row = found.rows[0]
    return {
        "status": "firing", "labels": labels,
        "fingerprint": hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16],
        "annotations": {"summary": f"Test notification from poolboard, asked for by {row.payload.get('requested_by', '?')}"},
        "startsAt": row.created.isoformat().replace("+00:00", "Z"), "generatorURL": "/admin/notify/channel/",
    }


def message(found: Claim) -> dict:
    """The v4 body of an alert or test batch."""
    if found.kind == Notification.TEST:
        payloads = [(test_alert(found), found.batch_key)]
    else:
        payloads = [(row.payload, row.idempotency_key) for row in found.rows]
    alerts = [am_alert(p, key) for p, key in payloads]
    group_labels = found.channel.group_labels(alerts[0]["labels"]) if alerts else {}
    # Alertmanager's max_alerts: the rest are counted in truncatedAlerts, not sent.
    max_alerts = int(found.channel.settings.get("max_alerts") or 0)
    truncated = max(0, len(alerts) - max_alerts) if max_alerts > 0 else 0
    return {
        "version": "4",
        "groupKey": found.group_key or found.channel.group_key(alerts[0]["labels"]),
        "truncatedAlerts": truncated,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": found.channel.name,
        "groupLabels": group_labels,
        "commonLabels": common([a["labels"] for a in alerts]),
        "commonAnnotations": common([a["annotations"] for a in alerts]),
        "externalURL": external_url().rstrip("/"),
        "alerts": alerts[: len(alerts) - truncated],
        "idempotencyKey": found.batch_key,
    }


def report_message(found: Claim) -> dict:
    payload = found.rows[0].payload
    return {"kind": "report", "idempotencyKey": found.batch_key, "subject": payload.get("subject", ""),
            "text": payload.get("text", ""), "html": payload.get("html", "")}


def send(found: Claim) -> Outcome:
    token, failed = secret_or_error(found)
    if failed:
        return failed
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = report_message(found) if found.kind == Notification.REPORT else message(found)
    return post(str(found.channel.settings.get("url", "")), body, found.batch_key, headers)
