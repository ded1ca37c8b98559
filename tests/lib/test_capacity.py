"""The weekly report's maths, against weeks computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from poolboard.lib import capacity as cap


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- the period ---------------------------------------------------------------------------


def test_it_reads_an_iso_week_as_monday_to_monday_local_in_utc():
    period = cap.parse_week("2026-W48", "Europe/Paris")
    # Monday 23 November 2026 00:00 in Paris (UTC+1) is Sunday 23:00 UTC.
    assert period.start == utc(2026, 11, 22, 23)
    assert period.end == utc(2026, 11, 29, 23)
    assert period.real_hours == 168
    assert period.key == "2026-W48"


def test_it_makes_the_spring_forward_week_167_real_hours():
    # Europe/Paris goes from 02:00 to 03:00 on Sunday 29 March 2026 (ISO week 13).
    period = cap.parse_week("2026-W13", "Europe/Paris")
    assert period.start == utc(2026, 3, 22, 23)  # Monday 00:00 CET
    assert period.end == utc(2026, 3, 29, 22)  # Monday 00:00 CEST
    assert period.real_hours == 167
    assert period.wall_clock_hours == 167
    assert period.calendar_hours == 168
    assert [round((e - s).total_seconds() / 3600) for _, s, e in period.days()] == [24] * 6 + [23]


def test_it_makes_the_fall_back_week_169_real_hours():
    # Europe/Paris goes from 03:00 back to 02:00 on Sunday 25 October 2026 (ISO week 43).
    period = cap.parse_week("2026-W43", "Europe/Paris")
    assert period.start == utc(2026, 10, 18, 22)
    assert period.end == utc(2026, 10, 25, 23)
    assert period.real_hours == 169
    assert period.wall_clock_hours == 169
    assert period.calendar_hours == 168
    assert [round((e - s).total_seconds() / 3600) for _, s, e in period.days()] == [24] * 6 + [25]


def test_it_tiles_weeks_without_gap_or_overlap_across_dst():
    period = cap.parse_week("2026-W01", "America/New_York")
    hours = set()
    for _ in range(60):
        hours.add(period.real_hours)
        nxt = period.next()
        assert nxt.start == period.end
        assert nxt.previous() == period
        period = nxt
    assert hours == {167, 168, 169}


def test_it_reports_the_last_complete_week_never_the_current_one():
    # Monday 7 December 2026 00:30 in Paris: week 49 has just ended.
    now = utc(2026, 12, 6, 23, 30)
    assert cap.last_complete_period(now, "Europe/Paris").key == "2026-W49"
    # Ten minutes earlier (Sunday 23:50 in Paris) week 49 is still running.
    assert cap.last_complete_period(now - timedelta(minutes=40), "Europe/Paris").key == "2026-W48"
    # In UTC it is still Sunday: week 48 is the last complete one.
    assert cap.last_complete_period(now, "UTC").key == "2026-W48"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-48", "not an ISO week: give it as YYYY-Www"),
        ("2025-W53", "2025 has no ISO week 53"),
        ("", "not an ISO week"),
    ],
)
def test_it_says_what_is_wrong_with_a_bad_week(text, message):
    with pytest.raises(cap.PeriodError, match=message):
        cap.parse_week(text, "UTC")


def test_it_says_what_is_wrong_with_a_bad_time_zone():
    with pytest.raises(cap.PeriodError, match="Unknown time zone 'Mars/Olympus'"):
        cap.parse_week("2026-W48", "Mars/Olympus")


# --- one week's figures -------------------------------------------------------------------


def week_of_buckets(period, make):
    """One bucket every 5 minutes over the period, built by make(i, at)."""
    n = int(period.seconds // cap.BUCKET_S)
    return [make(i, period.start + timedelta(seconds=i * cap.BUCKET_S)) for i in range(n)]


def test_it_computes_a_hand_made_week():
    period = cap.parse_week("2026-W48", "UTC")
    # 2016 buckets. In use 4 of 10 everywhere, except: 100 buckets at 9 (in use),
    # 20 of which saturated for 120 s each with peak readings of 10, and on Wednesday
    # one bucket peaking at 10.
    def make(i, at):
        if i < 20:
            return cap.Bucket(at, in_use=9, in_use_peak=10, max=10, waiting_s=120, timeouts=1, acquisitions=500,
                              acquire_s=0.5)
        if i < 100:
            return cap.Bucket(at, in_use=9, in_use_peak=9, max=10, waiting_s=0, timeouts=0, acquisitions=500,
                              acquire_s=0.01)
        return cap.Bucket(at, in_use=4, in_use_peak=5, max=10, waiting_s=0, timeouts=0, acquisitions=500,
                          acquire_s=0.01)

    buckets = week_of_buckets(period, make)
    fig = cap.week_figures(buckets, period)
    assert fig.coverage == 1.0
    # 20 buckets × 120 s = 40 minutes saturated.
    assert fig.saturation_minutes == pytest.approx(40.0)
    # 100 of 2016 buckets (4.96 %) at 0.9, the rest at 0.4: p95 sits in the 0.4s (rank
    # 0.95 × 2015 = 1914.25 of the sorted values, whose top 100 are 0.9 from rank 1916).
    assert fig.p95_util == pytest.approx(0.4)
    # p99: rank 0.99 × 2015 = 1994.85 is inside the 0.9s.
    assert fig.p99_util == pytest.approx(0.9)
    assert fig.peak_util == pytest.approx(1.0)
    assert fig.peak_in_use == 10
    assert fig.timeouts == 20
    assert fig.acquisitions == 2016 * 500
    assert fig.timeouts_per_1k == pytest.approx(1000 * 20 / (2016 * 500))
    assert fig.acquire_p95_s == pytest.approx(0.01)
    # Monday holds the 100 busy buckets (288 a day): its peak is 10, the others' 5.
    assert fig.daily_peak == [10, 5, 5, 5, 5, 5, 5]
    # Monday's p95 of in use: 100 of 288 at 9 -> 9; the other days all 4.
    assert fig.daily_p95 == [9, 4, 4, 4, 4, 4, 4]


def test_it_leaves_absent_fields_absent_and_counts_coverage():
    period = cap.parse_week("2026-W48", "UTC")
    # Half a week of buckets from an exporter without waiting, timeouts or acquire time.
    buckets = week_of_buckets(period, lambda i, at: cap.Bucket(at, in_use=2, max=4))[:1008]
    buckets.append(cap.Bucket(period.end, in_use=4, max=4))  # the next week's: ignored
    fig = cap.week_figures(buckets, period)
    assert fig.coverage == pytest.approx(0.5)
    assert fig.enough_data
    assert fig.saturation_minutes is None
    assert fig.timeouts_per_1k is None
    assert fig.acquire_p95_s is None
    assert fig.peak_util == pytest.approx(0.5)
    assert fig.daily_peak == [2, 2, 2, 2, None, None, None]


def test_it_counts_coverage_against_the_real_hours_of_a_dst_week():
    period = cap.parse_week("2026-W13", "Europe/Paris")  # 167 h
    buckets = week_of_buckets(period, lambda i, at: cap.Bucket(at, in_use=1, max=2, waiting_s=300))
    assert len(buckets) == 167 * 12
    fig = cap.week_figures(buckets, period)
    assert fig.coverage == 1.0
    assert fig.saturation_minutes == pytest.approx(167 * 60)
    # Sunday, the short day, has 23 hours of buckets and still a figure.
    assert fig.daily_peak == [1] * 7


def test_it_gives_an_empty_week_no_figures():
    period = cap.parse_week("2026-W48", "UTC")
    fig = cap.week_figures([], period)
    assert fig.coverage == 0
    assert not fig.enough_data
    assert fig.p95_util is None and fig.peak_in_use is None and fig.saturation_minutes is None
    assert fig.daily_peak == [None] * 7


def test_it_interpolates_percentiles_like_postgresql():
    assert cap.percentile([1, 2, 3, 4], 0.5) == 2.5
    assert cap.percentile([10], 0.99) == 10
    assert cap.percentile([], 0.95) is None
    assert cap.percentile(list(range(101)), 0.95) == pytest.approx(95)


# --- week over week -----------------------------------------------------------------------


def test_it_gives_week_over_week_changes_with_arrows():
    up = cap.change(30, 20)
    assert (up.delta, up.pct, up.direction, up.arrow) == (10, 50.0, "up", "↑")
    down = cap.change(15, 20)
    assert (down.delta, down.pct, down.direction, down.arrow) == (-5, -25.0, "down", "↓")
    flat = cap.change(20.5, 20)
    assert flat.direction == "flat" and flat.arrow == "→"
    new = cap.change(12, 0)
    assert (new.pct, new.direction, new.arrow) == (None, "new", "new")
    assert cap.change(0, 0).direction == "flat"
    assert cap.change(None, 3).direction == "none"
    assert cap.change(3, None).arrow == ""


# --- the forecast -------------------------------------------------------------------------


def days(values):
    return list(enumerate(values))


def test_it_forecasts_a_rising_series():
    # 28 daily peaks rising 2 a day to 60 on the newest day; usable 100: (100 - 60) / 2 = 20 days.
    f = cap.forecast(days([6 + 2 * i for i in range(28)]), 100)
    assert f.status == "rising"
    assert f.days == pytest.approx(20, abs=1e-9)
    assert f.slope_per_day == pytest.approx(2)
    assert f.label == "20 days"


def test_it_ignores_a_single_outlier_day():
    values = [6 + 2 * i for i in range(28)]
    values[10] = 400  # a load test
    f = cap.forecast(days(values), 100)
    assert f.days == pytest.approx(20, abs=0.5)


def test_it_calls_a_flat_series_not_rising():
    f = cap.forecast(days([40, 41, 40, 39, 40, 41, 40] * 4), 100)
    assert f.status == "not_rising"
    assert f.days is None
    assert f.label == "not rising"


def test_it_calls_a_falling_series_not_rising():
    f = cap.forecast(days([90 - i for i in range(35)]), 100)
    assert f.status == "not_rising"
    assert f.slope_per_day == pytest.approx(-1)


def test_it_says_a_series_already_over_the_budget_is_exhausted():
    f = cap.forecast(days([80 + i for i in range(30)]), 100)
    assert f.status == "exhausted" and f.days == 0


def test_it_wants_four_weeks_and_uses_at_most_eight():
    short = cap.forecast(days(range(27)), 100)
    assert short.status == "insufficient"
    assert short.label == "not enough history (27 of 28 days)"
    # 80 days: the first 24 fall steeply, the last 56 rise 1 a day -> only the rise is fitted.
    values = [500 - 10 * i for i in range(24)] + [10 + i for i in range(56)]
    f = cap.forecast(days(values), 100)
    assert f.points == 56
    assert f.status == "rising" and f.days == pytest.approx(100 - 65)


def test_it_labels_far_exhaustion_beyond_180_days():
    f = cap.forecast(days([10 + 0.1 * i for i in range(56)]), 100)
    assert f.status == "rising" and f.days > 180
    assert f.label == "> 180 days"


def test_it_keeps_the_worst_action_per_subject():
    actions = [
        cap.Action(5, "a", "search", "saturation"),
        cap.Action(9, "b", "search", "leak"),
        cap.Action(7, "c", "orders-db", "budget"),
        cap.Action(1, "d", "billing", "idle"),
        cap.Action(0.5, "e", "reports", "slow"),
    ]
    assert [a.text for a in cap.top_actions(actions)] == ["b", "c", "d"]
