"""Explicit builders for fleet rows (no factory library): services with sampled pools, raw samples."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from django.db import connection
from django.utils import timezone as django_timezone

from poolboard.fleet.models import Pool, PrometheusSource, Service
from poolboard.lib.pools import FIELDS

COPY_SQL = "COPY fleet_poolsample (pool_id, ts, {}) FROM STDIN".format(", ".join(FIELDS))


def source(name: str = "main", **extra) -> PrometheusSource:
    extra.setdefault("url", "http://127.0.0.1:9")
    extra.setdefault("presets", ["db_pool", "hikaricp", "otel"])
    extra.setdefault("last_success_at", django_timezone.now())
    return PrometheusSource.objects.create(name=name, **extra)


def service_with_pool(src: PrometheusSource, name: str, *, age_s: float = 5, instance: str = "10.0.0.1:9100", **values) -> Service:
    svc = Service.objects.create(name=name, source=src, preset="hikaricp", last_seen_at=django_timezone.now())
    Pool.objects.create(
        service=svc, instance=instance, name=f"{name}-pool", sampled_at=django_timezone.now() - timedelta(seconds=age_s), **values
    )
    return svc


def raw_sample_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM fleet_poolsample")
        return cursor.fetchone()[0]


def write_samples(rows) -> int:
    """rows: (pool_id, epoch seconds, {field: value}) → raw samples (absent fields NULL), with COPY."""
    count = 0
    with connection.cursor() as cursor:
        with cursor.cursor.copy(COPY_SQL) as copy:
            for pool_id, ts, values in rows:
                copy.write_row((pool_id, datetime.fromtimestamp(ts, tz=timezone.utc), *(values.get(f) for f in FIELDS)))
                count += 1
    return count
