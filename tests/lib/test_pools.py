from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from poolboard.lib.pools import (
    format_age,
    parse_sample_value,
    pool_status,
    summarize_service,
    utilization,
)

NOW = datetime(2027, 1, 15, 8, 0, tzinfo=timezone.utc)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("12", 12.0), ("0.25", 0.25), ("NaN", None), ("+Inf", None), ("-Inf", None), ("", None), (None, None), ("x", None)],
)
def test_sample_values_parse_without_crashing(raw, expected) -> None:
    assert parse_sample_value(raw) == expected


def test_utilization_treats_go_max_zero_as_unlimited() -> None:
    assert utilization(5, 10) == 0.5
    assert utilization(5, 0) is None  # database/sql: max_open 0 = unlimited
    assert utilization(None, 10) is None and utilization(3, None) is None


@pytest.mark.parametrize(
    ("values", "status", "reason"),
    [
        ({"max": 10, "in_use": 10, "pending": 3}, "crit", "exhausted: all connections in use, 3 waiting"),
        ({"max": 10, "in_use": 2, "timeouts": 1}, "crit", "1 acquire timeouts"),
        ({"max": 10, "in_use": 6, "pending": 2}, "warn", "2 callers waiting"),
        ({"max": 10, "in_use": 9}, "warn", "90% of max in use"),
        ({"max": 10, "in_use": 4, "pending": 0}, "ok", "healthy"),
        ({"in_use": 4}, "ok", "healthy"),
    ],
)
def test_pool_status(values, status, reason) -> None:
    result = pool_status(values, ago(5), NOW, stale_after_s=45)
    assert (result.status, result.reason) == (status, reason)


def test_an_old_sample_is_stale_and_no_sample_is_unknown() -> None:
    assert pool_status({"max": 1}, ago(600), NOW, 45).reason == "no sample for 10m"
    assert pool_status({}, None, NOW, 45).status == "unknown"


def test_a_service_adds_up_its_pools_and_takes_the_worst_status() -> None:
    pools = [
        ({"max": 10, "in_use": 10, "idle": 0, "pending": 4, "timeouts": 0}, ago(5)),
        ({"max": 10, "in_use": 2, "idle": 8, "pending": 0, "timeouts": 0}, ago(8)),
        ({"in_use": 3, "idle": 1}, ago(3)),  # max unknown: left out of utilization
    ]
    summary = summarize_service(pools, NOW, 45)
    assert (summary.in_use, summary.max, summary.idle, summary.pending) == (15, 20, 9, 4)
    assert summary.utilization == pytest.approx(12 / 20)
    assert summary.status == "crit" and summary.last_sample == ago(3) and summary.pool_count == 3


def test_absent_fields_stay_absent_when_summed() -> None:
    summary = summarize_service([({"in_use": 1}, NOW)], NOW, 45)
    assert summary.pending is None and summary.timeouts is None and summary.utilization is None
    empty = summarize_service([], NOW, 45)
    assert empty.status == "unknown" and empty.in_use is None


@pytest.mark.parametrize(("seconds", "text"), [(5, "5s"), (59.9, "59s"), (60, "1m"), (3600, "1h"), (3720, "1h 2m"), (90000, "1d 1h"), (-3, "0s")])
def test_format_age(seconds, text) -> None:
    assert format_age(seconds) == text


def test_nan_never_leaks_into_sums() -> None:
    summary = summarize_service([({"in_use": parse_sample_value("NaN"), "max": 4}, NOW)], NOW, 45)
    assert summary.in_use is None and not (isinstance(summary.max, float) and math.isnan(summary.max))


def test_it_leads_with_a_leak_verdict_even_below_the_warning_line() -> None:
    from poolboard.lib.pools import Verdict

    leak = Verdict("leak", "leak suspected", "warn", NOW, "in use rose 3 → 6 of 10")
    summary = summarize_service([({"in_use": 6, "max": 10, "idle": 4}, NOW)], NOW, 45, [leak])
    assert (summary.status, summary.reason, summary.verdict) == ("warn", "leak suspected", leak)


def test_it_keeps_the_worse_of_numbers_and_verdicts() -> None:
    from poolboard.lib.pools import Verdict

    churn = Verdict("churn", "connection churn", "info", NOW, "opened 40/min")
    summary = summarize_service([({"in_use": 5, "max": 5, "pending": 3}, NOW)], NOW, 45, [churn])
    assert (summary.status, summary.reason) == ("crit", "connection churn")


def test_it_shows_no_verdict_on_stale_data_or_for_not_enough_data() -> None:
    from datetime import timedelta

    from poolboard.lib.pools import Verdict

    leak = Verdict("leak", "leak suspected", "crit", NOW, "x")
    stale = summarize_service([({"in_use": 6, "max": 10}, NOW - timedelta(minutes=5))], NOW, 45, [leak])
    assert (stale.status, stale.verdict) == ("stale", None)
    waiting = Verdict("not_enough_data", "not enough data", "info", NOW, "2 points")
    fresh = summarize_service([({"in_use": 1, "max": 10}, NOW)], NOW, 45, [waiting])
    assert (fresh.status, fresh.reason, fresh.verdict) == ("ok", "healthy", None)
