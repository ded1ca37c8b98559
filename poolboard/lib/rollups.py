"""Rollup and chart maths: buckets, percentiles, seconds saturated, chart steps and grids. Pure.

The SQL rollups in poolboard.history.rollup compute the same definitions in the
database; the functions here are the reference the tests compare them with, and the
helpers that lay chart points on a fixed time grid.

Instants are timezone-aware datetimes and durations seconds; buckets are aligned on
the Unix epoch (as PostgreSQL's date_bin(..., TIMESTAMPTZ 'epoch')), so the epoch
arithmetic stays inside this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

FIVE_MINUTES = 300
ONE_HOUR = 3600

# At most this many points per chart series: more than a chart is pixels wide says nothing more.
MAX_POINTS = 1000

# Steps a chart may use, in seconds: round numbers people read on an axis.
NICE_STEPS = (15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def bucket_start(moment: datetime, width_s: int) -> datetime:
    """Start of the bucket of width `width_s` (aligned on the Unix epoch) holding `moment` (UTC)."""
    return datetime.fromtimestamp(math.floor(moment.timestamp() / width_s) * width_s, tz=timezone.utc)


def percentile(values: Iterable[float | None], q: float) -> float | None:
    """Continuous percentile with linear interpolation (PostgreSQL's percentile_cont).

    Absent values (None) are left out; None when nothing is left.
    """
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return None
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def is_saturated(in_use: float | None, max_value: float | None, pending: float | None) -> bool | None:
    """Waiting callers, or every connection in use (max > 0). None when it cannot be told."""
    if pending is not None and pending > 0:
        return True
    if in_use is not None and max_value is not None and max_value > 0 and in_use >= max_value:
        return True
    if pending is None and (in_use is None or max_value is None or max_value <= 0):
        return None
    return False


def sample_spans(timestamps: Sequence[datetime], max_gap_s: float) -> list[float]:
    """How long each sample stands for: the time until the next sample.

    The newest sample stands for the gap before it (the tick interval); a lone sample
    for `max_gap_s`. A span longer than `max_gap_s` means samples are missing, and
    only `max_gap_s` of it is credited: an outage is not time saturated (or not).
    """
    spans = []
    n = len(timestamps)
    for i, ts in enumerate(timestamps):
        if i + 1 < n:
            span = (timestamps[i + 1] - ts).total_seconds()
        elif i > 0:
            span = (ts - timestamps[i - 1]).total_seconds()
        else:
            span = max_gap_s
        spans.append(min(span, max_gap_s))
    return spans


def events_in_spans(samples: Iterable[tuple[float, float | None]], window_s: float) -> float | None:
    """Events (timeouts, acquisitions) that happened within the samples' spans.

    Each raw sample's count is the counter's increase over the source's rate window, so
    consecutive samples overlap; a sample stands for count × span ÷ window of them.
    `samples` are (span_s, count) pairs; None when no sample has a value.
    """
    present = [(span, n) for span, n in samples if n is not None]
    if not present:
        return None
    return sum(n * span / window_s for span, n in present)


def is_waiting(pending: float | None) -> bool | None:
    """Callers waiting for a connection. None when the exporter gives no waiting count."""
    if pending is None:
        return None
    return pending > 0


def flagged_seconds(
    samples: Sequence[tuple[datetime, float | None, float | None, float | None]],
    bucket: datetime,
    width_s: int,
    max_gap_s: float,
    flag: Callable[[float | None, float | None, float | None], bool | None],
) -> float | None:
    """Seconds of one bucket `flag(in_use, max, pending)` held, estimated from sample spacing.

    `samples` are one pool's (ts, in_use, max, pending) sorted by time; they may reach
    past the bucket on both sides (neighbours set the spans at the edges). Each sample
    inside the bucket counts for its span; the total is capped at the bucket width.
    None when no sample in the bucket can tell (flag gives None for all of them).
    """
    timestamps = [s[0] for s in samples]
    spans = sample_spans(timestamps, max_gap_s)
    total = 0.0
    known = False
    end = bucket + timedelta(seconds=width_s)
    for (ts, in_use, max_value, pending), span in zip(samples, spans):
        if not bucket <= ts < end:
            continue
        held = flag(in_use, max_value, pending)
        if held is None:
            continue
        known = True
        if held:
            total += span
    if not known:
        return None
    return min(total, float(width_s))


def saturated_seconds(samples, bucket: datetime, width_s: int, max_gap_s: float) -> float | None:
    """Seconds of one bucket with callers waiting or every connection in use (is_saturated)."""
    return flagged_seconds(samples, bucket, width_s, max_gap_s, is_saturated)


def waiting_seconds(samples, bucket: datetime, width_s: int, max_gap_s: float) -> float | None:
    """Seconds of one bucket with callers waiting (pending > 0): the report's saturation minutes.

    Narrower than saturated_seconds: a pool exactly full with nobody queued is busy, not yet
    making anyone wait. None when the exporter gives no waiting count.
    """
    return flagged_seconds(samples, bucket, width_s, max_gap_s, lambda _in_use, _max, pending: is_waiting(pending))


def choose_step(range_s: float, base_s: int, *, min_step_s: int = 0, max_points: int = MAX_POINTS) -> int:
    """The smallest nice step ≥ base_s and ≥ min_step_s giving at most `max_points` points.

    The step is a multiple of `base_s` (a rollup's width), so buckets are never split.
    """
    floor = max(base_s, min_step_s, math.ceil(range_s / max_points))
    for step in NICE_STEPS:
        if step >= floor and step % base_s == 0:
            return step
    return math.ceil(floor / base_s) * base_s


@dataclass(frozen=True)
class Grid:
    """Evenly spaced chart buckets: start, start + step, … (count of them), step in seconds."""

    start: datetime
    step: int
    count: int

    @property
    def end(self) -> datetime:
        """End of the last bucket (exclusive)."""
        return self.start + timedelta(seconds=self.count * self.step)

    @property
    def times(self) -> list[datetime]:
        return [self.start + timedelta(seconds=i * self.step) for i in range(self.count)]

    @property
    def epoch_seconds(self) -> list[int]:
        """The bucket starts as Unix seconds: the charts' (uPlot's) and the JSON API's wire format."""
        first = int(self.start.timestamp())
        return [first + i * self.step for i in range(self.count)]

    def index(self, moment: datetime) -> int | None:
        i = int((moment - self.start).total_seconds() // self.step)
        return i if 0 <= i < self.count else None


def grid_for(end: datetime, range_s: int, step_s: int) -> Grid:
    """The grid of `step_s` buckets covering (end - range, end], aligned on the epoch."""
    last = bucket_start(end, step_s)
    count = max(1, math.ceil(range_s / step_s))
    return Grid(start=last - timedelta(seconds=(count - 1) * step_s), step=step_s, count=count)


def align(grid: Grid, rows: Iterable[tuple[datetime, float | None]]) -> list[float | None]:
    """Place (bucket start, value) rows on the grid; buckets without a row stay None (a gap)."""
    out: list[float | None] = [None] * grid.count
    for moment, value in rows:
        i = grid.index(moment)
        if i is not None and value is not None and math.isfinite(value):
            out[i] = value
    return out
