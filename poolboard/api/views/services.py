from __future__ import annotations

from django.utils import timezone

from poolboard.api.auth import api_view, json_response
from poolboard.diagnosis.models import Finding
from poolboard.fleet.models import CANONICAL_FIELDS, Service
from poolboard.history.queries import DEFAULT_RANGE, RANGES, SERIES_FIELDS
from poolboard.history.queries import service_series as service_series_query


def pool_json(pool, now) -> dict:
    status = pool.status(now)
    return {
        "instance": pool.instance,
        "pool": pool.name,
        **{f: getattr(pool, f) for f in CANONICAL_FIELDS},
        "timestamp": pool.sampled_at.isoformat() if pool.sampled_at else None,
        "status": status.status,
        "stale": status.status in ("stale", "unknown"),
    }


def summary_json(service, pools: list[dict], summary, now) -> dict:
    """Status, reason, verdict and staleness: the same answer the overview gives."""
    stale_since = service.stale_since_at(now, summary)
    verdict = summary.verdict
    return {
        "status": summary.status,
        "reason": summary.reason,
        "verdict": {"kind": verdict.kind, "severity": verdict.severity, "since": verdict.since.isoformat(),
                    "evidence": verdict.text} if verdict else None,
        "utilization": summary.utilization,
        "last_seen": service.last_seen_at.isoformat() if service.last_seen_at else None,
        "stale": bool(stale_since or any(p["stale"] for p in pools) or not pools),
        "stale_since": stale_since.isoformat() if stale_since else None,
    }


@api_view
def services(request):
    now = timezone.now()
    findings = Finding.objects.open_by_service()
    data = []
    for service in Service.objects.for_overview():
        rows = list(service.pools.all())
        pools = [pool_json(p, now) for p in rows]
        summary = service.summary(now, [(p.values(), p.sampled_at) for p in rows], findings.get(service.pk, []))
        data.append(
            {
                "name": service.name,
                "preset": service.preset,
                "source": service.source.name,
                **summary_json(service, pools, summary, now),
                "pools": pools,
            }
        )
    return json_response({"services": data, "generated_at": now.isoformat()})


def preset_json(service) -> dict:
    preset = service.preset_object()
    if preset is None:
        return {"name": service.preset, "title": None, "fields": [], "missing_fields": [], "notes": {}}
    return {
        "name": preset.name,
        "title": preset.title,
        "fields": [f for f in CANONICAL_FIELDS if f in preset.queries],
        "missing_fields": preset.missing_fields(),
        "notes": dict(preset.notes),
    }


def _service_or_404(name: str):
    service = Service.objects.for_overview().filter(name=name).first()
    if service is None:
        return None, json_response({"error": f"no service named {name!r}"}, status=404)
    return service, None


@api_view
def service_detail(request, name: str):
    now = timezone.now()
    service, error = _service_or_404(name)
    if error:
        return error
    rows = list(service.pools.all())
    pools = [pool_json(p, now) for p in rows]
    summary = service.summary(now, [(p.values(), p.sampled_at) for p in rows])
    return json_response(
        {
            "name": service.name,
            "source": service.source.name,
            "preset": preset_json(service),
            **summary_json(service, pools, summary, now),
            "pools": pools,
            "generated_at": now.isoformat(),
        }
    )


@api_view
def service_series(request, name: str):
    """One field of a service over a range: pools added up per bucket, null where no sample."""
    field = request.GET.get("field", "")
    range_key = request.GET.get("range", DEFAULT_RANGE)
    if field not in SERIES_FIELDS:
        return json_response(
            {"error": f"unknown field {field!r}: use one of {', '.join(SERIES_FIELDS)}"}, status=400
        )
    if range_key not in RANGES:
        return json_response({"error": f"unknown range {range_key!r}: use one of {', '.join(RANGES)}"}, status=400)
    service, error = _service_or_404(name)
    if error:
        return error
    now = timezone.now()
    preset = service.preset_object()
    available = preset is None or field in preset.queries
    series = service_series_query([p.id for p in service.pools.all()] if available else [], range_key, now)
    return json_response(
        {
            "service": service.name,
            "field": field,
            "range": range_key,
            "step_seconds": series.step,
            "source": series.range.source,
            "available": available,
            "message": None if available else preset.field_note(field),
            "points": series.points(field),
            "generated_at": now.isoformat(),
        }
    )
