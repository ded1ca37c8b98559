"""A Celery beat schedule due at the start of every slot, for the tasks that store one row per slot.

Collection stores one run per (source, floor(now / COLLECT_INTERVAL)) and snapshots one
per (database, floor(now / DATABASE_SNAPSHOT_INTERVAL)). A plain interval schedule is due
`interval` seconds after beat started, at whatever point of the slot that falls: started
13 s into a 15 s slot, every tick begins 13 s late, a 2 s tick then ends in the next slot
(bench_load measured three ticks in three ending 1-1.3 s after their slot), and as the
interval drifts a slot now and then gets two ticks and its neighbour none. This schedule
is due once per slot, as the slot begins.

No Django here: settings.py imports it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from celery.schedules import schedstate, schedule


class every_slot(schedule):  # noqa: N801 - named like Celery's own schedules (crontab, schedule, solar)
    """Due at each multiple of `run_every` seconds since the epoch, once per slot."""

    def _next_slot_start(self, after: datetime) -> float:
        seconds = self.seconds
        return (after.timestamp() // seconds + 1) * seconds

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        now = self.maybe_make_aware(self.now())
        return timedelta(seconds=self._next_slot_start(self.maybe_make_aware(last_run_at)) - now.timestamp())

    def is_due(self, last_run_at: datetime) -> schedstate:
        now = self.maybe_make_aware(self.now())
        until_next_slot = self._next_slot_start(now) - now.timestamp()
        due = self.remaining_estimate(last_run_at).total_seconds() <= 0
        return schedstate(is_due=due, next=until_next_slot)

    def __repr__(self) -> str:
        return f"<every_slot: {self.seconds:g} s>"
