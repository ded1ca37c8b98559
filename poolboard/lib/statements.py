"""Statement statistics: deltas between two readings of pg_stat_statements, and hourly totals. Pure.

pg_stat_statements keeps cumulative counters per (user, database, queryid, toplevel) since
the entry was created or the view reset. poolboard never resets it (other tools read the
same counters, and PgHero's capture-then-reset loses what happens between the two), so an
interval's figures are the difference between two readings, with three ways it can go wrong:

1. **The view was reset** (pg_stat_statements_reset(): stats_reset of pg_stat_statements_info
   changed, PostgreSQL 14+), or **one entry's counters went down** (an entry reset alone, or
   evicted and created again): the interval restarts. Its figures are the current counters
   (everything since the reset), never a negative difference, and it is noted.
2. **Eviction** (more distinct statements than pg_stat_statements.max: the least-run entries
   are dropped; pg_stat_statements_info.dealloc counts it): an entry that was dropped and came
   back counts from its return. Noted; a tracked statement that is no longer in the view is
   reported as gone.
3. **A statement first seen**: it may be new (then its counters are all inside the interval)
   or merely new to the top N that poolboard reads (then they are not). It counts in full
   only when that can be told: the previous reading read the whole view, or looked for this
   statement and did not find it. Otherwise this reading is its baseline.

pg_stat_statements' max_exec_time is the maximum since the entry was created: an interval
knows its own maximum only when that rose during it (or the entry restarted); otherwise
its max_exec_ms is None ("not above the previous maximum").

Instants are timezone-aware datetimes passed in; nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

ONE_HOUR = 3600


@dataclass(frozen=True)
class Key:
    """One pg_stat_statements entry. Names rather than oids: readable, and they survive a
    dump and restore (a dropped role or database shows as its oid, e.g. "oid 16384")."""

    datname: str
    rolname: str
    queryid: int
    toplevel: bool = True


# The cumulative counters read from pg_stat_statements (max_exec_ms is not one: see the module doc).
COUNTED = ("calls", "total_exec_ms", "rows", "shared_blks_hit", "shared_blks_read")


@dataclass(frozen=True)
class Counters:
    calls: int = 0
    total_exec_ms: float = 0.0
    rows: int = 0
    shared_blks_hit: int = 0
    shared_blks_read: int = 0
    max_exec_ms: float | None = None  # since the entry was created (not a counter)

    def went_down_from(self, before: Counters) -> bool:
        """Any counter below its earlier value: the entry was reset or created again."""
        return any(getattr(self, name) < getattr(before, name) for name in COUNTED)

    def minus(self, before: Counters) -> Counters:
        return Counters(
            **{name: getattr(self, name) - getattr(before, name) for name in COUNTED},
            max_exec_ms=_interval_max(self.max_exec_ms, before.max_exec_ms),
        )

    @property
    def mean_ms(self) -> float | None:
        return self.total_exec_ms / self.calls if self.calls else None


def _interval_max(now: float | None, before: float | None) -> float | None:
    if now is None:
        return None
    if before is None or now > before:
        return now
    return None


@dataclass(frozen=True)
class Reading:
    """What one read of pg_stat_statements returned.

    `entries`: the counters per key (the top N by total time plus the tracked ones).
    `complete`: the read returned every entry of the view (so an entry missing from it did not exist).
    `looked_for`: keys the read asked for by queryid; those missing from `entries` did not exist.
    `stats_reset`, `dealloc`: from pg_stat_statements_info (PostgreSQL 14+), else None.
    """

    taken_at: datetime
    entries: Mapping[Key, Counters]
    complete: bool = False
    looked_for: frozenset[Key] = frozenset()
    stats_reset: datetime | None = None
    dealloc: int | None = None

    def absent(self) -> frozenset[Key]:
        """Keys known not to be in the view at taken_at."""
        return frozenset(k for k in self.looked_for if k not in self.entries)

    def knows_absence_of(self, key: Key) -> bool:
        return key not in self.entries and (self.complete or key in self.looked_for)


@dataclass(frozen=True)
class Delta:
    key: Key
    start: datetime
    end: datetime
    counters: Counters
    restarted: bool = False  # counted from a reset or the entry's (re)creation, not from the previous reading

    @property
    def mean_ms(self) -> float | None:
        return self.counters.mean_ms

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass
class Diff:
    deltas: list[Delta] = field(default_factory=list)
    baselines: list[Key] = field(default_factory=list)  # first seen: counted from the next reading on
    gone: list[Key] = field(default_factory=list)  # in the previous reading, known absent now
    reset_at: datetime | None = None  # the whole view was reset (time known) in this interval
    evicted: int = 0  # entries dropped for lack of room since the previous reading
    notes: list[str] = field(default_factory=list)


def _when(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def diff(previous: Reading | None, current: Reading) -> Diff:
    """The interval from `previous` to `current`: one Delta per entry whose change can be told.

    Never a negative figure: an entry whose counters went down, or every entry after a reset
    of the view, counts from the reset (its current counters). Notes say what happened, in
    words an operator can act on.
    """

    out = Diff()
    if previous is None:
        out.baselines = sorted(current.entries, key=_order)
        return out
    end = current.taken_at
    start = previous.taken_at

    view_reset = (
        current.stats_reset is not None
        and previous.stats_reset is not None
        and current.stats_reset != previous.stats_reset
    ) or (
        # The reading before knew no reset time, this one shows a reset after it.
        current.stats_reset is not None and previous.stats_reset is None and current.stats_reset > start
    )
    if view_reset:
        out.reset_at = current.stats_reset
        reset_start = max(start, min(current.stats_reset, end))
        for key, now in sorted(current.entries.items(), key=lambda kv: _order(kv[0])):
            out.deltas.append(Delta(key, reset_start, end, _from_zero(now), restarted=True))
        out.gone = sorted((k for k in previous.entries if current.knows_absence_of(k)), key=_order)
        out.notes.append(
            f"pg_stat_statements was reset at {_when(current.stats_reset)}; this interval counts from the reset."
        )
        _note_eviction(previous, current, out)
        return out

    restarted = 0
    for key, now in sorted(current.entries.items(), key=lambda kv: _order(kv[0])):
        before = previous.entries.get(key)
        if before is not None:
            if now.went_down_from(before):
                restarted += 1
                out.deltas.append(Delta(key, start, end, _from_zero(now), restarted=True))
            else:
                out.deltas.append(Delta(key, start, end, now.minus(before)))
        elif previous.knows_absence_of(key):
            # Not there at the previous reading: everything it counts happened since.
            out.deltas.append(Delta(key, start, end, _from_zero(now), restarted=True))
        else:
            out.baselines.append(key)
    out.gone = sorted((k for k in previous.entries if current.knows_absence_of(k)), key=_order)
    if restarted:
        out.notes.append(
            f"pg_stat_statements was reset between {_when(start)} and {_when(end)}"
            f" ({restarted} statement{'s' if restarted != 1 else ''} counted less than before);"
            " this interval counts from the reset."
        )
    _note_eviction(previous, current, out)
    return out


def _note_eviction(previous: Reading, current: Reading, out: Diff) -> None:
    if current.dealloc is not None and previous.dealloc is not None and current.dealloc > previous.dealloc:
        out.evicted = current.dealloc - previous.dealloc
    if out.evicted:
        out.notes.append(
            f"pg_stat_statements ran out of room {out.evicted} time{'s' if out.evicted != 1 else ''} since"
            f" {_when(previous.taken_at)} and dropped its least-run statements (raise pg_stat_statements.max);"
            " a statement dropped and seen again counts from its return."
        )
    if out.gone and out.reset_at is None:
        n = len(out.gone)
        out.notes.append(
            f"{n} tracked statement{'s' if n != 1 else ''} left pg_stat_statements (dropped for room, or reset);"
            " if seen again, counted from their return."
        )


def _from_zero(now: Counters) -> Counters:
    return now.minus(Counters())


def _order(key: Key) -> tuple:
    return (key.datname, key.rolname, key.queryid, not key.toplevel)


# --- hourly rollup -------------------------------------------------------------------------


def hour_of(start: datetime, end: datetime) -> datetime:
    """The hour (UTC, on the hour) an interval's figures are booked to: the one holding its
    midpoint. Intervals are minutes long and cut from readings taken just after each slot
    begins, so an interval ending at 11:00:00.3 is booked to 10:00, not 11:00."""
    mid = start + (end - start) / 2
    seconds = mid.timestamp()
    return datetime.fromtimestamp(seconds - seconds % ONE_HOUR, tz=timezone.utc)


@dataclass(frozen=True)
class Totals:
    calls: int = 0
    total_exec_ms: float = 0.0
    rows: int = 0
    shared_blks_hit: int = 0
    shared_blks_read: int = 0
    max_exec_ms: float | None = None
    intervals: int = 0

    def add(self, c: Counters) -> Totals:
        return Totals(
            **{name: getattr(self, name) + getattr(c, name) for name in COUNTED},
            max_exec_ms=_max(self.max_exec_ms, c.max_exec_ms),
            intervals=self.intervals + 1,
        )

    @property
    def mean_ms(self) -> float | None:
        return self.total_exec_ms / self.calls if self.calls else None


def _max(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def rollup_hourly(intervals: Iterable[tuple[object, datetime, datetime, Counters]]) -> dict[tuple[object, datetime], Totals]:
    """Sum (id, start, end, counters) intervals into {(id, hour): Totals}; each interval goes
    whole to hour_of(start, end). Totals are recomputed from the intervals, never incremented,
    so running the rollup twice over the same hours gives the same rows."""
    out: dict[tuple[object, datetime], Totals] = {}
    for ident, start, end, counters in intervals:
        slot = (ident, hour_of(start, end))
        out[slot] = out.get(slot, Totals()).add(counters)
    return out


def per_second(count: float, seconds: float) -> float | None:
    return count / seconds if seconds > 0 else None


def change(now: float | None, before: float | None) -> float | None:
    """Relative change (0.25 = 25 % more), None without a comparable earlier value."""
    if now is None or not before:
        return None
    return (now - before) / before


def week_before(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """The same range one week earlier (the trend column compares with it)."""
    return since - timedelta(days=7), until - timedelta(days=7)
