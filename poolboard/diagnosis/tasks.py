from __future__ import annotations

from celery import shared_task
from django.db import connection, transaction
from django.utils import timezone

from .diagnose import diagnose_services, services_to_diagnose

# pg_advisory_xact_lock key space: (LOCK_CLASS, 0). "diag" in ASCII.
LOCK_CLASS = 0x64696167


@shared_task(name="poolboard.diagnosis.diagnose_fleet")
def diagnose_fleet(**kwargs) -> dict:
    """Judge every service with fresh samples (or an open finding), store what opened/closed.

    Queued by collect_pools after a tick that stored samples, so the tick itself does not
    wait for it. Only one pass runs at a time: a pass that finds another still running
    skips (the next tick's pass will see the same data and more), so a slow pass on a large
    fleet cannot pile up behind itself. Finding.objects.record also locks the open rows it
    changes, and one open row per (service, kind) is a unique index.
    """
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, 0)", [LOCK_CLASS])
            if not cursor.fetchone()[0]:
                return {"skipped": "another diagnosis pass is running", "services": 0, "kinds": {},
                        "opened": 0, "updated": 0, "closed": 0}
        now = timezone.now()
        result = diagnose_services(services_to_diagnose(now), now)
    return vars(result)


@shared_task(name="poolboard.diagnosis.prune_agent_reports")
def prune_agent_reports() -> int:
    """Delete agent reports no agent has renewed for a week (AGENT_REPORT_RETENTION); daily."""
    from .models import AgentReport

    return AgentReport.objects.prune(timezone.now())
