"""every_slot: beat runs collection and snapshots as each slot begins, once per slot."""

from __future__ import annotations

from datetime import UTC, datetime

from poolboard.fleet.schedules import every_slot


def at(second: float) -> datetime:
    """12:00:00 UTC (a multiple of 15 s since the epoch) plus `second`."""
    return datetime.fromtimestamp(datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp() + second, tz=UTC)


def state(last_run: float, now: float) -> tuple[bool, float]:
    due, next_check = every_slot(15, nowfun=lambda: at(now)).is_due(at(last_run))
    return due, round(next_check, 3)


def test_it_is_due_as_the_next_slot_begins_whenever_beat_started():
    # Beat started (or last ran) 13 s into the slot: the next run is at 15 s, not 28 s.
    assert state(last_run=13, now=13) == (False, 2)
    assert state(last_run=13, now=14.9) == (False, 0.1)
    assert state(last_run=13, now=15.01) == (True, 14.99)


def test_it_is_due_once_per_slot():
    assert state(last_run=15.01, now=15.02) == (False, 14.98)
    assert state(last_run=15.01, now=29.99) == (False, 0.01)
    assert state(last_run=15.01, now=30) == (True, 15)


def test_it_runs_once_after_a_pause_not_once_per_slot_missed():
    assert state(last_run=3, now=67) == (True, 8)
    assert state(last_run=67, now=68) == (False, 7)
