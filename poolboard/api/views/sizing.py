"""/api/v1/sizing/: every server's ledger and each pool's recommendation, with the inputs
they were computed from (lib.sizing is a pure function of them: anyone can redo the sums)."""

from __future__ import annotations

from dataclasses import asdict

from django.utils import timezone

from poolboard.api.auth import api_view, json_response
from poolboard.lib import sizing as sz
from poolboard.sizing.recommend import ServerSizing, fleet_sizing


def _ledger_json(ledger: sz.Ledger) -> dict:
    return {
        "max_connections": ledger.server.max_connections,
        "superuser_reserved_connections": ledger.server.superuser_reserved_connections,
        "reserved_connections": ledger.server.reserved_connections,
        "monitor_cap": ledger.monitor_cap,
        "admin_reserve": ledger.admin_reserve,
        "usable": ledger.usable,
        "usable_formula": ledger.usable_formula(),
        "warn_line": ledger.warn_line,
        "open_now": ledger.server.open_now,
        "committed": ledger.committed,
        "knowable": ledger.knowable,
        "unlimited": ledger.unlimited,
        "unknown": ledger.unknown,
        "overcommitted": ledger.overcommitted,
        "over_warn": ledger.over_warn,
        "surge": ledger.surge,
        "lines": [{"label": li.label, "kind": li.kind, "connections": li.connections, "formula": li.formula, "via": li.via or None}
                  for li in ledger.lines],
        "verdict": ledger.verdict(),
    }


def _inputs_json(p: sz.PoolInput) -> dict:
    n, why = p.instances()
    return {
        "max": p.max, "min": p.min, "overflow": p.overflow, "workers": p.workers,
        "instances_seen": p.instances_seen, "replicas": p.replicas, "replicas_max": p.replicas_max,
        "instances": n, "instances_from": why,
        "pooler": asdict(p.pooler) if p.pooler else None,
        "demand": asdict(p.demand) if p.demand else None,
        "leak_finding_open": p.leak, "slow_query_share": p.slow_share,
    }


def _server_json(ss: ServerSizing) -> dict:
    s = ss.sizing
    return {
        "server": ss.server.name if ss.server else None,
        "snapshot_at": ss.snapshot_at.isoformat() if ss.snapshot_at else None,
        # A hot standby with max_connections below its primary's (recovery stops), else null.
        "standby_error": ss.standby_error,
        "ledger": _ledger_json(s.ledger),
        "ledger_at_recommended": _ledger_json(s.recommended_ledger),
        "fit": {"target": s.fit.target, "asked": s.fit.asked, "scale": s.fit.scale, "fits": s.fit.fits, "note": s.fit.note},
        "pools": [
            {
                "service": r.pool.service, "pool": r.pool.pool or None, "database": ss.datnames.get(r.pool.service) or None,
                "database_learned": r.pool.service in ss.learned,
                "action": r.action, "advice": r.label, "current": r.current, "wanted": r.wanted,
                "recommended": r.recommended, "change": r.change, "lost_to_fit": r.cut,
                "max_safe_replicas": r.max_safe_replicas, "reason": r.reason, "arithmetic": r.arithmetic,
                "inputs": _inputs_json(r.pool),
            }
            for r in s.recommendations
        ],
    }


@api_view
def sizing(request):
    """?service=NAME keeps only that service's pools (its server's ledger stays whole)."""
    fleet = fleet_sizing(timezone.now())
    servers = [_server_json(ss) for ss in fleet.servers]
    name = request.GET.get("service")
    if name:
        if name not in fleet.by_service:
            return json_response({"error": f"no pools of a service named {name[:200]!r} to size"}, 404)
        servers = [dict(s, pools=[p for p in s["pools"] if p["service"] == name]) for s in servers]
        servers = [s for s in servers if s["pools"]]
    return json_response({
        "at": fleet.now.isoformat(),
        "window_s": fleet.window_s,
        "policy": asdict(fleet.policy),
        "servers": servers,
    })
