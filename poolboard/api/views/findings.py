"""/api/v1/findings/: the diagnosis verdicts, open and past, as the pages show them."""

from __future__ import annotations

from poolboard.api.auth import api_view, json_response
from poolboard.diagnosis.models import KIND_CHOICES, Finding
from poolboard.fleet.models import Service


def finding_json(f: Finding) -> dict:
    return {
        "id": f.id,
        "service": f.service.name,
        "kind": f.kind,
        "severity": f.severity,
        "peak_severity": f.peak_severity,
        "confidence": f.confidence,
        "open": f.closed_at is None,
        "opened_at": f.opened_at.isoformat(),
        "last_seen_at": f.last_seen_at.isoformat(),
        "closed_at": f.closed_at.isoformat() if f.closed_at else None,
        "summary": f.summary,
        "evidence": f.evidence,
        "fix": f.fix,
        "suspected_leaked": f.suspected_leaked,
        "detail": f.detail,
    }


@api_view
def findings(request):
    """?service=NAME&kind=leak&open=1&limit=100&offset=0, newest first; `next_offset` pages on."""
    qs = Finding.objects.select_related("service").order_by("-opened_at", "-id")
    kind = request.GET.get("kind")
    if kind:
        if kind not in dict(KIND_CHOICES):
            return json_response({"error": f"unknown kind {kind!r}; use one of {', '.join(dict(KIND_CHOICES))}"}, 400)
        qs = qs.filter(kind=kind)
    name = request.GET.get("service")
    if name:
        if not Service.objects.filter(name=name).exists():
            return json_response({"error": f"no service named {name!r}"}, 404)
        qs = qs.filter(service__name=name)
    is_open = request.GET.get("open")
    if is_open in ("1", "true"):
        qs = qs.filter(closed_at__isnull=True)
    elif is_open in ("0", "false"):
        qs = qs.filter(closed_at__isnull=False)
    elif is_open is not None:
        return json_response({"error": "open must be 1 or 0"}, 400)
    try:
        limit = max(1, min(int(request.GET.get("limit", "100")), 1000))
        offset = max(0, int(request.GET.get("offset", "0")))
    except ValueError:
        return json_response({"error": "limit and offset must be whole numbers"}, 400)
    rows = list(qs[offset : offset + limit + 1])
    return json_response({
        "findings": [finding_json(f) for f in rows[:limit]],
        "next_offset": offset + limit if len(rows) > limit else None,
    })
