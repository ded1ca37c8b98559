"""poolboard watching itself: /healthz (JSON, 200/503) and /metrics (Prometheus text).

Both are open without login so that load balancers and Prometheus can read them; they
show states and numbers only, never configuration or secrets.
"""

from __future__ import annotations

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
from poolboard.sources.prometheus import PrometheusClient, PrometheusError

HEALTH_TIMEOUT_S = 2.0


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001 - any failure is "down", with its class name only
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


def _check_prometheus(sources: list[PrometheusSource]) -> dict:
    results = {}
    for source in sources:
        client = PrometheusClient(source.url, timeout=HEALTH_TIMEOUT_S)
        try:
            info = client.build_info()
            results[source.name] = {"ok": True, "version": info.get("version", "")}
        except PrometheusError as exc:
            results[source.name] = {"ok": False, "error": exc.kind}
        finally:
            client.close()
    return results


@login_not_required
@require_GET
@never_cache
def healthz(request):
    database = _check_database()
    sources = list(PrometheusSource.objects.filter(enabled=True)) if database["ok"] else []
    prometheus = _check_prometheus(sources)
    body = {
        "database": database,
        "redis": _check_redis(),
        "prometheus": prometheus,
    }
    healthy = database["ok"] and body["redis"]["ok"] and all(p["ok"] for p in prometheus.values())
    body["status"] = "ok" if healthy else "degraded"
    return JsonResponse(body, status=200 if healthy else 503)


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
        yield from (last_duration, errors, runs, last_success, samples)


@login_not_required
@require_GET
@never_cache
def metrics(request):
    registry = CollectorRegistry()
    registry.register(CollectionCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
