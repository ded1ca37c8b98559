from __future__ import annotations

from celery import shared_task

from .models import MonitoredServer
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
