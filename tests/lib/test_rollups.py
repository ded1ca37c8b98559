"""poolboard.lib.rollups: pure maths, no database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from poolboard.lib import rollups as r

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    """The instant `seconds` after the Unix epoch (buckets are aligned on it)."""
    return EPOCH + timedelta(seconds=seconds)


def test_bucket_start_aligns_on_the_epoch() -> None:
    assert r.bucket_start(at(601), 300) == at(600)
    assert r.bucket_start(at(600), 300) == at(600)
    assert r.bucket_start(at(599.9), 300) == at(300)
    # Any time zone in, UTC out.
    paris = timezone(timedelta(hours=1))
    assert r.bucket_start(datetime(2026, 3, 2, 11, 7, tzinfo=paris), 300) == datetime(2026, 3, 2, 10, 5, tzinfo=timezone.utc)


def test_percentile_interpolates_like_percentile_cont() -> None:
    values = list(range(1, 21))  # 1..20
    # PostgreSQL: percentile_cont(0.95) of 1..20 = 19.05
    assert r.percentile(values, 0.95) == pytest.approx(19.05)
    assert r.percentile([5], 0.95) == 5
    assert r.percentile([None, 3, None, 1], 0.5) == 2
    assert r.percentile([None], 0.95) is None
    assert r.percentile([], 0.95) is None


def test_saturation_needs_waiters_or_a_full_pool() -> None:
    assert r.is_saturated(10, 10, 0) is True
    assert r.is_saturated(3, 10, 1) is True
    assert r.is_saturated(3, 10, 0) is False
    # max 0 means unlimited (Go): never full.
    assert r.is_saturated(30, 0, 0) is False
    assert r.is_saturated(30, 0, None) is None
    assert r.is_saturated(None, None, None) is None


def test_waiting_needs_a_waiting_count_above_zero() -> None:
    assert r.is_waiting(1) is True
    assert r.is_waiting(0) is False
    assert r.is_waiting(None) is None


def test_waiting_seconds_count_only_samples_with_callers_queued() -> None:
    # Full all bucket long (saturated 300 s), callers queued at 60 s and 75 s only.
    samples = [(at(t), 10, 10, 2 if t in (60, 75) else 0) for t in range(0, 300, 15)]
    assert r.saturated_seconds(samples, at(0), 300, 30) == 300
    assert r.waiting_seconds(samples, at(0), 300, 30) == 30
    # An exporter without a waiting count: not known, never 0, even when the pool is full.
    assert r.waiting_seconds([(at(0), 10, 10, None)], at(0), 300, 30) is None


def test_saturated_seconds_follow_sample_spacing() -> None:
    samples = [(at(t), 10.0 if t in (30, 45) else 5.0, 10.0, 0.0) for t in range(0, 300, 15)]
    assert r.saturated_seconds(samples, at(0), 300, max_gap_s=30) == 30
    # The newest sample stands for the gap before it.
    assert r.saturated_seconds([(at(0), 1, 10, 0), (at(15), 10, 10, 0)], at(0), 300, 30) == 15
    # A lone sample stands for at most max_gap.
    assert r.saturated_seconds([(at(100), 1, 10, 3)], at(0), 300, 30) == 30
    # Neighbours outside the bucket set the span, but do not count themselves.
    assert r.saturated_seconds([(at(290), 10, 10, 0), (at(305), 10, 10, 0)], at(0), 300, 30) == 15
    # Capped at the bucket width.
    assert r.saturated_seconds([(at(t), 10, 10, 5) for t in range(0, 300, 15)], at(0), 300, 100) == 300
    # Unknown when nothing can tell.
    assert r.saturated_seconds([(at(0), None, None, None)], at(0), 300, 30) is None


def test_choose_step_keeps_points_under_the_cap() -> None:
    assert r.choose_step(3600, 15, min_step_s=30) == 30
    assert r.choose_step(6 * 3600, 15, min_step_s=30) == 30
    assert r.choose_step(24 * 3600, 15, min_step_s=30) == 120
    assert r.choose_step(7 * 86400, 300) == 900
    assert r.choose_step(30 * 86400, 3600) == 3600
    for range_s, base in [(3600, 15), (86400, 15), (7 * 86400, 300), (30 * 86400, 3600), (400 * 86400, 3600)]:
        step = r.choose_step(range_s, base)
        assert step % base == 0 and range_s / step <= r.MAX_POINTS


def test_align_leaves_gaps_as_none_never_zero() -> None:
    grid = r.grid_for(end=at(1000), range_s=300, step_s=60)
    assert grid.times == [at(t) for t in (720, 780, 840, 900, 960)] and grid.end == at(1020)
    assert grid.epoch_seconds == [720, 780, 840, 900, 960]
    values = r.align(grid, [(at(780), 2.0), (at(900), 0.0), (at(960), float("nan")), (at(5000), 9.0)])
    assert values == [None, 2.0, None, 0.0, None]


def test_it_spreads_counted_events_over_the_span_each_sample_stands_for() -> None:
    # A counter that rose by 6 once: every 15 s sample for the next minute reports
    # increase[1m] = 6; the four overlapping samples add up to the 6 that happened.
    assert r.events_in_spans([(15, 6.0)] * 4, 60) == 6.0
    assert r.events_in_spans([(15, None)], 60) is None


def test_promql_durations_in_seconds() -> None:
    from poolboard.lib.promql import duration_seconds

    assert duration_seconds("1h30m") == 5400 and duration_seconds("500ms") == 0.5 and duration_seconds("5m") == 300
