from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from .diagnose import diagnose_services, services_to_diagnose


@shared_task(name="poolboard.diagnosis.diagnose_fleet")
def diagnose_fleet(**kwargs) -> dict:
    """Judge every service with fresh samples (or an open finding), store what opened/closed.

    Queued by collect_pools after a tick that stored samples, so the tick itself does not
    wait for it; a redelivered or overlapping run is harmless (Finding.objects.record locks
    the open rows it changes and one open row per (service, kind) is a unique index).
    """
    now = timezone.now()
    result = diagnose_services(services_to_diagnose(now), now)
    return vars(result)


@shared_task(name="poolboard.diagnosis.prune_agent_reports")
def prune_agent_reports() -> int:
    """Delete agent reports no agent has renewed for a week (AGENT_REPORT_RETENTION); daily."""
    from .models import AgentReport

    return AgentReport.objects.prune(timezone.now())
