"""Seeded history for the report tests: 5-minute rollups and snapshots written directly."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from poolboard.databases.models import MonitoredServer, Snapshot
from poolboard.history.models import PoolRollup5m
from poolboard.lib import capacity


def rollups(pool, start: datetime, count: int, make) -> None:
    """`count` 5-minute buckets of `pool` from `start`; make(i, bucket) -> the row's values (or None: no row)."""
    rows = []
    for i in range(count):
        at = start + timedelta(seconds=capacity.BUCKET_S * i)
        values = make(i, at)
        if values is None:
            continue
        values = {"samples": 20, **values}
        if "in_use_avg" in values:
            values.setdefault("in_use_max", values["in_use_avg"])
            values.setdefault("in_use_p95", values["in_use_avg"])
        rows.append(PoolRollup5m(pool=pool, bucket=at, **values))
    PoolRollup5m.objects.bulk_create(rows, batch_size=5000)


def week_of_rollups(pool, period: capacity.Period, make) -> None:
    rollups(pool, period.start, int(period.seconds // capacity.BUCKET_S), make)


def server(name: str = "orders-db") -> MonitoredServer:
    return MonitoredServer.objects.create(name=name, host="127.0.0.1", port=1, dbname="postgres", user="root")


def daily_snapshots(srv: MonitoredServer, days: dict[date, list[int]], tz: str, max_connections: int = 103,
                    reserved: int = 3) -> None:
    """Snapshots of `srv`: for each local day, one per given total, spread over the day from 01:00 local."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    rows = []
    for day, totals in days.items():
        for i, total in enumerate(totals):
            at = datetime(day.year, day.month, day.day, 1, tzinfo=zone) + timedelta(minutes=10 * i)
            rows.append(Snapshot(server=srv, slot=int(at.timestamp()), taken_at=at, total=total,
                                 max_connections=max_connections, superuser_reserved_connections=reserved))
    Snapshot.objects.bulk_create(rows, batch_size=5000)
