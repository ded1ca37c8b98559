"""poolboard.lib.statements: deltas between pg_stat_statements readings, hand-worked. Pure."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from poolboard.lib import statements as st

T0 = datetime(2026, 12, 2, 10, 0, 0, tzinfo=timezone.utc)
A = st.Key("shop", "app", 111)
B = st.Key("shop", "app", 222)
C = st.Key("shop", "report", 333)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def c(calls, total, rows=0, hit=0, read=0, mx=None) -> st.Counters:
    return st.Counters(calls=calls, total_exec_ms=total, rows=rows, shared_blks_hit=hit, shared_blks_read=read, max_exec_ms=mx)


def reading(t, entries, **kw) -> st.Reading:
    return st.Reading(taken_at=at(t), entries=entries, **kw)


def test_it_takes_the_first_reading_as_a_baseline_only() -> None:
    d = st.diff(None, reading(0, {A: c(10, 100.0), B: c(1, 5.0)}))
    assert d.deltas == []
    assert d.baselines == [A, B]
    assert d.notes == []


def test_it_subtracts_each_counter_between_two_readings() -> None:
    before = reading(0, {A: c(10, 100.0, rows=10, hit=50, read=5, mx=20.0)}, stats_reset=at(-3600), dealloc=0)
    after = reading(300, {A: c(16, 190.0, rows=22, hit=80, read=6, mx=20.0)}, stats_reset=at(-3600), dealloc=0)
    d = st.diff(before, after)
    (delta,) = d.deltas
    assert (delta.start, delta.end, delta.seconds) == (at(0), at(300), 300)
    assert delta.counters == c(6, 90.0, rows=12, hit=30, read=1, mx=None)  # max not above the earlier 20 ms
    assert delta.mean_ms == 15.0  # 90 ms / 6 calls
    assert delta.restarted is False
    assert d.notes == [] and d.gone == [] and d.evicted == 0


def test_it_keeps_the_max_only_when_it_rose_in_the_interval() -> None:
    d = st.diff(reading(0, {A: c(1, 5.0, mx=5.0)}), reading(60, {A: c(3, 60.0, mx=40.0)}))
    assert d.deltas[0].counters.max_exec_ms == 40.0


def test_it_counts_from_the_reset_when_the_view_was_reset() -> None:
    before = reading(0, {A: c(100, 1000.0), B: c(5, 50.0)}, stats_reset=at(-3600), dealloc=3)
    # Reset at 200 s; since then A ran 4 times (40 ms), B not at all (gone), C is new.
    after = reading(300, {A: c(4, 40.0), C: c(2, 8.0)}, complete=True, stats_reset=at(200), dealloc=0)
    d = st.diff(before, after)
    assert d.reset_at == at(200)
    assert [(x.key, x.start, x.counters.calls, x.counters.total_exec_ms, x.restarted) for x in d.deltas] == [
        (A, at(200), 4, 40.0, True),
        (C, at(200), 2, 8.0, True),
    ]
    assert all(x.counters.calls >= 0 and x.counters.total_exec_ms >= 0 for x in d.deltas)
    assert d.gone == [B]
    assert d.notes == ["pg_stat_statements was reset at 2026-12-02 10:03:20 UTC; this interval counts from the reset."]
    # dealloc restarts from 0 with the reset: no eviction is reported.
    assert d.evicted == 0


def test_it_never_subtracts_when_a_counter_went_down_without_a_known_reset() -> None:
    # PostgreSQL 13 (no pg_stat_statements_info), or one entry reset alone.
    before = reading(0, {A: c(100, 1000.0), B: c(5, 50.0)})
    after = reading(300, {A: c(3, 30.0), B: c(7, 70.0)})
    d = st.diff(before, after)
    by_key = {x.key: x for x in d.deltas}
    assert by_key[A].counters == c(3, 30.0, mx=None) and by_key[A].restarted
    assert by_key[B].counters == c(2, 20.0) and not by_key[B].restarted
    assert d.notes == [
        "pg_stat_statements was reset between 2026-12-02 10:00:00 UTC and 2026-12-02 10:05:00 UTC"
        " (1 statement counted less than before); this interval counts from the reset."
    ]


def test_it_takes_a_reset_as_restart_even_if_only_blocks_went_down() -> None:
    d = st.diff(reading(0, {A: c(10, 100.0, hit=500)}), reading(60, {A: c(10, 100.0, hit=20)}))
    assert d.deltas[0].restarted and d.deltas[0].counters.shared_blks_hit == 20


def test_it_counts_a_new_statement_in_full_only_when_its_absence_was_known() -> None:
    new = {A: c(10, 100.0), C: c(4, 400.0)}
    # The previous read was the top N only and did not look for C: C may be old, so a baseline.
    d = st.diff(reading(0, {A: c(8, 80.0)}), reading(300, new))
    assert [x.key for x in d.deltas] == [A] and d.baselines == [C]
    # The previous read returned the whole view: C was not there, all of it is new.
    d = st.diff(reading(0, {A: c(8, 80.0)}, complete=True), reading(300, new))
    assert {x.key: x.counters.calls for x in d.deltas} == {A: 2, C: 4}
    # The previous read looked for C (tracked) and did not find it: evicted, now back.
    d = st.diff(reading(0, {A: c(8, 80.0)}, looked_for=frozenset({C})), reading(300, new))
    assert {x.key: (x.counters.calls, x.restarted) for x in d.deltas} == {A: (2, False), C: (4, True)}


def test_it_notes_eviction_and_statements_that_left_the_view() -> None:
    before = reading(0, {A: c(10, 100.0), B: c(2, 2.0)}, stats_reset=at(-60), dealloc=4)
    after = reading(300, {A: c(12, 120.0)}, looked_for=frozenset({A, B}), stats_reset=at(-60), dealloc=6)
    d = st.diff(before, after)
    assert d.evicted == 2
    assert d.gone == [B]
    assert d.notes == [
        "pg_stat_statements ran out of room 2 times since 2026-12-02 10:00:00 UTC and dropped its least-run"
        " statements (raise pg_stat_statements.max); a statement dropped and seen again counts from its return.",
        "1 tracked statement left pg_stat_statements (dropped for room, or reset); if seen again, counted from their return.",
    ]
    assert [x.counters.calls for x in d.deltas] == [2]


def test_it_does_not_call_a_statement_gone_when_the_read_did_not_look_for_it() -> None:
    d = st.diff(reading(0, {A: c(1, 1.0), B: c(1, 1.0)}), reading(300, {A: c(2, 2.0)}))
    assert d.gone == [] and d.notes == []


def test_it_books_an_interval_to_the_hour_of_its_midpoint() -> None:
    eleven = datetime(2026, 12, 2, 11, 0, tzinfo=timezone.utc)
    assert st.hour_of(eleven - timedelta(seconds=300), eleven + timedelta(seconds=0.3)) == T0
    assert st.hour_of(eleven - timedelta(seconds=100), eleven + timedelta(seconds=200)) == eleven
    paris = timezone(timedelta(hours=1))
    assert st.hour_of(datetime(2026, 12, 2, 12, 10, tzinfo=paris), datetime(2026, 12, 2, 12, 15, tzinfo=paris)) == eleven


def test_it_rolls_intervals_up_into_hours() -> None:
    rows = [
        (1, at(0), at(300), c(10, 100.0, rows=10, hit=5, read=1, mx=30.0)),
        (1, at(300), at(600), c(5, 200.0, rows=5, hit=1, read=0, mx=None)),
        (1, at(3590), at(3890), c(1, 1.0, mx=1.0)),  # midpoint 11:02:20 -> 11:00
        (2, at(0), at(300), c(2, 4.0, mx=3.0)),
    ]
    hours = st.rollup_hourly(rows)
    eleven = T0 + timedelta(hours=1)
    assert hours[(1, T0)] == st.Totals(calls=15, total_exec_ms=300.0, rows=15, shared_blks_hit=6, shared_blks_read=1,
                                      max_exec_ms=30.0, intervals=2)
    assert hours[(1, T0)].mean_ms == 20.0
    assert hours[(1, eleven)].calls == 1
    assert hours[(2, T0)].max_exec_ms == 3.0
    assert st.rollup_hourly(rows) == hours  # recomputed, not incremented


@pytest.mark.parametrize(("now", "before", "expected"), [(125.0, 100.0, 0.25), (50.0, 100.0, -0.5), (1.0, 0.0, None),
                                                         (None, 3.0, None), (3.0, None, None)])
def test_it_reports_the_change_against_last_week(now, before, expected) -> None:
    assert st.change(now, before) == expected


def test_it_gives_no_mean_without_calls() -> None:
    assert c(0, 0.0).mean_ms is None
    assert st.per_second(30, 300) == 0.1 and st.per_second(3, 0) is None
