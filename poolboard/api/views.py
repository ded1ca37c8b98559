from __future__ import annotations

from django.utils import timezone

from poolboard.fleet.models import CANONICAL_FIELDS, Service

from .auth import api_view, json_response


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


@api_view
def services(request):
    now = timezone.now()
    data = []
    for service in Service.objects.for_overview():
        pools = [pool_json(p, now) for p in service.pools.all()]
        source_stale = service.source.stale_since(now)
        data.append(
            {
                "name": service.name,
                "preset": service.preset,
                "source": service.source.name,
                "last_seen": service.last_seen_at.isoformat() if service.last_seen_at else None,
                "stale": bool(service.stale_since or source_stale or any(p["stale"] for p in pools) or not pools),
                "stale_since": (service.stale_since or source_stale).isoformat()
                if (service.stale_since or source_stale)
                else None,
                "pools": pools,
            }
        )
    return json_response({"services": data, "generated_at": now.isoformat()})
