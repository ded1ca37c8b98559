"""The overview's rows: every service summarised, computed once per collection tick.

Fifty people with the overview open poll it every 10 s, and collection changes what it
shows only every 15 s. At 1 000 services, building the rows is most of the page's time
(1 000 Service and 5 000 Pool instances through a prefetch, then 1 000 summaries), so
each process keeps the newest rows and reuses them while they are still exactly what a
fresh computation would give:

- no collection has finished since (every source's `last_success_at` is unchanged: it is
  written in the same transaction as the pools' newest values), and no service was added
  or removed (count and highest id of the services);
- no pool has crossed the staleness line since (rows expire at the moment the next
  fresh pool would turn stale);
- at most one collection interval old, so the ages in the status reasons stay near.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection

from poolboard.lib.pools import FIELDS, ServiceSummary

from .models import Pool, PrometheusSource, Service, stale_after


@dataclass
class OverviewRow:
    service: Service
    summary: ServiceSummary


@dataclass
class _Cached:
    version: tuple
    valid_until: datetime
    rows: list[OverviewRow]


_cached: _Cached | None = None


def data_version() -> tuple:
    """What the rows were computed from: changes with every finished collection, every service
    added or removed, and every diagnosis finding opened, refreshed or closed."""
    sources = tuple(PrometheusSource.objects.order_by("pk").values_list("pk", "last_success_at"))
    # One round trip for services and findings (every poll of every viewer runs this).
    # A pass that changes no verdict still moves last_seen_at: one recomputation per tick,
    # which collection's last_success_at already costs anyway.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM fleet_service), (SELECT max(id) FROM fleet_service),"
            " (SELECT max(id) FROM diagnosis_finding),"
            " (SELECT count(*) FROM diagnosis_finding WHERE closed_at IS NULL),"
            " (SELECT max(last_seen_at) FROM diagnosis_finding WHERE closed_at IS NULL)"
        )
        return (sources, *cursor.fetchone())


def compute_overview_rows(now: datetime) -> tuple[list[OverviewRow], datetime]:
    """Every service's summary at `now`, and the moment a pool of them next turns stale.

    Pools are read as tuples, not model instances: three queries (services, pools, open
    findings) whatever the fleet size.
    """
    stale = stale_after()
    pools: dict[int, list[tuple[dict[str, float | None], datetime | None]]] = {}
    next_stale = now + timedelta(seconds=settings.COLLECT_INTERVAL)
    for service_id, sampled_at, *values in Pool.objects.order_by("instance", "name").values_list(
        "service_id", "sampled_at", *FIELDS
    ):
        pools.setdefault(service_id, []).append((dict(zip(FIELDS, values)), sampled_at))
        if sampled_at is not None and now - sampled_at <= stale:
            next_stale = min(next_stale, sampled_at + stale)
    from poolboard.diagnosis.models import Finding

    findings = Finding.objects.open_by_service()
    rows = [
        OverviewRow(service, service.summary(now, pools.get(service.pk, []), findings.get(service.pk, [])))
        for service in Service.objects.select_related("source")
    ]
    return rows, next_stale


def overview_rows(now: datetime) -> list[OverviewRow]:
    """The overview's rows at `now`, from this process's copy while it is still exact (see the module doc).

    The rows and their services are shared between requests: read them, never change them.
    """
    global _cached
    version = data_version()
    cached = _cached
    if cached is not None and cached.version == version and now < cached.valid_until:
        return cached.rows
    rows, valid_until = compute_overview_rows(now)
    _cached = _Cached(version, valid_until, rows)
    return rows


def forget_overview_rows() -> None:
    """Drop this process's copy: the next call computes afresh (tests, benchmarks)."""
    global _cached
    _cached = None
