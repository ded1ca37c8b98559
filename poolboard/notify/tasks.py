from __future__ import annotations

from celery import shared_task

from poolboard.notify.dispatch import dispatch_due


@shared_task(name="poolboard.notify.dispatch_notifications")
def dispatch_notifications() -> int:
    """Deliver the due outbox rows (beat every few seconds, and woken after each enqueue)."""
    return dispatch_due()
