from __future__ import annotations

from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from poolboard.dashboard.views.alerts import service_alerts_context
from poolboard.dashboard.views.diagnosis import diagnosis_context
from poolboard.diagnosis.models import Finding
from poolboard.fleet.models import PrometheusSource, Service
from poolboard.fleet.overview import OverviewRow, overview_rows
from poolboard.history.queries import DEFAULT_RANGE, RANGES, SERIES_FIELDS, service_series
from poolboard.lib.pools import FIELD_LABELS, STATUS_ORDER

PAGE_SIZE = 100


def _sort_key(name: str):
    """Sort keys for the overview columns; absent values sort last either way."""
    keys = {
        "name": lambda r: r.service.name.lower(),
        "utilization": lambda r: r.summary.utilization,
        "in_use": lambda r: r.summary.in_use,
        "idle": lambda r: r.summary.idle,
        "waiting": lambda r: r.summary.pending,
        "timeouts": lambda r: r.summary.timeouts,
        "last_seen": lambda r: r.summary.last_sample,
        "status": lambda r: STATUS_ORDER.index(r.summary.status),
    }
    return keys.get(name)


def sort_rows(rows: list[OverviewRow], sort: str, descending: bool) -> list[OverviewRow]:
    key = _sort_key(sort) or _sort_key("status")
    present = [r for r in rows if key(r) is not None]
    absent = [r for r in rows if key(r) is None]
    present.sort(key=lambda r: r.service.name.lower())  # stable tie-break by name
    present.sort(key=key, reverse=descending)
    return present + absent


@require_GET
@vary_on_headers("HX-Request")
def overview(request):
    now = timezone.now()
    sort = request.GET.get("sort", "status")
    if _sort_key(sort) is None:
        sort = "status"
    # Status sorts worst first (ascending index); numbers sort biggest first.
    default_desc = sort not in ("name", "status")
    descending = request.GET.get("dir", "desc" if default_desc else "asc") == "desc"
    rows = sort_rows(overview_rows(now), sort, descending)
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    sources = list(PrometheusSource.objects.all())
    stale_sources = [(s, s.stale_since(now)) for s in sources if s.enabled and s.stale_since(now)]
    failing_sources = [s for s in sources if s.enabled and s.last_error_at and (not s.last_success_at or s.last_error_at > s.last_success_at)]
    counts = {status: sum(1 for r in rows if r.summary.status == status) for status in STATUS_ORDER}
    context = {
        "page": page,
        "rows": page.object_list,
        "sort": sort,
        "dir": "desc" if descending else "asc",
        "sources": sources,
        "stale_sources": stale_sources,
        "failing_sources": failing_sources,
        "counts": counts,
        "total": len(rows),
        "now": now,
    }
    template = "services/overview.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#fleet-table"
    return render(request, template, context)


# The service page's charts: which canonical fields each one draws.
CHARTS = (
    ("connections", "Connections", "", ("in_use", "idle", "max", "pending")),
    ("times", "Acquire and hold time", "s", ("acquire_s", "hold_s")),
    ("timeouts", "Timeouts (per rate window)", "", ("timeouts",)),
    # The throughput the leak rule compares in use with: flat while in use climbs is a leak.
    ("throughput", "Acquisitions per second", "/s", ("acquisitions",)),
)


def chart_context(service, pools, preset, range_key: str, now, findings=()) -> dict:
    """Everything the #pool-charts partial needs, from one SQL query.

    Each open finding's evidence ranges are drawn as bands on the charts, so the numbers
    a verdict quotes can be checked against the lines they came from.
    """
    series = service_series([p.id for p in pools], range_key, now)
    # A field the preset queries but no pool reported is as absent as one it cannot give.
    missing = set(preset.missing_fields([p.values() for p in pools] or None)) if preset else set()
    provided = set(SERIES_FIELDS) - missing
    charts = []
    for chart_id, title, unit, fields in CHARTS:
        present = [f for f in fields if f in provided]
        charts.append(
            {
                "id": chart_id,
                "title": title,
                "unit": unit,
                "series": [{"field": f, "label": FIELD_LABELS[f].removesuffix(" (s)"), "values": series.values[f]} for f in present],
                "missing": [preset.field_note(f) for f in fields if f not in provided],
            }
        )
    return {
        "range": range_key,
        "ranges": list(RANGES),
        "series": series,
        "charts": charts,
        "chart_data": {
            "x": series.times,
            "step": series.step,
            "charts": [c for c in charts if c["series"]],
            "highlights": highlights(findings),
        },
        "field_notes": [preset.field_note(f) for f in preset.missing_fields([p.values() for p in pools] or None)]
        if preset
        else [],
    }


def highlights(findings) -> list[dict]:
    """Chart bands: [{"start": epoch s, "end": epoch s, "label": "leak suspected"}] per evidence."""
    bands = []
    for f in findings:
        for e in f.evidence:
            start, end = parse_datetime(e["start"]), parse_datetime(e["end"])
            if start and end:
                bands.append({"start": start.timestamp(), "end": end.timestamp(), "label": f.get_kind_display(),
                              "severity": f.severity})
    return bands


@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def service_detail(request, pk: int):
    now = timezone.now()
    service = get_object_or_404(Service.objects.for_overview(), pk=pk)
    pools = list(service.pools.all())
    findings = sorted(Finding.objects.open().filter(service=service), key=Finding.rank)
    summary = service.summary(now, [(p.values(), p.sampled_at) for p in pools], findings)
    preset = service.preset_object()
    range_key = request.GET.get("range", DEFAULT_RANGE)
    if range_key not in RANGES:
        range_key = DEFAULT_RANGE
    context = {
        "service": service,
        "pools": [(p, p.status(now)) for p in pools],
        "summary": summary,
        "preset": preset,
        # Every field shown as "—": the preset's gaps and the series its exporter does not send.
        "missing_fields": [FIELD_LABELS[f] for f in preset.missing_fields([p.values() for p in pools] or None)]
        if preset
        else [],
        "source_stale_since": service.source.stale_since(now),
        "now": now,
        "range": range_key,
    }
    template = "services/service.html"
    partial = None
    if request.htmx and not request.htmx.history_restore_request:
        # The range buttons swap the charts; the 10 s poll swaps the current values.
        partial = "pool-charts" if request.htmx.target == "pool-charts" else "pool-current"
        template += f"#{partial}"
    if partial != "pool-current":
        context.update(chart_context(service, pools, preset, range_key, now, findings))
    if partial is None:
        context.update(diagnosis_context(service, findings, now))
        context.update(service_alerts_context(request, service, now))
    return render(request, template, context)
