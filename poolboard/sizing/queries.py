"""The reads the sizing needs, each one SQL query for the whole fleet.

Demand comes from the 1-hour rollups (poolboard.history): per pool (one instance) over
the window, then the busiest instance of each (service, pool name) stands for them all,
since every instance gets the same pool size. A bucket's in-use p95 is over its raw
samples, so "p99" is the 99th percentile of the hours' p95s: the busy hours, not a
single sample's spike (that is the peak, from the hours' maxima).
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import connection, models

from poolboard.databases.models import SessionCount
from poolboard.history.rollup import RES_1H
from poolboard.lib.sizing import Demand

# Grouped by pool_id, the rollup's primary key order: each group's percentiles sort ~168 values.
DEMAND_SQL = """
SELECT r.pool_id,
       percentile_cont(ARRAY[0.95, 0.99]) WITHIN GROUP (ORDER BY r.in_use_p95 + coalesce(r.pending_p95, 0)),
       max(r.in_use_max + coalesce(r.pending_max, 0)),
       sum(r.samples),
       coalesce(bool_or(r.pending_max > 0), false),
       -- an exporter without a waiting count (SQLAlchemy, asyncpg) leaves pending NULL: unknown, not 0
       bool_or(r.pending_max IS NOT NULL),
       coalesce(sum(r.timeouts), 0),
       coalesce(sum(r.saturated_s), 0),
       -- per second of sampled time: a bucket only partly sampled (the first, the current) is not a full hour
       sum(r.acquisitions) / nullif(sum(r.samples) FILTER (WHERE r.acquisitions IS NOT NULL) * %(interval)s, 0),
       sum(r.hold_s_avg * r.acquisitions) / nullif(sum(r.acquisitions) FILTER (WHERE r.hold_s_avg IS NOT NULL), 0)
FROM {table} r
WHERE r.bucket >= %(since)s AND r.bucket < %(until)s AND r.in_use_p95 IS NOT NULL
GROUP BY r.pool_id
"""

PoolKey = tuple[int, str]


def _busiest(demands: list[Demand]) -> Demand:
    """One instance's demand for a pool of several: the busiest, with the longest history."""

    def top(name):
        values = [getattr(d, name) for d in demands if getattr(d, name) is not None]
        return max(values) if values else None

    rates = [d.rate_per_s for d in demands if d.rate_per_s is not None]
    holds = [d.hold_s for d in demands if d.hold_s is not None]
    rate = sum(rates) / len(rates) if rates else None
    hold = sum(holds) / len(holds) if holds else None
    return Demand(
        window_s=demands[0].window_s, history_s=max(d.history_s for d in demands),
        p95=top("p95"), p99=top("p99"), peak=top("peak"),
        little=rate * hold if rate is not None and hold is not None else None, rate_per_s=rate, hold_s=hold,
        waited=any(d.waited for d in demands), waiting_known=any(d.waiting_known for d in demands),
        timeouts=sum(d.timeouts for d in demands),
        saturated_s=max(d.saturated_s for d in demands),
    )


def demand_by_pool(since: datetime, until: datetime, pool_keys: dict[int, PoolKey]) -> dict[PoolKey, Demand]:
    """{(service id, pool name): Demand per instance over [since, until)}; `pool_keys` maps pool id to its key."""
    window_s = (until - since).total_seconds()
    interval = float(settings.COLLECT_INTERVAL)
    params = {"since": since, "until": until, "interval": interval}
    with connection.cursor() as cursor:
        cursor.execute(DEMAND_SQL.format(table=RES_1H.table), params)
        rows = cursor.fetchall()
    per_key: dict[PoolKey, list[Demand]] = {}
    for pool_id, (p95, p99), peak, samples, waited, waiting_known, timeouts, saturated_s, rate, hold in rows:
        key = pool_keys.get(pool_id)
        if key is None:
            continue
        per_key.setdefault(key, []).append(Demand(
            window_s=window_s, history_s=min(float(samples) * interval, window_s), p95=p95, p99=p99, peak=peak,
            rate_per_s=rate, hold_s=hold, waited=bool(waited), waiting_known=bool(waiting_known),
            timeouts=float(timeouts), saturated_s=float(saturated_s),
        ))
    return {key: _busiest(demands) for key, demands in per_key.items()}


def learned_servers(since: datetime) -> dict[int, tuple[int, str]]:
    """{service id: (server id, datname)} where the snapshots since `since` saw most of its sessions."""
    rows = (
        SessionCount.objects.filter(snapshot__taken_at__gte=since, service__isnull=False)
        .values_list("service_id", "snapshot__server_id", "datname")
        .annotate(n=models.Sum("count"))
        .order_by("service_id", "-n", "snapshot__server_id", "datname")
    )
    out: dict[int, tuple[int, str]] = {}
    for service_id, server_id, datname, _n in rows:
        out.setdefault(service_id, (server_id, datname))
    return out
