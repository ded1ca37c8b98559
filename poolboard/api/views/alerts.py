"""/api/v1/alerts/: the alert instances the Alerts page shows; /api/v1/alerts/rules/<pk>/backtest/:
what a rule would have done over the stored history (Grafana's preview as an API)."""

from __future__ import annotations

import math

from django.utils import timezone

from poolboard.alerts.admin_backtest import ParamError, params_from, run_backtest
from poolboard.alerts.models import AlertInstance, AlertRule
from poolboard.api.auth import api_view, json_response
from poolboard.dashboard.views.alerts import SORTS, active_instances
from poolboard.fleet.models import Service
from poolboard.notify.silences import active_silences, silenced_by

STATES = ("firing", "pending", "inactive")


def number(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def iso(moment) -> str | None:
    return moment.isoformat() if moment else None


def alert_json(a: AlertInstance, silence) -> dict:
    return {
        "id": a.id,
        "rule": {"id": a.rule_id, "name": a.rule.name, "severity": a.rule.severity},
        "fingerprint": a.fingerprint,
        "labels": a.labels,
        "state": a.state,
        "value": number(a.value),
        "active_since": iso(a.active_since),
        "fired_at": iso(a.fired_at),
        "resolved_at": iso(a.resolved_at),
        "last_evaluated_at": iso(a.last_evaluated_at),
        "service": a.service.name if a.service_id else None,
        "server": a.server.name if a.server_id else None,
        "silenced_until": iso(silence.ends_at) if silence else None,
    }


@api_view
def alerts(request):
    """?state=firing|pending|inactive (default: firing and pending), ?rule=ID, ?service=NAME,
    ?limit=100&offset=0; firing first, then pending, longest active first."""
    now = timezone.now()
    state = request.GET.get("state")
    if state:
        if state not in STATES:
            return json_response({"error": f"unknown state {state!r}; use one of {', '.join(STATES)}"}, 400)
        qs = AlertInstance.objects.filter(state=state).select_related("rule", "service", "server").order_by("rule__name", "id")
    else:
        qs = active_instances().order_by(*SORTS["state"])
    rule = request.GET.get("rule")
    if rule:
        if not rule.isdigit():
            return json_response({"error": "rule must be a rule id (a whole number)"}, 400)
        qs = qs.filter(rule_id=int(rule))
    name = request.GET.get("service")
    if name:
        if not Service.objects.filter(name=name).exists():
            return json_response({"error": f"no service named {name!r}"}, 404)
        qs = qs.filter(service__name=name)
    try:
        limit = max(1, min(int(request.GET.get("limit", "100")), 1000))
        offset = max(0, int(request.GET.get("offset", "0")))
    except ValueError:
        return json_response({"error": "limit and offset must be whole numbers"}, 400)
    rows = list(qs[offset : offset + limit + 1])
    silences = active_silences(now)
    return json_response({
        "alerts": [alert_json(a, silenced_by(a.labels or {}, now, silences)) for a in rows[:limit]],
        "next_offset": offset + limit if len(rows) > limit else None,
    })


@api_view
def rule_backtest(request, pk: int):
    """What rule `pk` would have done over ?range=6h|24h|7d (default 7d), with ?comparator=,
    ?threshold=, ?for_s=, ?keep_firing_for_s=, ?no_data= instead of its saved values: the same
    replay as the backtest on the rule's admin page (poolboard.alerts.admin_backtest)."""
    rule = AlertRule.objects.filter(pk=pk).first()
    if rule is None:
        return json_response({"error": f"no alert rule {pk}"}, 404)
    try:
        params = params_from(rule, request.GET)
    except ParamError as exc:
        return json_response({"error": str(exc)}, 400)
    run = run_backtest(rule, params, timezone.now())
    if run.error:
        return json_response({"error": run.error}, 422)
    return json_response({
        "rule": {"id": rule.pk, "name": rule.name, "signal": rule.signal},
        "condition": {"comparator": params.comparator, "threshold": params.threshold, "for_s": params.for_s,
                      "keep_firing_for_s": params.keep_firing_for_s, "no_data": params.no_data,
                      "edited": list(params.edited)},
        "range": {"key": params.range_key, "start": iso(run.start), "end": iso(run.end),
                  "rollups_until": iso(run.first_raw) if run.from_rollups else None},
        "services": {"matched": run.matched, "replayed": len(run.series)},
        "fired": run.fired,
        "notifications": run.notifications,
        "firing_s": run.firing_s,
        "evaluations": run.evaluations,
        "episodes": [
            {"service": row["series"].service.name, "threshold": row["series"].threshold,
             "pending_at": iso(row["episode"].pending_at), "firing_at": iso(row["episode"].firing_at),
             "resolved_at": iso(row["episode"].resolved_at), "firing_s": row["firing_s"],
             "peak": number(row["episode"].peak)}
            for row in run.episodes
        ],
        "for_sweep": [{"for_s": for_s, "fired": fired, "notifications": sent} for for_s, fired, sent in run.sweep],
    })
