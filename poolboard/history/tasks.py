from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from . import rollup


@shared_task(name="poolboard.history.rollup_recent")
def rollup_recent(**kwargs) -> dict:
    return rollup.rollup_recent(timezone.now())


@shared_task(name="poolboard.history.expire_rollups")
def expire_rollups(**kwargs) -> dict:
    return rollup.expire_rollups(timezone.now())
