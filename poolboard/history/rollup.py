"""Roll raw samples up into 5-minute and 1-hour buckets, idempotently, in SQL.

One statement per resolution and time range:

    INSERT INTO history_rollup_<w> (…)
    SELECT … FROM fleet_poolsample … GROUP BY pool_id, bucket
    ON CONFLICT (pool_id, bucket) DO UPDATE SET …

so running it twice over the same range gives the same rows and values (the newest,
still-filling bucket is simply recomputed). The definitions match
poolboard.lib.rollups (p95 = percentile_cont; seconds saturated and seconds with callers
waiting from sample spacing;
timeouts and acquisitions from each sample's increase-over-the-rate-window spread
over its span).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from poolboard.fleet.models import PrometheusSource
from poolboard.lib import promql
from poolboard.lib.rollups import FIVE_MINUTES, ONE_HOUR, bucket_start

from .models import PoolRollup1h, PoolRollup5m


@dataclass(frozen=True)
class Resolution:
    name: str
    width_s: int
    table: str


RES_5M = Resolution("5m", FIVE_MINUTES, PoolRollup5m._meta.db_table)
RES_1H = Resolution("1h", ONE_HOUR, PoolRollup1h._meta.db_table)
RESOLUTIONS = {r.name: r for r in (RES_5M, RES_1H)}

# pg_advisory_xact_lock key space for rollups: "roll" in ASCII.
LOCK_CLASS = 0x726F6C6C

VALUE_COLUMNS = [
    "samples",
    "in_use_min", "in_use_avg", "in_use_max", "in_use_p95",
    "pending_min", "pending_avg", "pending_max", "pending_p95",
    "util_min", "util_avg", "util_max", "util_p95",
    "max_avg", "idle_avg", "acquire_s_avg", "hold_s_avg",
    "timeouts", "timeouts_max", "saturated_s", "acquisitions", "waiting_s",
]  # fmt: skip

ROLLUP_SQL = """
INSERT INTO {table} (pool_id, bucket, {columns})
SELECT
    pool_id,
    date_bin(make_interval(secs => %(width)s), ts, TIMESTAMPTZ 'epoch') AS bucket,
    count(*),
    min(in_use), avg(in_use), max(in_use), percentile_cont(0.95) WITHIN GROUP (ORDER BY in_use),
    min(pending), avg(pending), max(pending), percentile_cont(0.95) WITHIN GROUP (ORDER BY pending),
    min(util), avg(util), max(util), percentile_cont(0.95) WITHIN GROUP (ORDER BY util),
    avg(max), avg(idle), avg(acquire_s), avg(hold_s),
    sum(timeouts * span / coalesce(window_s, span)), max(timeouts),
    CASE WHEN bool_or(saturated IS NOT NULL)
         THEN least(coalesce(sum(span) FILTER (WHERE saturated), 0), %(width)s) END,
    sum(acquisitions * span / coalesce(window_s, span)),
    CASE WHEN bool_or(pending IS NOT NULL)
         THEN least(coalesce(sum(span) FILTER (WHERE pending > 0), 0), %(width)s) END
FROM (
    SELECT
        ps.pool_id, ps.ts, ps.in_use, ps.pending, ps.max, ps.idle, ps.acquire_s, ps.hold_s, ps.timeouts,
        ps.acquisitions, w.window_s,
        CASE WHEN ps.max > 0 THEN ps.in_use / ps.max END AS util,
        CASE WHEN ps.pending > 0 THEN true
             WHEN ps.max > 0 AND ps.in_use >= ps.max THEN true
             WHEN ps.pending IS NULL AND (ps.in_use IS NULL OR ps.max IS NULL OR ps.max <= 0) THEN NULL
             ELSE false END AS saturated,
        -- A sample stands for the time until the next one (the newest: the gap before
        -- it), at most max_gap: longer gaps are missing data, not saturation.
        least(coalesce(extract(epoch FROM lead(ps.ts) OVER w - ps.ts),
                       extract(epoch FROM ps.ts - lag(ps.ts) OVER w),
                       %(max_gap)s), %(max_gap)s) AS span
    FROM fleet_poolsample AS ps
    JOIN fleet_pool AS p ON p.id = ps.pool_id
    JOIN fleet_service AS sv ON sv.id = p.service_id
    -- Each source's rate window in seconds: a sample's `timeouts` (and `acquisitions`) is
    -- the increase over that window, so it stands for timeouts × span ÷ window within
    -- its own span.
    LEFT JOIN unnest(%(source_ids)s::bigint[], %(window_s)s::float8[]) AS w(source_id, window_s)
        ON w.source_id = sv.source_id
    WHERE ps.ts >= %(scan_start)s AND ps.ts < %(scan_end)s
    WINDOW w AS (PARTITION BY ps.pool_id ORDER BY ps.ts)
) AS s
WHERE ts >= %(start)s AND ts < %(end)s
GROUP BY pool_id, bucket
ON CONFLICT (pool_id, bucket) DO UPDATE SET {updates}
"""


def source_windows() -> dict[int, float]:
    """Each Prometheus source's rate window, in seconds."""
    return {
        pk: promql.duration_seconds(window)
        for pk, window in PrometheusSource.objects.values_list("pk", "rate_window")
    }


def max_gap_s() -> float:
    """The longest span one sample may stand for: two collection ticks."""
    return 2.0 * settings.COLLECT_INTERVAL


def rollup(resolution: Resolution, start: datetime, end: datetime) -> int:
    """(Re)compute every bucket of `resolution` overlapping [start, end). Returns rows written."""
    start = bucket_start(start, resolution.width_s)
    if bucket_start(end, resolution.width_s) != end:
        end = bucket_start(end, resolution.width_s) + timedelta(seconds=resolution.width_s)
    gap = max_gap_s()
    statement = ROLLUP_SQL.format(
        table=resolution.table,
        columns=", ".join(VALUE_COLUMNS),
        updates=", ".join(f"{c} = EXCLUDED.{c}" for c in VALUE_COLUMNS),
    )
    windows = source_windows()
    params = {
        "source_ids": list(windows),
        "window_s": list(windows.values()),
        "width": resolution.width_s,
        "max_gap": gap,
        "start": start,
        "end": end,
        "scan_start": start - timedelta(seconds=gap),
        "scan_end": end + timedelta(seconds=gap),
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.rowcount


def rollup_recent(now: datetime) -> dict[str, int]:
    """What the beat task runs every few minutes.

    5-minute buckets of the last 15 minutes (late samples of a closed bucket are
    picked up on the next run) and the current and previous hour.
    """
    with transaction.atomic():
        # Two overlapping runs would only redo the same work, and concurrent upserts of
        # the same keys in different orders can deadlock: the second run skips.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, 1)", [LOCK_CLASS])
            if not cursor.fetchone()[0]:
                return {"skipped": 1}
        return {
            "5m": rollup(RES_5M, now - timedelta(minutes=15), now),
            "1h": rollup(RES_1H, bucket_start(now, ONE_HOUR) - timedelta(hours=1), now),
        }


def expire_rollups(now: datetime) -> dict[str, int]:
    """Delete rollups older than ROLLUP_RETENTION_DAYS (a BRIN index on bucket serves it)."""
    cutoff = now - timedelta(days=settings.ROLLUP_RETENTION_DAYS)
    deleted = {}
    with transaction.atomic(), connection.cursor() as cursor:
        for resolution in RESOLUTIONS.values():
            cursor.execute(f"DELETE FROM {resolution.table} WHERE bucket < %s", [cutoff])
            deleted[resolution.name] = cursor.rowcount
    return deleted
