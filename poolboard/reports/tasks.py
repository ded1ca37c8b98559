from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from . import delivery


@shared_task(name="poolboard.reports.weekly_report")
def weekly_report(**kwargs) -> dict:
    """Build last week's report if nobody has, then queue the emails that are due."""
    return delivery.run(timezone.now())
