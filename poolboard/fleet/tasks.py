from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from .collection import collect_all
from .discovery import discover_all
from .partitions import drop_expired_partitions, ensure_partitions


@shared_task(name="poolboard.fleet.collect_pools")
def collect_pools(**kwargs) -> list[dict]:
    results = collect_all()
    if any(r.status == "ok" and r.samples for r in results):
        # Diagnosis reads the samples this tick just stored; run it here rather than as a
        # queued task so a verdict is never judged on the tick before (and tests need no worker).
        from poolboard.diagnosis.tasks import diagnose_fleet

        diagnose_fleet()
    return [vars(result) for result in results]


@shared_task(name="poolboard.fleet.maintain_partitions")
def maintain_partitions(**kwargs) -> dict:
    now = timezone.now()
    return {"created": ensure_partitions(now), "dropped": drop_expired_partitions(now)}


@shared_task(name="poolboard.fleet.discover_services")
def discover_services(**kwargs) -> list[dict]:
    return [vars(result) for result in discover_all()]
