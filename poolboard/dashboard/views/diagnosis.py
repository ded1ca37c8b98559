"""Pages of the diagnosis: the leak suspects and each service's Diagnosis panel."""

from __future__ import annotations

from datetime import timedelta

from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from poolboard.diagnosis.models import AgentReport, Finding, holder_sessions
from poolboard.fleet.models import Service

LEAK_SORTS = ("leaked", "since", "service")
PAGE_SIZE = 50
HISTORY_DAYS = 7


def _partial(request, template: str, name: str) -> str:
    if request.htmx and not request.htmx.history_restore_request:
        return f"{template}#{name}"
    return template


@require_GET
@vary_on_headers("HX-Request")
def leaks(request):
    """Services ranked by suspected leaked connections, with the evidence and the holders."""
    now = timezone.now()
    sort = request.GET.get("sort", "leaked")
    if sort not in LEAK_SORTS:
        sort = "leaked"
    order = {"leaked": ["-suspected_leaked", "opened_at"], "since": ["opened_at"], "service": ["service__name"]}[sort]
    suspects = Finding.objects.open().filter(kind="leak").select_related("service").order_by(*order)
    page = Paginator(suspects, PAGE_SIZE).get_page(request.GET.get("page"))
    services = [f.service for f in page.object_list]
    holders = holder_sessions(services, now)
    stacks = AgentReport.objects.stacks_by_service(services, now)
    rows = [
        {"finding": f, "holders": holders.get(f.service.name, [])[:10], "stacks": stacks.get(f.service_id, [])}
        for f in page.object_list
    ]
    recent = (
        Finding.objects.filter(kind="leak", closed_at__gte=now - timedelta(days=HISTORY_DAYS))
        .select_related("service")
        .order_by("-closed_at")[:20]
    )
    context = {"rows": rows, "page": page, "sort": sort, "recent": recent, "history_days": HISTORY_DAYS, "now": now}
    return render(request, _partial(request, "diagnosis/leaks.html", "leaks-table"), context)


def diagnosis_context(service: Service, open_findings: list[Finding], now) -> dict:
    """What templates/diagnosis/_panel.html needs besides the service (two queries)."""
    history = list(Finding.objects.filter(service=service, closed_at__isnull=False).order_by("-closed_at")[:10])
    stacks = AgentReport.objects.stacks_by_service([service], now).get(service.id, [])
    return {"findings": open_findings, "history": history, "stacks": stacks, "now": now}


@require_GET
def service_diagnosis(request, pk: int):
    """The Diagnosis panel of one service page: the page renders it, then it polls itself here."""
    now = timezone.now()
    service = get_object_or_404(Service, pk=pk)
    open_findings = sorted(Finding.objects.open().filter(service=service), key=Finding.rank)
    context = {"service": service, **diagnosis_context(service, open_findings, now)}
    return render(request, "diagnosis/_panel.html", context)
