"""Read-only JSON over the same data the database pages show (token auth as poolboard.api)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from poolboard.api.auth import api_view, json_response
from poolboard.databases.models import Episode, MonitoredServer, SessionCount, Snapshot
from poolboard.fleet.models import Service


def _iso(value):
    return value.isoformat() if value else None


def _budget_json(budget) -> dict | None:
    if budget is None:
        return None
    return {
        "max_connections": budget.max_connections,
        "reserved": budget.reserved,
        "usable": budget.usable,
        "warn_line": budget.warn_line,
        "total": budget.total,
        "utilization": budget.utilization if budget.usable else None,
        "by_service": [{"service": s.label, "connections": s.count} for s in budget.slices],
        "by_state": budget.by_state,
    }


@api_view
def servers(request):
    now = timezone.now()
    data = []
    dbs = list(MonitoredServer.objects.prefetch_related("databases"))
    newest = Snapshot.objects.newest_per_server(dbs)
    open_counts = Episode.objects.open_problems_by_server()
    for db in dbs:
        snap = newest.get(db.pk)
        stale = db.stale_since(now)
        data.append({
            "name": db.name,
            "host": db.host,
            "port": db.port,
            "dbname": db.dbname,
            "enabled": db.enabled,
            "server_version": db.server_version or None,
            "last_snapshot": _iso(db.last_snapshot_at),
            "stale": bool(stale) or snap is None,
            "stale_since": _iso(stale),
            "last_error": db.last_error or None if db.last_error_kind else None,
            "last_error_kind": db.last_error_kind or None,
            "thresholds": {"idle_in_transaction_s": db.idle_in_transaction_s, "query_s": db.query_s,
                           "transaction_s": db.transaction_s},
            "budget": _budget_json(snap.budget() if snap else None),
            "databases": _databases_json(db, snap),
            # One per session's transaction (its idle-in-transaction and long-transaction
            # episodes are one problem).
            "open_problems": open_counts.get(db.pk, 0),
        })
    return json_response({"servers": data, "generated_at": now.isoformat()})


def _databases_json(server, snap) -> list[dict]:
    """The server's databases with their connections in the newest snapshot, by name."""
    return [{"name": name, "connections": n} for name, n in sorted(server.database_connections(snap).items())]


def _not_found(what: str, name: str):
    return json_response({"error": f"no {what} named {name!r}"}, 404)


@api_view
def sessions(request, name: str):
    db = MonitoredServer.objects.filter(name=name).first()
    if db is None:
        return _not_found("monitored server", name)
    snap = db.latest_snapshot()
    datname = request.GET.get("database", "")
    counts = []
    if snap:
        rows = SessionCount.objects.filter(snapshot=snap).select_related("service").order_by("-count", "id")
        if datname:
            rows = rows.filter(datname=datname)
        counts = [
            {"database": c.datname or None, "application_name": c.application_name, "usename": c.usename,
             "client_addr": c.client_addr or None, "state": c.state or None,
             "wait_event_type": c.wait_event_type or None, "count": c.count,
             "service": c.service.name if c.service_id else None}
            for c in rows
        ]
    return json_response({
        "server": db.name,
        "database": datname or None,
        "taken_at": _iso(snap.taken_at) if snap else None,
        "total": snap.total if snap else None,
        "budget": _budget_json(snap.budget() if snap else None),
        "counts": counts,
    })


@api_view
def episodes(request):
    qs = Episode.objects.select_related("server", "service", "query").order_by("-first_seen")
    kind = request.GET.get("kind")
    if kind:
        if kind not in dict(Episode.KIND_CHOICES):
            return json_response({"error": f"unknown kind {kind!r}; use one of {', '.join(dict(Episode.KIND_CHOICES))}"}, 400)
        qs = qs.filter(kind=kind)
    if request.GET.get("service"):
        qs = qs.filter(service__name=request.GET["service"])
    if request.GET.get("server"):
        qs = qs.filter(server__name=request.GET["server"])
    if request.GET.get("database"):
        qs = qs.filter(datname=request.GET["database"])
    if request.GET.get("open") in ("1", "true"):
        qs = qs.filter(ended=None)
    try:
        limit = max(1, min(int(request.GET.get("limit", "100")), 1000))
    except ValueError:
        return json_response({"error": "limit must be a whole number"}, 400)
    data = [
        {
            "id": e.id,
            "server": e.server.name,
            "database": e.datname or None,
            "kind": e.kind,
            "service": e.service.name if e.service_id else None,
            "pid": e.pid,
            "backend_start": _iso(e.backend_start),
            "started": _iso(e.started),
            "first_seen": _iso(e.first_seen),
            "last_seen": _iso(e.last_seen),
            "ended": _iso(e.ended),
            "open": e.ended is None,
            "peak_age_s": e.peak_age_s,
            # It lasted at least duration_min_s (its age when last seen) and at most
            # duration_max_s (until the first snapshot that no longer saw it; null while open).
            "duration_min_s": e.duration_s,
            "duration_max_s": e.duration_max_s,
            "xact_start": _iso(e.xact_start),
            "application_name": e.application_name,
            "usename": e.usename,
            "client_addr": e.client_addr or None,
            "fingerprint": e.query.fingerprint if e.query_id else None,
            "query": e.query.text if e.query_id else None,
        }
        for e in qs[:limit]
    ]
    return json_response({"episodes": data})


@api_view
def slow_queries(request):
    try:
        days = max(1, min(int(request.GET.get("days", "7")), 90))
    except ValueError:
        return json_response({"error": "days must be a whole number"}, 400)
    server = None
    if request.GET.get("server"):
        server = MonitoredServer.objects.filter(name=request.GET["server"]).first()
        if server is None:
            return _not_found("monitored server", request.GET["server"])
    service = None
    if request.GET.get("service"):
        service = Service.objects.filter(name=request.GET["service"]).first()
        if service is None:
            return _not_found("service", request.GET["service"])
    rows = Episode.objects.slow_queries(
        timezone.now() - timedelta(days=days), "max", server=server, service=service, datname=request.GET.get("database", ""),
    )[:200]
    return json_response({
        "days": days,
        "queries": [
            {"fingerprint": r["query__fingerprint"], "query": r["query__text"], "episodes": r["episodes"],
             "open": r["open"], "max_s": r["max_s"], "p95_s": r["p95_s"], "last_seen": _iso(r["last"]),
             "services": sorted(r["services"])}
            for r in rows
        ],
    })
