"""The hourly rollup of databases.QueryHold (statements.HoldHourly) and its retention.

A snapshot's holds say how many sessions ran each statement for each service at that moment;
summed over an hour × the snapshot interval they are the connection-seconds the statement held
of that service's pool. Recomputed, not incremented, like the statement and pool rollups: a
second run over the same hours writes the same rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection

from poolboard.databases.models import QueryHold, Snapshot, snapshot_interval
from poolboard.lib.rollups import ONE_HOUR, bucket_start

from .models import HoldHourly

ROLLUP_SQL = """
INSERT INTO {hourly} AS h (server_id, datname, query_id, service_id, hour, held_s, peak, snapshots)
SELECT server_id, datname, query_id, service_id, date_bin('1 hour', taken_at, TIMESTAMPTZ 'epoch'),
       sum(n) * %(step)s, max(n), count(*)
FROM (
    -- Per snapshot first: one service may run under several application names.
    SELECT s.server_id, h.datname, h.query_id, h.service_id, s.taken_at, sum(h.count) AS n
    FROM {holds} h JOIN {snapshots} s ON s.id = h.snapshot_id
    WHERE s.taken_at >= %(start)s AND h.query_id IS NOT NULL
    GROUP BY s.server_id, h.datname, h.query_id, h.service_id, s.id, s.taken_at
) AS per_snapshot
GROUP BY 1, 2, 3, 4, 5
ON CONFLICT (server_id, query_id, datname, service_id, hour) DO UPDATE SET
    held_s = EXCLUDED.held_s, peak = EXCLUDED.peak, snapshots = EXCLUDED.snapshots
"""


def rollup_recent(now: datetime, hours: int = 3) -> int:
    """Recompute the hours from `hours` - 1 hours before now's hour onwards. Returns rows written."""
    return rollup_since(bucket_start(now, ONE_HOUR) - timedelta(hours=hours - 1))


def rollup_since(start: datetime) -> int:
    """Recompute every hour from `start` (an hour's start) on. Retention is collection.expire's."""
    sql = ROLLUP_SQL.format(hourly=HoldHourly._meta.db_table, holds=QueryHold._meta.db_table,
                            snapshots=Snapshot._meta.db_table)
    with connection.cursor() as cur:
        cur.execute(sql, {"start": start, "step": snapshot_interval()})
        return cur.rowcount
