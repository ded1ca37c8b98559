"""The reads the sizing needs, each one SQL query for the whole fleet.

Demand comes from the 5-minute rollups (poolboard.history): per (service, pool name),
over every instance's buckets in the window, so a pool's numbers are per instance.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection, models

from poolboard.databases.models import SessionCount
from poolboard.history.rollup import RES_5M
from poolboard.lib.sizing import Demand

# Per bucket, in use + waiting: p95 of each (what the rollup keeps) for the percentiles, max of
# each for the peak. Little's law per bucket: acquisitions per second × mean hold time.
DEMAND_SQL = """
WITH b AS (
    SELECT p.service_id, p.name AS pool, r.bucket,
           r.in_use_p95 + coalesce(r.pending_p95, 0) AS d95,
           r.in_use_max + coalesce(r.pending_max, 0) AS dmax,
           r.pending_max, r.timeouts, r.saturated_s, r.acquisitions, r.hold_s_avg
    FROM {table} r JOIN fleet_pool p ON p.id = r.pool_id
    WHERE r.bucket >= %(since)s AND r.bucket < %(until)s AND r.in_use_p95 IS NOT NULL
)
SELECT service_id, pool,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY d95),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY d95),
       max(dmax),
       count(DISTINCT bucket),
       coalesce(bool_or(pending_max > 0), false),
       coalesce(sum(timeouts), 0),
       coalesce(sum(saturated_s), 0),
       sum(acquisitions) / nullif(count(acquisitions) * %(width)s, 0),
       sum(hold_s_avg * acquisitions) / nullif(sum(acquisitions) FILTER (WHERE hold_s_avg IS NOT NULL), 0),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY acquisitions / %(width)s * hold_s_avg)
FROM b GROUP BY service_id, pool
"""

# The most instances of each pool that reported in the same bucket.
INSTANCES_SQL = """
SELECT service_id, pool, max(n) FROM (
    SELECT p.service_id, p.name AS pool, r.bucket, count(*) AS n
    FROM {table} r JOIN fleet_pool p ON p.id = r.pool_id
    WHERE r.bucket >= %(since)s AND r.bucket < %(until)s
    GROUP BY 1, 2, 3
) per_bucket GROUP BY service_id, pool
"""

PoolKey = tuple[int, str]


def demand_by_pool(since: datetime, until: datetime) -> dict[PoolKey, Demand]:
    """{(service id, pool name): Demand per instance over [since, until)}."""
    window_s = (until - since).total_seconds()
    width = RES_5M.width_s
    with connection.cursor() as cursor:
        cursor.execute(DEMAND_SQL.format(table=RES_5M.table), {"since": since, "until": until, "width": float(width)})
        rows = cursor.fetchall()
    out: dict[PoolKey, Demand] = {}
    for service_id, pool, p95, p99, peak, buckets, waited, timeouts, saturated_s, rate, hold, little in rows:
        out[(service_id, pool)] = Demand(
            window_s=window_s, history_s=float(buckets * width), p95=p95, p99=p99, peak=peak,
            little=little if rate is not None and hold is not None else None,
            rate_per_s=rate, hold_s=hold, waited=bool(waited), timeouts=float(timeouts), saturated_s=float(saturated_s),
        )
    return out


def instances_by_pool(since: datetime, until: datetime) -> dict[PoolKey, int]:
    with connection.cursor() as cursor:
        cursor.execute(INSTANCES_SQL.format(table=RES_5M.table), {"since": since, "until": until})
        return {(s, p): n for s, p, n in cursor.fetchall()}


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


def recent(now: datetime, hours: int = 24) -> tuple[datetime, datetime]:
    return now - timedelta(hours=hours), now
