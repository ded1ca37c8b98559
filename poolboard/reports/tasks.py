from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from . import delivery


# Minutes, not the default 2: a 1 000-service week takes ~10 s to compute on a quiet machine
# (bench_report) and each subscriber's PDF a few more; a killed run releases its claim.
@shared_task(name="poolboard.reports.weekly_report", time_limit=1800, soft_time_limit=1700)
def weekly_report(**kwargs) -> dict:
    """Build last week's report if nobody has, then queue the emails that are due."""
    return delivery.run(timezone.now())
