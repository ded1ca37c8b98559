"""Daily partition names and bounds for time-partitioned tables. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone


@dataclass(frozen=True)
class DailyPartition:
    table: str
    day: date

    @property
    def name(self) -> str:
        return f"{self.table}_p{self.day:%Y%m%d}"

    @property
    def start(self) -> datetime:
        return datetime.combine(self.day, time.min, tzinfo=timezone.utc)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=1)


def partitions_around(table: str, now: datetime, *, days_back: int = 1, days_ahead: int = 2) -> list[DailyPartition]:
    """The daily partitions that should exist around `now` (UTC days)."""
    today = now.astimezone(timezone.utc).date()
    return [DailyPartition(table, today + timedelta(days=offset)) for offset in range(-days_back, days_ahead + 1)]


def partition_day(table: str, name: str) -> date | None:
    """The day of a partition created by this module, or None for any other table."""
    prefix = f"{table}_p"
    if not name.startswith(prefix):
        return None
    try:
        return datetime.strptime(name[len(prefix):], "%Y%m%d").date()
    except ValueError:
        return None


def expired(table: str, names: list[str], cutoff: datetime) -> list[str]:
    """Partitions whose whole day ends at or before `cutoff`."""
    out = []
    for name in names:
        day = partition_day(table, name)
        if day is not None and DailyPartition(table, day).end <= cutoff:
            out.append(name)
    return sorted(out)
