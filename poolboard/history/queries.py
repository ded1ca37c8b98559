"""Chart series of one service: raw samples for short ranges, rollups for long ones.

One SQL query per call whatever the number of pools or services (and, for raw ranges,
one for the pools' rate windows): the database buckets the points (date_bin) per pool,
then adds the pools up per bucket; Python only lays the rows on a fixed time grid,
where a bucket without samples stays None (a gap in the chart), never 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connection

from poolboard.fleet.models import Pool
from poolboard.lib import promql
from poolboard.lib.rollups import FIVE_MINUTES, ONE_HOUR, Grid, align, choose_step, grid_for

from .rollup import RES_1H, RES_5M

# Fields a chart or the series API can show, and how pools add up per bucket:
# gauges are summed over pools, times averaged, timeouts summed (each pool's largest
# per-window increase in the bucket), acquisitions summed as a rate per second (raw:
# each sample's per-window increase ÷ its source's window; rollups: the bucket's
# checkouts ÷ its width), the throughput a leak is told from load by.
SERIES_FIELDS: tuple[str, ...] = (
    "in_use", "idle", "max", "pending", "acquire_s", "hold_s", "timeouts", "acquisitions",
)


@dataclass(frozen=True)
class Range:
    key: str
    seconds: int
    source: str  # raw | 5m | 1h


RANGES: dict[str, Range] = {
    r.key: r
    for r in (
        Range("1h", 3600, "raw"),
        Range("6h", 6 * 3600, "raw"),
        Range("24h", 24 * 3600, "raw"),
        Range("7d", 7 * 86400, "5m"),
        Range("30d", 30 * 86400, "1h"),
    )
}
# The last hour is what an on-call engineer looks at first; longer ranges are one click away.
DEFAULT_RANGE = "1h"

SOURCE_LABELS = {"raw": "raw samples", "5m": "5-minute rollups", "1h": "1-hour rollups"}


def step_for(rng: Range) -> int:
    if rng.source == "raw":
        # Two ticks at least, so a late tick never leaves a false gap between buckets.
        return choose_step(rng.seconds, settings.COLLECT_INTERVAL, min_step_s=2 * settings.COLLECT_INTERVAL)
    return choose_step(rng.seconds, FIVE_MINUTES if rng.source == "5m" else ONE_HOUR)


RAW_SQL = """
WITH per_pool AS (
    SELECT pool_id, date_bin(make_interval(secs => %(step)s), ts, TIMESTAMPTZ 'epoch') AS b,
           avg(in_use) AS in_use, avg(idle) AS idle, avg(CASE WHEN max > 0 THEN max END) AS max,
           avg(pending) AS pending, avg(acquire_s) AS acquire_s, avg(hold_s) AS hold_s,
           max(timeouts) AS timeouts, avg(acquisitions / w.window_s) AS acquisitions
    FROM fleet_poolsample
    LEFT JOIN unnest(%(pools)s::bigint[], %(window_s)s::float8[]) AS w(pool_id, window_s) USING (pool_id)
    WHERE pool_id = ANY(%(pools)s) AND ts >= %(start)s AND ts < %(end)s
    GROUP BY 1, 2
)
SELECT b, sum(in_use), sum(idle), sum(max), sum(pending),
       avg(acquire_s), avg(hold_s), sum(timeouts), sum(acquisitions)
FROM per_pool GROUP BY b ORDER BY b
"""

ROLLUP_SQL = """
WITH per_pool AS (
    SELECT pool_id, date_bin(make_interval(secs => %(step)s), bucket, TIMESTAMPTZ 'epoch') AS b,
           avg(in_use_avg) AS in_use, avg(idle_avg) AS idle, avg(CASE WHEN max_avg > 0 THEN max_avg END) AS max,
           avg(pending_avg) AS pending, avg(acquire_s_avg) AS acquire_s, avg(hold_s_avg) AS hold_s,
           max(timeouts_max) AS timeouts,
           -- buckets without a value are left out of the time too (a gap is no zero)
           sum(acquisitions) / nullif(count(acquisitions) * %(width)s, 0) AS acquisitions
    FROM {table}
    WHERE pool_id = ANY(%(pools)s) AND bucket >= %(start)s AND bucket < %(end)s
    GROUP BY 1, 2
)
SELECT b, sum(in_use), sum(idle), sum(max), sum(pending),
       avg(acquire_s), avg(hold_s), sum(timeouts), sum(acquisitions)
FROM per_pool GROUP BY b ORDER BY b
"""


@dataclass
class ServiceSeries:
    range: Range
    step: int
    grid: Grid
    values: dict[str, list[float | None]] = field(default_factory=dict)

    @property
    def times(self) -> list[int]:
        """Bucket starts in Unix seconds: what the charts (uPlot) and the JSON API send."""
        return self.grid.epoch_seconds

    @property
    def has_data(self) -> bool:
        return any(v is not None for values in self.values.values() for v in values)

    @property
    def step_label(self) -> str:
        if self.step % 3600 == 0:
            return f"{self.step // 3600} h"
        if self.step % 60 == 0:
            return f"{self.step // 60} min"
        return f"{self.step} s"

    @property
    def source_label(self) -> str:
        return SOURCE_LABELS[self.range.source]

    def points(self, name: str) -> list[list]:
        return [[t, v] for t, v in zip(self.times, self.values[name])]


def service_series(pool_ids: Sequence[int], range_key: str, now: datetime) -> ServiceSeries:
    """Every SERIES_FIELDS series of the pools `pool_ids` over the range ending at `now`."""
    rng = RANGES[range_key]
    step = step_for(rng)
    grid = grid_for(now, rng.seconds, step)
    rows: list[tuple] = []
    if pool_ids:
        pool_ids = list(pool_ids)
        params = {"step": step, "pools": pool_ids, "start": grid.start, "end": grid.end}
        if rng.source == "raw":
            statement = RAW_SQL
            windows = dict(Pool.objects.filter(pk__in=pool_ids).values_list("pk", "service__source__rate_window"))
            params["window_s"] = [promql.duration_seconds(windows[pk]) if pk in windows else None for pk in pool_ids]
        else:
            resolution = RES_5M if rng.source == "5m" else RES_1H
            statement = ROLLUP_SQL.format(table=resolution.table)
            params["width"] = resolution.width_s
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            rows = cursor.fetchall()
    values = {
        name: align(grid, ((row[0], row[i + 1]) for row in rows)) for i, name in enumerate(SERIES_FIELDS)
    }
    return ServiceSeries(range=rng, step=step, grid=grid, values=values)
