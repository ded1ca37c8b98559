"""The beat's weekly job: build last week's report once, then queue the emails that are due.

Both steps are compare-and-sets (reliability.md R2.4): the period is claimed on
ReportSchedule and each subscription's next send time is advanced where it still holds what
was read, inside the transaction that writes the report or the outbox row. Two workers
running this at the same moment make one report and one email per subscriber; the outbox's
unique (channel, key) is the backstop.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction

from . import build, email
from .models import Report, ReportSchedule, Subscription

log = logging.getLogger(__name__)


def ensure_report(now: datetime) -> Report | None:
    """Build the last complete week's report if no worker has claimed it; the new report or None."""
    period = build.default_period(now)
    with transaction.atomic():
        if not ReportSchedule.claim(period):
            return None
        # Inside the claim's transaction: a failed build releases the claim for the next run.
        return build.build(period, now, created_by="beat")


def queue_email(report: Report, subscription: Subscription, now: datetime, pdf_cache: dict | None = None) -> bool:
    """Put `report`'s email to `subscription` in the outbox; False when it already is."""
    from poolboard.notify.outbox import enqueue

    payload = email.render_payload(report, subscription, pdf_cache=pdf_cache)
    key = f"report:{report.week}:subscription:{subscription.pk}"
    return enqueue(email.report_channel(), key, "report", payload, now) is not None


def send_due(now: datetime) -> int:
    """Queue the email of every subscription whose time has come; the number queued."""
    report = Report.objects.of_week(build.default_period(now).key)
    if report is None:
        return 0  # not built yet (or its build failed): the subscriptions stay due
    queued = 0
    pdfs: dict = {}
    for subscription in Subscription.objects.due(now).select_related("user"):
        if not subscription.recipient:
            continue
        with transaction.atomic():
            if not subscription.claim_send(now):
                continue  # another worker has it
            if subscription.last_sent_week == report.week:
                continue  # this week's went out already (e.g. the subscriber moved their day)
            if queue_email(report, subscription, now, pdfs):
                queued += 1
            Subscription.objects.filter(pk=subscription.pk).update(last_sent_week=report.week)
    return queued


def run(now: datetime) -> dict:
    built = ensure_report(now)
    return {"built": str(built) if built else None, "queued": send_due(now)}
