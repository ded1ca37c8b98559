"""/api/v1/statements/: statement statistics from pg_stat_statements, with the services whose
pools each statement holds, as the slow-queries pages show them."""

from __future__ import annotations

from django.utils import timezone

from poolboard.api.auth import api_view, json_response
from poolboard.dashboard.views.statements import DEFAULT_RANGE, RANGES, decorate, parse_filters
from poolboard.statements.models import Statement


def _iso(value):
    return value.isoformat() if value else None


def _services_json(services) -> list[dict]:
    return [
        {"service": s["name"], "peak_held": s["peak_held"], "held_conn_s": s["held_conn_s"],
         "pool_max": s["pool_max"], "peak_share": s["peak_share"]}
        for s in services
    ]


def statement_row_json(r) -> dict:
    return {
        "id": r["id"],
        "server": r["server"],
        "datname": r["datname"],
        "rolname": r["rolname"],
        "queryid": r["queryid"],
        "fingerprint": r["fingerprint"],
        "query": r["text"],
        "calls": r["calls"],
        "calls_per_s": r["calls_per_s"],
        "mean_ms": r["mean_ms"],
        "max_ms": r["max_ms"],
        "total_ms": r["total_ms"],
        "total_share": r["total_share"],
        "rows_per_call": r["rows_per_call"],
        "held_conn_s": r["held_conn_s"],
        "peak_held": r["peak_held"],
        "trend_vs_last_week": r["trend_vs_last_week"],
        "episodes": r["episodes"],
        "services": _services_json(r["services"]),
    }


@api_view
def statements(request):
    """?database=server[/datname]&service=NAME&sort=total|mean|calls|held&range=24h&limit=100&offset=0.

    `next_offset` pages on; a bad parameter is a 400 saying what is accepted.
    """
    now = timezone.now()
    f = parse_filters(request.GET, now)
    if f.errors:
        return json_response({"error": "; ".join(f.errors)}, 400)
    try:
        limit = max(1, min(int(request.GET.get("limit", "100")), 1000))
        offset = max(0, int(request.GET.get("offset", "0")))
    except ValueError:
        return json_response({"error": "limit and offset must be whole numbers"}, 400)
    rows = Statement.objects.top(f.since, now, f.sort, limit=offset + limit + 1, **f.top_kwargs())
    shown = rows[offset : offset + limit]
    decorate(shown, f.since, now)
    return json_response({
        "since": f.since.isoformat(),
        "until": now.isoformat(),
        "range": f.range_key,
        "sort": f.sort,
        "statements": [statement_row_json(r) for r in shown],
        "next_offset": offset + limit if len(rows) > offset + limit else None,
    })


@api_view
def statement(request, pk: int):
    """One statement: its figures over ?range= (default 24h), its history per interval and its services."""
    now = timezone.now()
    st = Statement.objects.select_related("server", "query").filter(pk=pk).first()
    if st is None:
        return json_response({"error": f"no statement with id {pk}"}, 404)
    range_key = request.GET.get("range") or DEFAULT_RANGE
    if range_key not in RANGES:
        return json_response({"error": f"unknown range {range_key!r}; use one of {', '.join(RANGES)}"}, 400)
    since = now - RANGES[range_key]
    history = st.history(since, now)
    found = Statement.objects.filter(pk=st.pk).top(since, now, server=st.server, datname=st.datname, limit=None)
    decorate(found, since, now)
    totals = statement_row_json(found[0]) if found else None
    return json_response({
        "id": st.pk,
        "server": st.server.name,
        "datname": st.datname,
        "rolname": st.rolname,
        "queryid": st.queryid,
        "fingerprint": st.query.fingerprint if st.query_id else None,
        "query": st.query.text if st.query_id else None,
        "first_seen": _iso(st.first_seen),
        "last_seen": _iso(st.last_seen),
        "range": range_key,
        "totals": totals,
        "history": [
            {"start": _iso(h["start"]), "end": _iso(h["end"]), "calls": h["calls"], "mean_ms": h["mean_ms"],
             "max_ms": h["max_ms"], "rows": h["rows"]}
            for h in history
        ],
    })
