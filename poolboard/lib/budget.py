"""The connection budget of one PostgreSQL server.

usable = max_connections - superuser_reserved_connections - reserved_connections
(the last exists from PostgreSQL 16). The warning line is 80 % of usable.
Only client backends count: autovacuum workers and background workers have
their own slots.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from poolboard.lib.attribution import is_own
from poolboard.lib.episodes import IDLE_IN_TX_STATES

WARN_FRACTION = 0.8
POOLBOARD = "(poolboard)"
UNATTRIBUTED = "(unattributed)"


@dataclass(frozen=True)
class ServerSettings:
    max_connections: int
    superuser_reserved_connections: int = 3
    reserved_connections: int | None = None  # None: the server has no such setting (< 16)
    track_activity_query_size: int = 1024
    server_version_num: int = 0

    @property
    def reserved(self) -> int:
        return self.superuser_reserved_connections + (self.reserved_connections or 0)

    @property
    def usable(self) -> int:
        return max(self.max_connections - self.reserved, 0)


@dataclass(frozen=True)
class SessionCount:
    application_name: str
    usename: str
    client_addr: str  # "" for Unix-socket sessions
    state: str  # "" when hidden (insufficient privilege)
    wait_event_type: str
    count: int
    datname: str = ""  # the database the sessions are on ("" when hidden)


@dataclass(frozen=True)
class Slice:
    label: str  # service name, POOLBOARD or UNATTRIBUTED
    count: int
    pct: float  # of the bar's scale (max of usable and total), for widths


@dataclass(frozen=True)
class Budget:
    max_connections: int
    reserved: int
    usable: int
    warn_line: float  # connections at the 80 % line
    total: int
    slices: list[Slice] = field(default_factory=list)  # add up exactly to total
    by_state: dict[str, int] = field(default_factory=dict)

    @property
    def scale(self) -> int:
        return max(self.usable, self.total, 1)

    @property
    def utilization(self) -> float:
        """total / usable (may exceed 1 when superusers use reserved slots)."""
        return self.total / self.usable if self.usable else float("inf") if self.total else 0.0

    @property
    def warn_pct(self) -> float:
        return 100.0 * self.warn_line / self.scale

    @property
    def over_warn(self) -> bool:
        return self.total >= self.warn_line

    @property
    def free(self) -> int:
        return max(self.usable - self.total, 0)


class CountLike(Protocol):
    """A SessionCount, or anything with its attributes (the stored rows)."""

    application_name: str
    state: str
    count: int


def compute_budget(settings: ServerSettings, counts: Iterable[tuple[CountLike, str | None]]) -> Budget:
    """Break the server's client connections down by service.

    `counts`: each count with the service it was attributed to when the snapshot
    was stored (None: nobody). Every count lands in exactly one slice (a service,
    poolboard's own sessions, or unattributed), so the slices add up to the total.
    Slices are ordered largest first, then by label.
    """

    by_label: dict[str, int] = {}
    by_state: dict[str, int] = {}
    total = 0
    for c, service in counts:
        total += c.count
        label = POOLBOARD if is_own(c.application_name) else service or UNATTRIBUTED
        by_label[label] = by_label.get(label, 0) + c.count
        state = c.state or "unknown"
        by_state[state] = by_state.get(state, 0) + c.count

    usable = settings.usable
    scale = max(usable, total, 1)
    slices = [
        Slice(label, n, 100.0 * n / scale)
        for label, n in sorted(by_label.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return Budget(
        max_connections=settings.max_connections,
        reserved=settings.reserved,
        usable=usable,
        warn_line=WARN_FRACTION * usable,
        total=total,
        slices=slices,
        by_state=dict(sorted(by_state.items(), key=lambda kv: (-kv[1], kv[0]))),
    )


@dataclass(frozen=True)
class StateBreakdown:
    total: int
    active: int
    idle: int
    idle_in_tx: int  # both "idle in transaction" states
    other: int  # fastpath, disabled, hidden ("")


def state_breakdown(by_state: Mapping[str, int]) -> StateBreakdown:
    """Group session counts by state into the columns people read; they add up to total."""
    total = sum(by_state.values())
    active = by_state.get("active", 0)
    idle = by_state.get("idle", 0)
    idle_in_tx = sum(n for state, n in by_state.items() if state in IDLE_IN_TX_STATES)
    return StateBreakdown(total, active, idle, idle_in_tx, total - active - idle - idle_in_tx)
