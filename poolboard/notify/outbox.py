"""enqueue(): write one notification into the outbox, inside the caller's transaction.

Alerts (kind="alert") carry one Alertmanager alert as payload:
    {"status": "firing"|"resolved", "fingerprint": "<16 hex>", "labels": {"alertname": ..., ...},
     "annotations": {"summary": ..., ...}, "startsAt": "<iso8601>", "endsAt": "<iso8601>"|None,
     "generatorURL": "<path or URL>", "value": <float|None>}
and the key `<fingerprint>:<transition>`. Reports (kind="report") carry
    {"subject": str, "text": str, "html": str, "to": [addresses, optional]}.
A test notification (kind="test") carries {"requested_by": username}.

When the row is due: alerts follow the channel's grouping (group_wait for a new group, else
the group's next group_interval); reports and tests are due at once. After the caller's
transaction commits, the dispatcher is woken (the beat also runs it every few seconds).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction

from poolboard.notify.models import AlertGroup, Channel, Notification

log = logging.getLogger(__name__)


def retry_deadline_s() -> int:
    return int(getattr(settings, "NOTIFY_RETRY_DEADLINE", 3600))


def first_attempt_at(channel: Channel, group_key: str, now: datetime) -> datetime:
    """group_wait for a group the receiver has heard nothing of; else after the group's group_interval."""
    group = AlertGroup.objects.filter(channel=channel, group_key=group_key).first()
    if group is None or group.last_sent_at is None or not group.firing:
        return now + timedelta(seconds=channel.group_wait_s)
    return max(now, group.last_sent_at + timedelta(seconds=channel.group_interval_s))


def enqueue(channel: Channel, key: str, kind: str, payload: dict, now: datetime) -> Notification | None:
    """Add a notification for `channel`; None when the channel already has one under `key` (a duplicate)."""
    if kind not in (Notification.ALERT, Notification.REPORT, Notification.TEST):
        raise ValueError(f"unknown notification kind {kind!r}")
    group_key = fingerprint = ""
    due = now
    if kind == Notification.ALERT:
        if not payload.get("fingerprint") or not isinstance(payload.get("labels"), dict):
            raise ValueError("an alert payload needs a fingerprint and a labels object")
        fingerprint = str(payload["fingerprint"])
        group_key = channel.group_key(payload.get("labels") or {})
        due = first_attempt_at(channel, group_key, now)
    row = Notification(
        channel=channel, idempotency_key=key, kind=kind, payload=payload, group_key=group_key, fingerprint=fingerprint,
        created=now, next_attempt_at=due, deadline_at=due + timedelta(seconds=retry_deadline_s()),
    )
    try:
        # A savepoint: a duplicate key must not break the caller's transaction.
        with transaction.atomic():
            row.save(force_insert=True)
    except IntegrityError:
        if Notification.objects.filter(channel=channel, idempotency_key=key).exists():
            return None
        raise
    transaction.on_commit(wake_dispatcher)
    return row


def wake_dispatcher() -> None:
    """Ask a worker to dispatch now; if the broker is down, the beat's next dispatch run picks the row up."""
    if not getattr(settings, "NOTIFY_WAKE_DISPATCHER", True):
        return
    try:
        from poolboard.notify.tasks import dispatch_notifications

        dispatch_notifications.apply_async(expires=30)
    except Exception as exc:  # the outbox row is committed: delivery is only delayed
        log.warning("could not wake the notification dispatcher (%s); the beat will", type(exc).__name__)
