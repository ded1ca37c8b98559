"""poolboard watching itself: /healthz (JSON, 200/503) and /metrics (Prometheus text).

Both are open without login so that load balancers and Prometheus can read them; they
show states and numbers only, never configuration, URLs or error messages.

/healthz answers "is poolboard alive?": 200 while its own database answers, whatever
the watched Prometheus servers do; a load balancer must not pull the dashboard out
during exactly the incident it is for. Redis (the Celery broker) and each source's
collection state are details in the body. It reads the sources' state as the last
collection runs stored it and sends no request to them, so an anonymous caller cannot
make poolboard call every Prometheus it watches.
"""

from __future__ import annotations

from datetime import datetime

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.db.models import Count, Q
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from poolboard.fleet.models import CollectionRun, PrometheusSource

HEALTH_TIMEOUT_S = 1.0


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:  # any failure is "down", with its class name only
        return {"ok": False, "error": exc.__class__.__name__}


def _check_redis() -> dict:
    try:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=HEALTH_TIMEOUT_S, socket_timeout=HEALTH_TIMEOUT_S
        )
        client.ping()
        client.close()
        return {"ok": True}
    except redis.RedisError as exc:
        return {"ok": False, "error": exc.__class__.__name__}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def source_health(source: PrometheusSource, now: datetime) -> dict:
    """A source's collection state as the stored runs left it: fresh, stale or never collected."""
    stale_since = source.stale_since(now)
    return {
        "ok": source.last_success_at is not None and stale_since is None,
        "last_success": _iso(source.last_success_at),
        "last_error": _iso(source.last_error_at),
        "stale_since": _iso(stale_since),
    }


@login_not_required
@require_GET
@never_cache
def healthz(request):
    database = _check_database()
    body: dict = {"database": database, "redis": _check_redis(), "sources": {}}
    if database["ok"]:
        now = timezone.now()
        sources = PrometheusSource.objects.filter(enabled=True)
        body["sources"] = {source.name: source_health(source, now) for source in sources}
    details_ok = body["redis"]["ok"] and all(s["ok"] for s in body["sources"].values())
    body["status"] = "down" if not database["ok"] else "ok" if details_ok else "degraded"
    return JsonResponse(body, status=200 if database["ok"] else 503)


class CollectionCollector:
    """Reads collection health from the database at scrape time.

    Collection runs in Celery workers, not in the web process that serves /metrics, so
    in-process counters would always read 0 here; the run rows are the truth.
    """

    def collect(self):
        last_duration = GaugeMetricFamily(
            "poolboard_collection_duration_seconds", "Duration of the newest finished collection run", labels=["source"]
        )
        errors = CounterMetricFamily(
            "poolboard_collection_errors", "Failed collection runs (kept run history)", labels=["source"]
        )
        runs = CounterMetricFamily("poolboard_collection_runs", "Collection runs (kept run history)", labels=["source"])
        last_success = GaugeMetricFamily(
            "poolboard_collection_last_success_timestamp_seconds",
            "Unix time of the newest successful collection",
            labels=["source"],
        )
        samples = GaugeMetricFamily(
            "poolboard_collection_samples", "Pools stored by the newest successful run", labels=["source"]
        )
        last_error = GaugeMetricFamily(
            "poolboard_collection_last_error_timestamp_seconds",
            "Unix time of the newest failed collection",
            labels=["source"],
        )
        fresh = GaugeMetricFamily(
            "poolboard_source_fresh",
            "1 while the source's data is fresh (collected within the stale threshold), 0 when stale or never collected",
            labels=["source"],
        )
        now = timezone.now()
        totals = {
            row["source__name"]: row
            for row in CollectionRun.objects.values("source__name").annotate(
                runs=Count("id"), failed=Count("id", filter=Q(status=CollectionRun.FAILED))
            )
        }
        for source in PrometheusSource.objects.all():
            newest = source.runs.exclude(status=CollectionRun.RUNNING).order_by("-started").first()
            newest_ok = source.runs.filter(status=CollectionRun.OK).order_by("-started").first()
            if newest and newest.duration_s is not None:
                last_duration.add_metric([source.name], newest.duration_s)
            total = totals.get(source.name, {"runs": 0, "failed": 0})
            runs.add_metric([source.name], total["runs"])
            errors.add_metric([source.name], total["failed"])
            if source.last_success_at:
                last_success.add_metric([source.name], source.last_success_at.timestamp())
            if newest_ok:
                samples.add_metric([source.name], newest_ok.samples)
            if source.last_error_at:
                last_error.add_metric([source.name], source.last_error_at.timestamp())
            if source.enabled:
                fresh.add_metric([source.name], 1 if source_health(source, now)["ok"] else 0)
        yield from (last_duration, errors, runs, last_success, samples, last_error, fresh)


class FindingCollector:
    """The open diagnosis findings, so Grafana and Alertmanager can use the verdicts:
    `poolboard_finding{service="billing",kind="leak",severity="crit"} 1` (one query)."""

    def collect(self):
        from poolboard.diagnosis.models import Finding

        finding = GaugeMetricFamily(
            "poolboard_finding", "1 for each open diagnosis finding", labels=["service", "kind", "severity"]
        )
        leaked = GaugeMetricFamily(
            "poolboard_finding_suspected_leaked_connections",
            "Connections an open leak finding suspects are held and not working",
            labels=["service"],
        )
        rows = Finding.objects.open().order_by("service__name", "kind").values_list(
            "service__name", "kind", "severity", "suspected_leaked"
        )
        for service, kind, severity, suspected in rows:
            finding.add_metric([service, kind, severity], 1)
            if kind == "leak":
                leaked.add_metric([service], suspected)
        yield finding
        yield leaked


@login_not_required
@require_GET
@never_cache
def metrics(request):
    registry = CollectorRegistry()
    registry.register(CollectionCollector())
    registry.register(FindingCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
