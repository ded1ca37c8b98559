"""Explicit builders for fleet rows (no factory library): services with sampled pools."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.utils import timezone

from poolboard.fleet.models import Pool, PrometheusSource, Service


def source(name: str = "main", **extra) -> PrometheusSource:
    extra.setdefault("url", "http://127.0.0.1:9")
    extra.setdefault("presets", ["db_pool", "hikaricp", "otel"])
    extra.setdefault("last_success_at", timezone.now())
    return PrometheusSource.objects.create(name=name, **extra)


def service_with_pool(src: PrometheusSource, name: str, *, age_s: float = 5, instance: str = "10.0.0.1:9100", **values) -> Service:
    svc = Service.objects.create(name=name, source=src, preset="hikaricp", last_seen_at=timezone.now())
    Pool.objects.create(
        service=svc, instance=instance, name=f"{name}-pool", sampled_at=timezone.now() - timedelta(seconds=age_s), **values
    )
    return svc


def raw_sample_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM fleet_poolsample")
        return cursor.fetchone()[0]
