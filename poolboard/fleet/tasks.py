from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from .collection import collect_all
from .discovery import discover_all
from .partitions import drop_expired_partitions, ensure_partitions


@shared_task(name="poolboard.fleet.collect_pools")
def collect_pools(**kwargs) -> list[dict]:
    results = collect_all()
    if any(r.status == "ok" and r.samples for r in results):
        # Diagnosis reads the samples this tick just stored. It is queued, not run here, so a
        # large fleet's pass (seconds at 1 000 services) never delays the next collection; it
        # expires with the interval, and overlapping passes skip (diagnosis.tasks).
        from poolboard.diagnosis.tasks import diagnose_fleet

        diagnose_fleet.apply_async(expires=settings.COLLECT_INTERVAL)
    # Alert rules read what this tick stored, on the database's clock. Queued whatever the
    # tick's outcome: a failing source must be counted (error is not no data, alerts.evaluate).
    from poolboard.alerts.tasks import evaluate_rules

    evaluate_rules.apply_async(expires=settings.COLLECT_INTERVAL)
    return [vars(result) for result in results]


@shared_task(name="poolboard.fleet.maintain_partitions")
def maintain_partitions(**kwargs) -> dict:
    now = timezone.now()
    return {"created": ensure_partitions(now), "dropped": drop_expired_partitions(now)}


@shared_task(name="poolboard.fleet.discover_services")
def discover_services(**kwargs) -> list[dict]:
    return [vars(result) for result in discover_all()]
