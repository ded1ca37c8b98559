from __future__ import annotations

from celery import shared_task

from poolboard.notify.dispatch import dispatch_due


@shared_task(name="poolboard.notify.dispatch_notifications")
def dispatch_notifications() -> int:
    """Deliver the due outbox rows (beat every few seconds, and woken after each enqueue)."""
    return dispatch_due()


@shared_task(name="poolboard.notify.prune_notifications")
def prune_notifications() -> int:
    """Delete outbox rows done with for NOTIFY_KEEP_DAYS and silences expired for 120 h (Alertmanager's retention)."""
    from poolboard.notify.dispatch import db_now, prune

    return prune(db_now())
