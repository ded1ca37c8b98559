"""The weekly capacity report's maths: the period, a week's figures, week-over-week, the forecast.

Pure: no Django, no I/O; instants are aware datetimes, the time zone is passed in by name.

The period is an ISO week in the configured zone: Monday 00:00 to the next Monday 00:00
local, half-open, with both boundaries stored in UTC. The calendar says 7 × 24 hours; the
clock does not always agree: the week the clocks go forward lasts 167 real hours (one local
hour never happens) and the week they go back 169 (one local hour happens twice). Every
duration-based figure (coverage, saturation minutes) uses the real elapsed time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")
BUCKET_S = 300  # the 5-minute rollups the report reads

# A week-over-week change smaller than this share of the previous value is "flat": a few
# per cent is noise between two weeks of a busy service, not a trend worth an arrow.
FLAT_SHARE = 0.05
# The forecast fits up to 8 weeks of daily peaks and needs 4: fewer points let one odd
# day (a deploy, a load test) decide the slope.
FORECAST_MAX_DAYS = 56
FORECAST_MIN_DAYS = 28
# A fitted rise of less than one connection over the whole window is no trend: it is
# rounding in the daily peaks (which are whole connections).
MIN_RISE = 1.0
# Cells with less than half of the week's samples say "insufficient data", never 0
# (next-capabilities W2): absent data must not read as healthy.
MIN_COVERAGE = 0.5


class PeriodError(ValueError):
    """A week or time zone that cannot be a report period; the message says what to give."""


@dataclass(frozen=True)
class Period:
    """One ISO week in `tz`: [start, end) in UTC."""

    year: int
    week: int
    tz: str
    start: datetime
    end: datetime

    @property
    def key(self) -> str:
        return f"{self.year}-W{self.week:02d}"

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def real_hours(self) -> float:
        """Elapsed hours: 167 when the clocks go forward in the week, 169 when they go back."""
        return self.seconds / 3600

    @property
    def calendar_hours(self) -> int:
        """Monday 00:00 to Monday 00:00 on the calendar: always 7 × 24."""
        return 7 * 24

    @property
    def wall_clock_hours(self) -> int:
        """Distinct local clock hours that happen in the week (the repeated hour counts twice)."""
        return round(self.real_hours)

    @property
    def local_start(self) -> datetime:
        return self.start.astimezone(ZoneInfo(self.tz))

    def days(self) -> list[tuple[date, datetime, datetime]]:
        """The 7 local days: (date, start UTC, end UTC); 23, 24 or 25 hours each."""
        zone = ZoneInfo(self.tz)
        monday = self.local_start.date()
        out = []
        for i in range(7):
            d = monday + timedelta(days=i)
            out.append((d, _local_midnight(d, zone), _local_midnight(d + timedelta(days=1), zone)))
        return out

    def previous(self) -> Period:
        monday = self.local_start.date() - timedelta(days=7)
        return period_of_date(monday, self.tz)

    def next(self) -> Period:
        monday = self.local_start.date() + timedelta(days=7)
        return period_of_date(monday, self.tz)


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise PeriodError(f"Unknown time zone {tz!r}: give an IANA name such as Europe/Paris or UTC.") from None


def _local_midnight(d: date, tz: ZoneInfo) -> datetime:
    # Midnight exists in every zone poolboard is likely to meet; where a zone skips it
    # (a few historical transitions), fold=0 gives the instant just after the gap.
    return datetime.combine(d, time(0), tzinfo=tz).astimezone(timezone.utc)


def period_of_date(d: date, tz: str) -> Period:
    """The ISO week containing local date `d`."""
    zi = zone(tz)
    year, week, weekday = d.isocalendar()
    monday = d - timedelta(days=weekday - 1)
    return Period(
        year=year,
        week=week,
        tz=tz,
        start=_local_midnight(monday, zi),
        end=_local_midnight(monday + timedelta(days=7), zi),
    )


def parse_week(text: str, tz: str) -> Period:
    """'2026-W48' -> that ISO week in `tz`; a clear PeriodError for anything else."""
    match = WEEK_RE.match((text or "").strip())
    if not match:
        raise PeriodError(f"{text!r} is not an ISO week: give it as YYYY-Www, e.g. 2026-W48.")
    year, week = int(match[1]), int(match[2])
    try:
        monday = date.fromisocalendar(year, week, 1)
    except ValueError:
        raise PeriodError(f"{year} has no ISO week {week}: weeks run from 01 to 52 or 53.") from None
    return period_of_date(monday, tz)


def period_containing(now: datetime, tz: str) -> Period:
    return period_of_date(now.astimezone(zone(tz)).date(), tz)


def last_complete_period(now: datetime, tz: str) -> Period:
    """The newest week that has ended by `now` (the current, partial one is never reported)."""
    return period_containing(now, tz).previous()


# --- one week's figures -------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks, like PostgreSQL's percentile_cont."""
    data = sorted(v for v in values if v is not None)
    if not data:
        return None
    pos = q * (len(data) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


@dataclass(frozen=True)
class Bucket:
    """One service's 5-minute rollup bucket, its pools added up.

    in_use: mean connections in use; in_use_peak: the pools' highest in-use readings added;
    max: pool capacity; waiting_s: seconds with callers waiting for a connection (pending > 0,
    the busiest pool's); timeouts / acquisitions: counts in the bucket; acquire_s: mean wait
    for a connection. None = the exporter does not give it.
    """

    at: datetime
    in_use: float | None = None
    in_use_peak: float | None = None
    max: float | None = None
    pending_peak: float | None = None
    waiting_s: float | None = None
    timeouts: float | None = None
    acquisitions: float | None = None
    acquire_s: float | None = None


def _present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


@dataclass
class WeekFigures:
    coverage: float = 0.0
    peak_in_use: float | None = None
    p95_in_use: float | None = None
    max: float | None = None
    peak_util: float | None = None
    p95_util: float | None = None
    p99_util: float | None = None
    saturation_minutes: float | None = None
    timeouts: float | None = None
    acquisitions: float | None = None
    timeouts_per_1k: float | None = None
    acquire_p95_s: float | None = None
    # The pool max in the week's first and last bucket that gives one: a resize shows as a change.
    first_max: float | None = None
    last_max: float | None = None
    daily_peak: list[float | None] = field(default_factory=list)
    daily_p95: list[float | None] = field(default_factory=list)

    @property
    def enough_data(self) -> bool:
        return self.coverage >= MIN_COVERAGE

    def as_dict(self) -> dict:
        return {
            "coverage": self.coverage,
            "peak_in_use": self.peak_in_use,
            "p95_in_use": self.p95_in_use,
            "max": self.max,
            "peak_util": self.peak_util,
            "p95_util": self.p95_util,
            "p99_util": self.p99_util,
            "saturation_minutes": self.saturation_minutes,
            "timeouts": self.timeouts,
            "acquisitions": self.acquisitions,
            "timeouts_per_1k": self.timeouts_per_1k,
            "acquire_p95_s": self.acquire_p95_s,
            "first_max": self.first_max,
            "last_max": self.last_max,
            "daily_peak": self.daily_peak,
            "daily_p95": self.daily_p95,
        }


def week_figures(buckets: Sequence[Bucket], period: Period, bucket_s: int = BUCKET_S) -> WeekFigures:
    """A service's week from its 5-minute buckets inside the period.

    Percentiles are over the week's 5-minute means (time-weighted: each bucket is five
    minutes); the peak is the highest reading. Utilization is in use ÷ max per bucket.
    Saturation minutes are the minutes with callers waiting (pending > 0): a pool exactly
    full with nobody queued is not counted, it has made no one wait yet. Timeouts per 1 000 acquisitions only
    where the exporter counts both. Buckets outside [start, end) are ignored.
    """
    inside = [b for b in buckets if period.start <= b.at < period.end]
    fig = WeekFigures()
    fig.coverage = min(len(inside) * bucket_s / period.seconds, 1.0) if period.seconds else 0.0
    in_use = _present(b.in_use for b in inside)
    peaks = _present(b.in_use_peak if b.in_use_peak is not None else b.in_use for b in inside)
    fig.peak_in_use = max(peaks) if peaks else None
    fig.p95_in_use = percentile(in_use, 0.95)
    maxes = _present(b.max for b in inside)
    fig.max = max(maxes) if maxes else None
    in_order = sorted(inside, key=lambda b: b.at)
    fig.first_max = next((b.max for b in in_order if b.max is not None), None)
    fig.last_max = next((b.max for b in reversed(in_order) if b.max is not None), None)
    utils = _present(_ratio(b.in_use, b.max) for b in inside)
    peak_utils = _present(_ratio(b.in_use_peak if b.in_use_peak is not None else b.in_use, b.max) for b in inside)
    fig.peak_util = max(peak_utils) if peak_utils else None
    fig.p95_util = percentile(utils, 0.95)
    fig.p99_util = percentile(utils, 0.99)
    waiting = _present(b.waiting_s for b in inside)
    fig.saturation_minutes = sum(waiting) / 60 if waiting else None
    paired = [(b.timeouts, b.acquisitions) for b in inside if b.timeouts is not None and b.acquisitions is not None]
    timeouts = _present(b.timeouts for b in inside)
    acquisitions = _present(b.acquisitions for b in inside)
    fig.timeouts = sum(timeouts) if timeouts else None
    fig.acquisitions = sum(acquisitions) if acquisitions else None
    if paired and sum(a for _, a in paired) > 0:
        fig.timeouts_per_1k = 1000 * sum(t for t, _ in paired) / sum(a for _, a in paired)
    fig.acquire_p95_s = percentile(_present(b.acquire_s for b in inside), 0.95)
    for _, start, end in period.days():
        day = [b for b in inside if start <= b.at < end]
        day_peaks = _present(b.in_use_peak if b.in_use_peak is not None else b.in_use for b in day)
        fig.daily_peak.append(max(day_peaks) if day_peaks else None)
        fig.daily_p95.append(percentile(_present(b.in_use for b in day), 0.95))
    return fig


# --- week over week -----------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """This week against the last: delta, percentage (None when last week was 0: "new") and an arrow."""

    current: float | None
    previous: float | None
    delta: float | None
    pct: float | None
    direction: str  # up | down | flat | new | none

    @property
    def arrow(self) -> str:
        return {"up": "↑", "down": "↓", "flat": "→", "new": "new", "none": ""}[self.direction]

    def as_dict(self) -> dict:
        return {"current": self.current, "previous": self.previous, "delta": self.delta, "pct": self.pct,
                "direction": self.direction}


def change(current: float | None, previous: float | None, flat_share: float = FLAT_SHARE) -> Change:
    if current is None or previous is None:
        return Change(current, previous, None, None, "none")
    delta = current - previous
    if previous == 0:
        return Change(current, previous, delta, None, "flat" if current == 0 else "new")
    pct = 100.0 * delta / abs(previous)
    if abs(delta) <= flat_share * abs(previous):
        direction = "flat"
    else:
        direction = "up" if delta > 0 else "down"
    return Change(current, previous, delta, pct, direction)


# --- the forecast -------------------------------------------------------------------------


def theil_sen(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Slope and intercept of the Theil–Sen line: the median of the pairwise slopes, then
    the median of y − slope·x. One outlier day (a load test) cannot tilt it, unlike least
    squares; with 56 points it is 1 540 slopes, nothing to optimise."""
    slopes = [
        (y2 - y1) / (x2 - x1)
        for i, (x1, y1) in enumerate(points)
        for x2, y2 in points[i + 1 :]
        if x2 != x1
    ]
    if not slopes:
        raise ValueError("a line needs two points at different x")
    slope = percentile(slopes, 0.5)
    intercept = percentile([y - slope * x for x, y in points], 0.5)
    return slope, intercept


@dataclass(frozen=True)
class Forecast:
    """Days until daily peaks reach `usable` at the fitted trend.

    status: rising (days is set), not_rising, exhausted (the fitted peak is already at the
    budget), insufficient (fewer than FORECAST_MIN_DAYS daily peaks).
    """

    status: str
    days: float | None
    slope_per_day: float | None
    points: int
    fitted_now: float | None = None

    @property
    def label(self) -> str:
        if self.status == "rising":
            return "> 180 days" if self.days > 180 else f"{self.days:.0f} days"
        return {
            "not_rising": "not rising",
            "exhausted": "at the budget now",
            "insufficient": f"not enough history ({self.points} of {FORECAST_MIN_DAYS} days)",
        }[self.status]

    def as_dict(self) -> dict:
        return {"status": self.status, "days": self.days, "slope_per_day": self.slope_per_day, "points": self.points,
                "fitted_now": self.fitted_now, "label": self.label}


def forecast(daily_peaks: Sequence[tuple[float, float]], usable: float | None) -> Forecast:
    """`daily_peaks`: (day number, peak) with the newest day last, at most the last
    FORECAST_MAX_DAYS used; days count from the newest day (the report's last)."""
    points = sorted((float(x), float(y)) for x, y in daily_peaks if y is not None)[-FORECAST_MAX_DAYS:]
    if len(points) < FORECAST_MIN_DAYS or not usable:
        return Forecast("insufficient", None, None, len(points))
    slope, intercept = theil_sen(points)
    fitted = slope * points[-1][0] + intercept  # the trend's value on the newest day
    span = points[-1][0] - points[0][0]
    if slope <= 0 or slope * span < MIN_RISE:
        return Forecast("not_rising", None, slope, len(points), fitted)
    if fitted >= usable:
        return Forecast("exhausted", 0.0, slope, len(points), fitted)
    return Forecast("rising", (usable - fitted) / slope, slope, len(points), fitted)


# --- what to do first ---------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    score: float
    text: str
    subject: str  # service or server name
    kind: str


def top_actions(actions: Iterable[Action], n: int = 3) -> list[Action]:
    """The `n` highest-scoring actions, one per subject (the worst thing about it)."""
    seen: set[str] = set()
    out = []
    for action in sorted(actions, key=lambda a: (-a.score, a.subject, a.kind)):
        if action.subject in seen:
            continue
        seen.add(action.subject)
        out.append(action)
        if len(out) == n:
            break
    return out
