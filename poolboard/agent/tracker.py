"""The connections one pool has checked out right now: when, and from where.

`checked_out` and `checked_in` run on the application's threads inside the pool's own checkout
path, so they do the least possible: a monotonic clock read, a short frame walk, one dict store, a
`next()` on a count. Everything else (who is overdue, grouping, formatting) runs on the reporter
thread or at scrape time, reading a copy of the dict.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

from poolboard.agent.stacks import FrameFilter, Stack


@dataclass(frozen=True)
class Held:
    """One connection checked out for longer than the threshold."""

    pool: str
    hold_s: float
    stack: Stack


class PoolTracker:
    def __init__(self, pool_name: str, frame_filter: FrameFilter):
        self.pool_name = pool_name
        self._frame_filter = frame_filter
        # Keyed by id() of the pool's connection record (SQLAlchemy) or connection (psycopg_pool):
        # holding the object itself would keep a dropped connection from being garbage-collected.
        self._out: dict[int, tuple[float, Stack]] = {}
        # Checkouts so far: next() on an itertools.count is atomic under the GIL and lock-free,
        # several times cheaper than a prometheus_client Counter.inc() (which takes a lock).
        self._checkouts = itertools.count(1)

    def checked_out(self, key: int) -> None:
        self._out[key] = (time.monotonic(), self._frame_filter.capture())
        next(self._checkouts)

    def checked_in(self, key: int) -> None:
        self._out.pop(key, None)

    def checkouts(self) -> int:
        # A count cannot be read without advancing it, except through its repr: "count(N)".
        return int(repr(self._checkouts)[6:-1]) - 1

    def forget_all(self) -> None:
        """After a fork: the parent's checkouts are not this process's."""
        self._out.clear()

    def out_count(self) -> int:
        return len(self._out)

    def overdue(self, now: float, threshold_s: float) -> list[Held]:
        """Connections checked out for at least `threshold_s` at monotonic time `now`."""
        # dict.copy() is one C call under the GIL, so checkouts on other threads cannot break it.
        return [
            Held(self.pool_name, now - since, stack)
            for since, stack in self._out.copy().values()
            if now - since >= threshold_s
        ]

    def oldest_hold(self, now: float) -> float:
        """Seconds the longest-held connection has been out, 0 when none is."""
        starts = [since for since, _stack in self._out.copy().values()]
        return now - min(starts) if starts else 0.0
