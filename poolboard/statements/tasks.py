"""Celery glue: pg_stat_statements readings every STATEMENTS_INTERVAL (300 s), on the slot
schedule (fleet.schedules.every_slot); hourly rollup and retention."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from poolboard.databases.models import MonitoredServer

from . import collection, holds


@shared_task(name="poolboard.statements.collect_statements")
def collect_statements(**kwargs) -> int:
    """Fan out: one task per enabled server, so a slow one delays only itself."""
    pks = list(MonitoredServer.objects.enabled().values_list("pk", flat=True))
    for pk in pks:
        collect_one.delay(pk)
    return len(pks)


@shared_task(name="poolboard.statements.collect_one")
def collect_one(pk: int, **kwargs) -> dict:
    server = MonitoredServer.objects.filter(pk=pk, enabled=True).first()
    if server is None:
        return {"status": "skipped"}
    return vars(collection.collect_server(server))


@shared_task(name="poolboard.statements.rollup_statements")
def rollup_statements(**kwargs) -> dict:
    now = timezone.now()
    return {"statements": collection.rollup_recent(now), "holds": holds.rollup_recent(now)}


@shared_task(name="poolboard.statements.expire_statements")
def expire_statements(**kwargs) -> dict:
    return collection.expire(timezone.now())
