"""The Sizing page (every server's ledger and its pools' recommendations), its CSV, the
recommendation panel of a service page and the what-if calculator of a server page."""

from __future__ import annotations

import csv

from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from poolboard.databases.models import MonitoredServer
from poolboard.fleet.models import Service
from poolboard.sizing.recommend import FleetSizing, fleet_sizing, recent_fleet_sizing, what_if

# What-if inputs: a pool size or replica count past these is a typo, not a plan.
MAX_WHAT_IF = 10_000
# Rows per server on the page (most actionable first); ?rows=all shows every one, the CSV and API have all.
PAGE_ROWS = 100


def _partial(request, template: str, name: str) -> str:
    if request.htmx and not request.htmx.history_restore_request:
        return f"{template}#{name}"
    return template


def _server_rows(ss, limit: int | None = None) -> list[dict]:
    """One row per pool of one server, most actionable first: what the table and the CSV show."""
    recs = sorted(ss.sizing.recommendations, key=lambda r: r.rank())
    return [
        {"server": ss.name, "database": ss.datnames.get(rec.pool.service, ""), "rec": rec, "demand": rec.pool.demand,
         "service": ss.services.get(rec.pool.service), "learned": rec.pool.service in ss.learned}
        for rec in recs[:limit]
    ]


def _rows(fleet: FleetSizing) -> list[dict]:
    return [row for ss in fleet.servers for row in _server_rows(ss)]


@require_GET
@vary_on_headers("HX-Request")
def sizing(request):
    """Per server: the ledger bar by service, then one row per pool with its recommendation."""
    fleet = fleet_sizing(timezone.now())
    show_all = request.GET.get("rows") == "all"
    servers = [
        {"ss": ss, "rows": _server_rows(ss, None if show_all else PAGE_ROWS), "total": len(ss.sizing.recommendations)}
        for ss in fleet.servers
    ]
    context = {"fleet": fleet, "servers": servers, "window_days": fleet.window_s / 86400, "policy": fleet.policy,
               "show_all": show_all}
    return render(request, _partial(request, "sizing/sizing.html", "servers"), context)


CSV_COLUMNS = [
    "server", "database", "service", "pool", "instances", "instances_from", "workers", "current_max", "p95", "p99",
    "peak", "littles_law", "action", "wanted", "recommended", "change", "lost_to_fit", "max_safe_replicas", "reason",
]


def _num(x) -> str:
    return "" if x is None else (f"{x:g}" if isinstance(x, float) else str(x))


@require_GET
def sizing_csv(request):
    fleet = fleet_sizing(timezone.now())
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="poolboard-sizing-{fleet.now:%Y%m%d-%H%M}.csv"'
    writer = csv.writer(response)
    writer.writerow(CSV_COLUMNS)
    for row in _rows(fleet):
        rec, d = row["rec"], row["demand"]
        n, why = rec.pool.instances()
        writer.writerow([
            row["server"], row["database"], rec.pool.service, rec.pool.pool, n, why, rec.pool.workers,
            _num(rec.current), _num(d and d.p95), _num(d and d.p99), _num(d and d.peak), _num(d and d.little),
            rec.label, _num(rec.wanted), _num(rec.recommended), _num(rec.change), rec.cut,
            _num(rec.max_safe_replicas), rec.reason,
        ])
    return response


@require_GET
def service_sizing(request, pk: int):
    """The recommendation panel of one service page (loaded after the page)."""
    service = get_object_or_404(Service, pk=pk)
    fleet = recent_fleet_sizing(timezone.now())
    entries = fleet.by_service.get(service.name, [])
    return render(request, "sizing/_service_panel.html", {"service": service, "entries": entries, "fleet": fleet})


def _whole(value: str, what: str, errors: list[str]) -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        errors.append(f"{what} must be a whole number, not {value[:20]!r}.")
        return None
    if not 1 <= n <= MAX_WHAT_IF:
        errors.append(f"{what} must be between 1 and {MAX_WHAT_IF}.")
        return None
    return n


@require_GET
def server_what_if(request, name: str):
    """The what-if calculator of one server: change one pool's size or replicas, see the ledger move."""
    server = get_object_or_404(MonitoredServer, name=name)
    fleet = recent_fleet_sizing(timezone.now())
    ss = fleet.server(server.name)
    labels = [p.label for p in ss.inputs] if ss else []
    errors: list[str] = []
    label = request.GET.get("pool", "")
    max_size = _whole(request.GET.get("max", ""), "Pool size", errors)
    replicas = _whole(request.GET.get("replicas", ""), "Replicas", errors)
    if label and label not in labels:
        errors.append(f"No pool named {label[:100]!r} on {server.name}.")
    changed = None
    if ss and label in labels and not errors and (max_size is not None or replicas is not None):
        changed = what_if(ss, label, max_size, replicas, fleet.policy)
    current = {p.label: p for p in ss.inputs} if ss else {}
    before = {r.pool.label: r.max_safe_replicas for r in ss.sizing.recommendations} if ss else {}
    room = [(rec, before.get(rec.pool.label)) for rec in changed.recommendations] if changed else []
    context = {
        "room": room,
        "server": server, "ss": ss, "labels": labels, "label": label, "errors": errors,
        "max_size": max_size, "replicas": replicas, "changed": changed,
        "chosen": current.get(label),
    }
    # The form's own requests swap only the result (the form keeps what is being typed).
    template = "sizing/_what_if.html#what-if-result" if request.htmx and "pool" in request.GET else "sizing/_what_if.html"
    return render(request, template, context)
