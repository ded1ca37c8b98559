from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from .models import MonitoredServer, Snapshot
from .snapshots import snapshot_server


@shared_task(name="poolboard.databases.snapshot_databases")
def snapshot_databases(**kwargs) -> int:
    """Fan out: one task per enabled server, so a hanging one delays only itself."""
    pks = list(MonitoredServer.objects.enabled().values_list("pk", flat=True))
    for pk in pks:
        snapshot_one.delay(pk)
    return len(pks)


@shared_task(name="poolboard.databases.snapshot_one")
def snapshot_one(pk: int, **kwargs) -> dict:
    db = MonitoredServer.objects.filter(pk=pk, enabled=True).first()
    if db is None:
        return {"status": "skipped"}
    return vars(snapshot_server(db))


@shared_task(name="poolboard.databases.prune_snapshots")
def prune_snapshots(**kwargs) -> int:
    """Snapshots (their counts and query holds) are kept RAW_RETENTION_DAYS, like raw pool
    samples: at one every 10 s a server writes ~8 600 snapshots a day. Episodes stay."""
    return Snapshot.objects.prune(timezone.now() - timedelta(days=settings.RAW_RETENTION_DAYS))
