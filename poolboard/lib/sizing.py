"""Pool sizing against a server's connection budget. Pure: no Django, no I/O.

Three things, each with its arithmetic kept as text a human can check:

- the **ledger** of one PostgreSQL server: what every pool on it could open if it filled
  (max + overflow, × worker processes × instances; a PgBouncer in front counts its own
  server-side pool instead), against what the server accepts (`usable`);
- a **recommendation** per (service, pool) from observed demand (p99 of in use + waiting,
  plus headroom), with the advice a human needs first (fix the leak, look at the slow
  queries, not enough data), all recommendations scaled down together when they would
  pass the 80 % line, and how many replicas still fit at the recommended size;
- a **what-if**: the same two with one pool's size or replica count changed.

`max_connections` is server-wide, so the budget is per server, shared by every database on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

T = TypeVar("T")

# Seed 001 sizes each worker's pool with 20 % headroom over what it needs.
HEADROOM = 0.20
# The warning line every tool uses for a connection budget (DESIGN.md §7: "database budget > 80 %").
WARN_FRACTION = 0.8
# Kept free for admin sessions and migrations (next-capabilities.md S1: 10 % of max_connections).
ADMIN_RESERVE_FRACTION = 0.10
# A rolling deploy starts new instances before stopping old ones: Kubernetes' default maxSurge
# is 25 % (rounded up, so at least one extra instance).
DEPLOY_SURGE = 0.25
# Less history than this and a p99 is the max of a handful of buckets.
MIN_HISTORY_S = 3600.0
# Shrink when p99 demand stays under half of max (next-capabilities.md S4) and nothing timed out.
SHRINK_BELOW = 0.5
# Slow queries "hold most of the connection-time": more than half of it.
SLOW_SHARE = 0.5
# PgBouncer's default default_pool_size.
PGBOUNCER_DEFAULT_POOL_SIZE = 20

GROW, SHRINK, KEEP, SET_LIMIT = "grow", "shrink", "keep", "set_limit"
FIX_LEAK, SLOW_QUERIES, NOT_ENOUGH_DATA, NO_LIMIT_KNOWN = "fix_leak", "slow_queries", "not_enough_data", "unknown_max"
# The page lists the pools that need something done first.
ACTION_ORDER = {FIX_LEAK: 0, SLOW_QUERIES: 1, SET_LIMIT: 2, GROW: 3, SHRINK: 5, NO_LIMIT_KNOWN: 6,
                NOT_ENOUGH_DATA: 7, KEEP: 8}
ACTION_LABELS = {
    GROW: "grow",
    SHRINK: "shrink",
    KEEP: "fine as is",
    SET_LIMIT: "set a limit",
    FIX_LEAK: "fix the leak first",
    SLOW_QUERIES: "look at the slow queries first",
    NOT_ENOUGH_DATA: "not enough data",
    NO_LIMIT_KNOWN: "max unknown",
}


@dataclass(frozen=True)
class Policy:
    headroom: float = HEADROOM
    warn_fraction: float = WARN_FRACTION
    admin_reserve_fraction: float = ADMIN_RESERVE_FRACTION
    monitor_cap: int = 3  # poolboard's own connections to the server (MAX_MONITOR_CONNECTIONS)
    deploy_surge: float = DEPLOY_SURGE
    min_history_s: float = MIN_HISTORY_S
    shrink_below: float = SHRINK_BELOW
    slow_share: float = SLOW_SHARE


@dataclass(frozen=True)
class Server:
    """What a server accepts. `max_connections` None: no snapshot of it yet (budget unknown)."""

    name: str
    max_connections: int | None = None
    superuser_reserved_connections: int = 3
    reserved_connections: int = 0  # PostgreSQL 16+; 0 before
    open_now: int | None = None  # client connections in the newest snapshot


@dataclass(frozen=True)
class Pooler:
    """A PgBouncer between the services and the server (one user/database pair per pooler)."""

    name: str
    pool_size: int = PGBOUNCER_DEFAULT_POOL_SIZE  # default_pool_size (+ reserve_pool_size)
    max_db_connections: int = 0  # 0: unlimited (PgBouncer's default)
    instances: int = 1

    @property
    def server_connections(self) -> int:
        """What PostgreSQL sees: pool size × PgBouncer instances, capped by max_db_connections."""
        n = self.pool_size * self.instances
        return min(n, self.max_db_connections) if self.max_db_connections > 0 else n


@dataclass(frozen=True)
class Demand:
    """Observed demand of one pool of one instance over the window (from rollups).

    p95 / p99 / peak are of in use + waiting: a full pool's in use stops at max, its
    waiters say by how much more it was asked. `little` is Little's law (acquisitions
    per second × mean hold time) where the exporter gives both.
    """

    window_s: float
    history_s: float  # how much of the window has data
    p95: float | None = None
    p99: float | None = None
    peak: float | None = None
    little: float | None = None
    rate_per_s: float | None = None
    hold_s: float | None = None
    waited: bool = False  # callers waited at some point
    # False: the exporter gives no waiting count (SQLAlchemy, asyncpg), so `waited` False
    # means "cannot be told", not "nobody waited".
    waiting_known: bool = True
    timeouts: float = 0.0
    saturated_s: float = 0.0


@dataclass(frozen=True)
class PoolInput:
    """One (service, pool), per instance, with what decides its share of the server."""

    service: str
    pool: str = ""
    max: float | None = None  # per instance, as exported: None unknown, 0 unlimited (Go)
    min: float | None = None
    overflow: int = 0  # configured connections above max (SQLAlchemy max_overflow) the exporter leaves out
    instances_seen: int = 0  # most instances at once in the last 24 h
    replicas: int | None = None  # configured replica count
    replicas_max: int | None = None  # autoscaler maximum
    workers: int = 1  # processes per instance, each with its own pool
    pooler: Pooler | None = None
    demand: Demand | None = None
    leak: bool = False  # an open leak finding
    slow_share: float | None = None  # share of connection-time held by slow queries (open finding)

    @property
    def label(self) -> str:
        return f"{self.service} / {self.pool}" if self.pool else self.service

    @property
    def unlimited(self) -> bool:
        return self.max is not None and self.max <= 0

    @property
    def per_process(self) -> int | None:
        """Connections one process's pool may open (max + overflow); None unknown or unlimited."""
        if self.max is None or self.max <= 0:
            return None
        return math.ceil(self.max) + self.overflow

    def instances(self) -> tuple[int, str]:
        """Instances the budget must allow for, and why: the autoscaler's max, else the
        configured count, else the most seen at once (scale-out is when budgets break)."""
        if self.replicas_max:
            return self.replicas_max, "autoscaler max"
        if self.replicas is not None:  # 0 is a count (scaled to zero), not "unset"
            return self.replicas, "configured"
        return self.instances_seen, "seen in 24 h"

    @property
    def processes(self) -> int:
        return self.instances()[0] * max(self.workers, 1)

    @property
    def could_open(self) -> int | None:
        """Connections all its processes could open together; None unknown or unlimited."""
        return None if self.per_process is None else self.per_process * self.processes


@dataclass(frozen=True)
class Line:
    """One slice of the ledger: a service's pool, a pooler, or the deploy surge."""

    label: str
    connections: int | None  # None: unknowable (unlimited or unknown max)
    formula: str
    kind: str = "pool"  # pool | pooler | surge
    via: str = ""  # the pooler a pool goes through (its own line then counts 0 on the server)
    pct: float = 0.0  # of the bar's scale, for widths


@dataclass
class Ledger:
    server: Server
    usable: int | None
    admin_reserve: int
    monitor_cap: int
    warn_line: float | None
    lines: list[Line] = field(default_factory=list)
    unlimited: list[str] = field(default_factory=list)  # pools with max 0
    unknown: list[str] = field(default_factory=list)  # pools whose max no exporter gives
    surge: int = 0
    surge_label: str = ""

    def bar_lines(self, most: int = 15) -> list[Line]:
        """The bar's slices: the `most` largest lines, the rest as one, so the bar stays readable."""
        counted = [li for li in self.lines if li.connections]
        if len(counted) <= most:
            return counted
        ranked = sorted(counted, key=lambda li: (li.kind == "surge", -(li.connections or 0), li.label))
        kept, rest = ranked[:most - 1], ranked[most - 1:]
        n = sum(li.connections or 0 for li in rest)
        return [*kept, Line(f"{len(rest)} other pools", n, "the smaller lines together", kind="others",
                            pct=sum(li.pct for li in rest))]

    @property
    def committed(self) -> int:
        """What the pools with a known limit could open, the deploy surge included."""
        return sum(line.connections or 0 for line in self.lines)

    @property
    def knowable(self) -> bool:
        return not self.unlimited and not self.unknown

    @property
    def overcommitted(self) -> bool:
        return self.usable is not None and self.committed > self.usable

    @property
    def over_warn(self) -> bool:
        return self.warn_line is not None and self.committed > self.warn_line

    @property
    def scale(self) -> int:
        return max(self.usable or 0, self.committed, self.server.open_now or 0, 1)

    @property
    def warn_pct(self) -> float | None:
        return None if self.warn_line is None else 100.0 * self.warn_line / self.scale

    @property
    def usable_pct(self) -> float | None:
        return None if self.usable is None else 100.0 * self.usable / self.scale

    @property
    def open_pct(self) -> float | None:
        return None if self.server.open_now is None else 100.0 * self.server.open_now / self.scale

    def usable_formula(self) -> str:
        s = self.server
        if s.max_connections is None:
            return f"no snapshot of {s.name} yet: max_connections unknown"
        parts = [f"{s.max_connections} max_connections", f"{s.superuser_reserved_connections} superuser_reserved_connections"]
        if s.reserved_connections:
            parts.append(f"{s.reserved_connections} reserved_connections")
        parts += [f"{self.monitor_cap} for poolboard's monitor", f"{self.admin_reserve} kept for admin/migrations"]
        raw = (s.max_connections - s.superuser_reserved_connections - s.reserved_connections - self.monitor_cap
               - self.admin_reserve)
        if raw < 0:  # usable is clamped at 0: show the real subtraction, not a wrong "= 0"
            return f"usable = {' − '.join(parts)} = −{-raw}: nothing is left for the pools, 0 usable"
        return f"usable = {' − '.join(parts)} = {self.usable}"

    def verdict(self) -> str:
        """The ledger in one plain sentence."""
        s = self.server
        if s.max_connections is None:
            return (f"No snapshot of {s.name} yet, so its max_connections is unknown: the pools below could open "
                    f"{self.committed} connections, but whether the server accepts them cannot be told.")
        if self.unlimited:
            names = ", ".join(self.unlimited)
            return (f"The budget is unknowable: {names} ha{'s' if len(self.unlimited) == 1 else 've'} no pool limit "
                    "(max 0 means unlimited in Go's database/sql), so the fleet could ask for any number of "
                    f"connections. The pools with a limit could open {self.committed} of {self.usable} usable; "
                    "set SetMaxOpenConns to make the budget add up.")
        unknown = (f" ({', '.join(self.unknown)}: no exporter gives their max, not counted)" if self.unknown else "")
        if self.overcommitted:
            return (f"Overcommitted: if every pool filled, {self.committed} connections would be asked of a server "
                    f"that accepts {self.usable}{unknown}.")
        if self.over_warn:
            return (f"Above the 80 % line: if every pool filled, {self.committed} of {self.usable} usable connections "
                    f"would be taken{unknown}.")
        return f"Within budget: if every pool filled, {self.committed} of {self.usable} usable connections{unknown}."


def usable_connections(server: Server, policy: Policy = Policy()) -> tuple[int | None, int]:
    """(usable, admin reserve): max_connections minus every slot client pools cannot have."""
    if server.max_connections is None:
        return None, 0
    reserve = math.ceil(policy.admin_reserve_fraction * server.max_connections)
    usable = (server.max_connections - server.superuser_reserved_connections - server.reserved_connections
              - policy.monitor_cap - reserve)
    return max(usable, 0), reserve


def _direct_line(p: PoolInput) -> Line:
    n, why = p.instances()
    workers = max(p.workers, 1)
    if p.unlimited:
        return Line(p.label, None, "max 0 = unlimited: unknowable")
    if p.per_process is None:
        return Line(p.label, None, "max unknown (the exporter does not give it)")
    over = f" + {p.overflow} overflow" if p.overflow else ""
    per = f"{math.ceil(p.max)}{over}" if p.overflow else f"{p.per_process}"
    wk = f" × {workers} workers" if workers > 1 else ""
    return Line(p.label, p.per_process * workers * n, f"({per}){wk} × {n} instance{'s' if n != 1 else ''} ({why})")


def build_ledger(server: Server, pools: Sequence[PoolInput], policy: Policy = Policy(),
                 per_process: dict[str, int] | None = None) -> Ledger:
    """The server's ledger. `per_process` replaces some pools' size (by label): the recommendation's ledger."""
    usable, reserve = usable_connections(server, policy)
    warn = None if usable is None else policy.warn_fraction * usable
    ledger = Ledger(server, usable, reserve, policy.monitor_cap, warn)
    lines: list[Line] = []
    poolers: dict[str, tuple[Pooler, list[PoolInput]]] = {}
    surge_best = (0, "")
    for p in pools:
        if per_process and p.label in per_process:
            p = replace(p, max=float(per_process[p.label]), overflow=0)
        if p.pooler is not None:
            poolers.setdefault(p.pooler.name, (p.pooler, []))[1].append(p)
            line = _direct_line(p)
            lines.append(replace(line, connections=0, via=p.pooler.name,
                                 formula=f"through {p.pooler.name}: counted on the pooler's line ({line.formula} client-side)"))
            continue
        line = _direct_line(p)
        if p.unlimited:
            ledger.unlimited.append(p.label)
        elif line.connections is None:
            ledger.unknown.append(p.label)
        else:
            n = p.instances()[0]
            extra = math.ceil(n * policy.deploy_surge) if n else 0
            surge = extra * p.per_process * max(p.workers, 1)
            if surge > surge_best[0]:
                surge_best = (surge, f"{p.label}: {extra} extra instance{'s' if extra != 1 else ''} × "
                                     f"{p.per_process * max(p.workers, 1)} while a rolling deploy runs old and new side by side")
        lines.append(line)
    for name, (pooler, clients) in sorted(poolers.items()):
        cap = pooler.server_connections
        client_side = [_direct_line(c).connections for c in clients]
        formula = f"default_pool_size {pooler.pool_size} × {pooler.instances} PgBouncer"
        if pooler.max_db_connections > 0:
            formula += f", capped by max_db_connections {pooler.max_db_connections}"
        if all(n is not None for n in client_side) and sum(client_side) < cap:
            cap = sum(client_side)
            formula += f", but its clients' pools can only ask for {cap}"
        lines.append(Line(f"{name} (PgBouncer)", cap, f"{formula} = {cap} server connections, whatever the pools behind it",
                          kind="pooler"))
    if surge_best[0] and policy.deploy_surge > 0:
        ledger.surge, ledger.surge_label = surge_best
        lines.append(Line("deploy surge", surge_best[0], f"one service deploying at a time: {surge_best[1]}", kind="surge"))
    scale = max(usable or 0, sum(li.connections or 0 for li in lines), server.open_now or 0, 1)
    ledger.lines = [replace(li, pct=100.0 * (li.connections or 0) / scale) for li in lines]
    return ledger


@dataclass
class Recommendation:
    pool: PoolInput
    action: str
    current: int | None  # per process (max + overflow)
    wanted: int | None  # per process, before the fit
    recommended: int | None  # per process, after the fit
    reason: str
    arithmetic: list[str] = field(default_factory=list)
    max_safe_replicas: int | None = None
    cut: int = 0  # per process, lost to the fit

    @property
    def label(self) -> str:
        return ACTION_LABELS[self.action]

    @property
    def change(self) -> int | None:
        if self.recommended is None or self.current is None:
            return None
        return self.recommended - self.current

    @property
    def instances(self) -> int:
        return self.pool.instances()[0]

    def rank(self) -> tuple:
        """Most actionable first: the advice that comes before any size, then cuts by the fit."""
        return (ACTION_ORDER[self.action] if not self.cut else min(ACTION_ORDER[self.action], 4), self.pool.label)


def _fmt(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


def _dur(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds / 86400:.0f} days" if seconds != 86400 else "1 day"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h".replace(".0 h", " h")
    return f"{seconds / 60:.0f} min"


def wanted_size(p: PoolInput, policy: Policy = Policy()) -> Recommendation:
    """The recommendation for one pool before the budget: what demand asks, and the advice first."""
    current = p.per_process
    d = p.demand
    math_lines: list[str] = []
    if d is not None:
        math_lines.append(f"demand over {_dur(d.window_s)} (in use + waiting, per instance): p95 {_fmt(d.p95)}, "
                          f"p99 {_fmt(d.p99)}, peak {_fmt(d.peak)}")
        if d.little is not None:
            math_lines.append(f"Little's law: {d.rate_per_s:.2f} acquisitions/s × {d.hold_s * 1000:.0f} ms held = {d.little:.1f}")
    keep = current
    if p.leak:
        return Recommendation(p, FIX_LEAK, current, keep, keep,
                              "A leak is suspected: connections are held and not returned. A bigger pool would only "
                              "leak longer before it empties; fix the code that keeps them, then size from fresh data.",
                              math_lines)
    if p.slow_share is not None and p.slow_share >= policy.slow_share:
        return Recommendation(p, SLOW_QUERIES, current, keep, keep,
                              f"Slow queries held {p.slow_share:.0%} of this pool's connection-time: a bigger pool "
                              "would fill with them too. Speed them up or move them off the request path first.",
                              math_lines)
    if d is None or d.history_s < policy.min_history_s or d.p99 is None:
        have = 0 if d is None else d.history_s
        return Recommendation(p, NOT_ENOUGH_DATA, current, keep, keep,
                              f"Not enough data: {_dur(have)} of pool history, at least {_dur(policy.min_history_s)} "
                              f"needed ({_dur(max(policy.min_history_s - have, 0))} more) before p99 means anything.",
                              math_lines)
    base = d.p99
    size = max(math.ceil(base * (1 + policy.headroom) - 1e-9), 1)
    floor_note = ""
    if p.min is not None and p.min > size:
        size = math.ceil(p.min)
        floor_note = f", raised to the pool's minimum {size}"
    math_lines.append(f"wanted = ceil(p99 {_fmt(base)} × {1 + policy.headroom:g} headroom) = "
                      f"{max(math.ceil(base * (1 + policy.headroom) - 1e-9), 1)}{floor_note}")
    if current is None:
        if p.unlimited:
            return Recommendation(p, SET_LIMIT, None, size, size,
                                  f"max 0 is unlimited: set it to {size} per process so the budget can be added up.",
                                  math_lines)
        # The pool has a limit (asyncpg's, say); only its exporter does not say it: setting it in
        # the code would change nothing here.
        return Recommendation(p, NO_LIMIT_KNOWN, None, size, size,
                              f"No exporter gives this pool's max, so the ledger cannot count it: demand asks for "
                              f"{size} per process (p99 {_fmt(base)} + {policy.headroom * 100:g} % headroom{floor_note}); export "
                              "the pool's max to have it counted.", math_lines)
    pressure = d.waited or d.timeouts > 0
    if size > current:
        # The comparison made is p99 plus headroom against max: say that one, not "p99 above max".
        asked = f"p99 demand {_fmt(base)} + {policy.headroom * 100:g} % headroom = {size} is above its {current}"
        if pressure:
            return Recommendation(p, GROW, current, size, size,
                                  f"Callers waited{' and ' + _fmt(d.timeouts) + ' timed out' if d.timeouts else ''}: "
                                  f"{asked}.", math_lines)
        if not d.waiting_known:
            full = f" In use was at its max for {_dur(d.saturated_s)} of the window." if d.saturated_s else ""
            return Recommendation(p, KEEP, current, current, current,
                                  f"{asked}, but its exporter gives no count of waiting callers, so whether any "
                                  f"waited cannot be told.{full} If callers time out acquiring a connection, grow it "
                                  f"to {size}.", math_lines)
        return Recommendation(p, KEEP, current, current, current,
                              f"{asked}, but nobody waited: fine as is.", math_lines)
    if base < policy.shrink_below * current and d.timeouts == 0:
        return Recommendation(p, SHRINK, current, size, size,
                              f"p99 demand {_fmt(base)} stays under half of its {current} and nothing timed out: "
                              f"{current - size} per process can go back to the budget.", math_lines)
    return Recommendation(p, KEEP, current, current, current,
                          f"p99 demand {_fmt(base)} fits its {current} with room to spare.", math_lines)


@dataclass
class Fit:
    target: int | None  # the 80 % line in connections (after the poolers' share)
    asked: int  # Σ wanted connections before the fit
    scale: float | None = None  # factor applied (None: nothing scaled)
    fits: bool = True  # False: not even 1 connection per process fits
    note: str = ""


@dataclass
class Sizing:
    """The ledger of one server, its pools' recommendations, fitted together."""

    ledger: Ledger
    recommended_ledger: Ledger
    recommendations: list[Recommendation]
    fit: Fit


def _fit(recs: list[Recommendation], target: int) -> Fit:
    """Scale every pool's wanted size down by one factor until Σ fits `target`.

    Floors first (so the sum never passes), at least 1 per process; then the connections
    the floors left over go back one by one to the pools that lost most.
    """
    sized = [r for r in recs if r.wanted is not None and r.pool.pooler is None]
    asked = sum(r.wanted * r.pool.processes for r in sized)
    fit = Fit(target, asked)
    if asked <= target:
        return fit
    factor = target / asked if asked else 1.0
    fit.scale = factor
    for r in sized:
        r.recommended = max(1, math.floor(r.wanted * factor))
    used = sum(r.recommended * r.pool.processes for r in sized)
    if used > target:
        fit.fits = False
        fit.note = (f"Even 1 connection per process asks {used} of the {target} under the 80 % line: put PgBouncer "
                    "(transaction mode) in front or lower the replica counts.")
    else:
        # Hand the floors' leftovers back one connection per process at a time, largest relative
        # loss first, while they fit (the floors lost less than one per pool, so one round or two).
        room = target - used
        while True:
            given = False
            for r in sorted((r for r in sized if r.recommended < r.wanted), key=lambda r: (r.recommended / r.wanted, r.pool.label)):
                if r.pool.processes <= room:
                    r.recommended += 1
                    room -= r.pool.processes
                    given = True
            if not given:
                break
    for r in sized:
        r.cut = r.wanted - r.recommended
        if r.cut > 0:
            r.arithmetic.append(f"fitted: {r.wanted} × {factor:.2f} (the 80 % line ÷ Σ wanted = {target} ÷ {asked}) "
                                f"→ {r.recommended} per process, {r.cut} less than wanted")
    fit.note = fit.note or (f"Together the recommendations asked {asked} connections, more than the {target} under the "
                            f"80 % line: each was scaled by {factor:.2f}.")
    return fit


def _max_safe_replicas(recs: list[Recommendation], target: int | None) -> None:
    """Per pool: instances at its recommended size that fit under the 80 % line, others as recommended."""
    if target is None:
        return
    direct = [r for r in recs if r.recommended is not None and r.pool.pooler is None]
    total = sum(r.recommended * r.pool.processes for r in direct)
    for r in direct:
        per_instance = r.recommended * max(r.pool.workers, 1)
        room = target - (total - r.recommended * r.pool.processes)
        r.max_safe_replicas = max(room // per_instance, 0) if per_instance else None


def size_server(server: Server, pools: Sequence[PoolInput], policy: Policy = Policy()) -> Sizing:
    """The ledger, each pool's recommendation, fitted to the server's 80 % line."""
    ledger = build_ledger(server, pools, policy)
    recs = [wanted_size(p, policy) for p in pools]
    if ledger.warn_line is None:
        fit = Fit(None, sum((r.wanted or 0) * r.pool.processes for r in recs if r.pool.pooler is None),
                  note=f"No snapshot of {server.name} yet: the recommendations are not fitted to its budget.")
    else:
        poolers = sum(li.connections or 0 for li in ledger.lines if li.kind == "pooler")
        target = max(math.floor(ledger.warn_line) - poolers, 0)
        fit = _fit(recs, target)
        if poolers:
            fit.note = (f"{fit.note} " if fit.scale else "") + (
                f"PgBouncer in front: {poolers} server connections go to the pooler whatever the pools behind it ask, "
                f"so the direct pools share {target}; the pools behind it are sized against the pooler, not the server.")
        _max_safe_replicas(recs, target)
    for r in recs:
        if not r.cut or r.current is None or r.recommended is None or r.action not in (GROW, KEEP):
            continue
        # The fit decides the size, so the label must agree with it: a pool cut below today's
        # size is a shrink (the server cannot hold every pool at its size), never "fine as is".
        if r.action == GROW and r.recommended <= r.current:
            r.reason += (f" The budget has no room to grow it (wanted {r.wanted}, fits {r.recommended}): "
                         "put PgBouncer in front or shrink others first.")
            r.action = KEEP
        if r.recommended < r.current:
            r.action = SHRINK
            r.reason += (f" The server's budget cannot hold every pool at its size: fitted to the 80 % line it gets "
                         f"{r.recommended} per process, {r.current - r.recommended} below today's {r.current}.")
    recommended_sizes = {r.pool.label: r.recommended for r in recs if r.recommended is not None}
    return Sizing(ledger, build_ledger(server, pools, policy, recommended_sizes), recs, fit)


def what_if(server: Server, pools: Sequence[PoolInput], label: str, *, max_size: int | None = None,
            replicas: int | None = None, policy: Policy = Policy()) -> Sizing:
    """The sizing with one pool's max per process and/or replica count changed (None: unchanged)."""
    changed = []
    for p in pools:
        if p.label == label:
            if max_size is not None:
                p = replace(p, max=float(max_size), overflow=0)
            if replicas is not None:
                p = replace(p, replicas=replicas, replicas_max=None)
        changed.append(p)
    return size_server(server, changed, policy)


def standby_error(primary_max: int, standby_max: int, standby: str = "the standby",
                  primary: str = "its primary") -> str | None:
    """A hot standby needs max_connections ≥ its primary's, or recovery stops.

    PostgreSQL checks this when a standby starts and whenever the primary's value reaches it
    through the WAL: recovery pauses, then the standby shuts down with "recovery aborted because
    of insufficient parameter settings".
    """
    if standby_max < primary_max:
        return (f"max_connections on replica {standby} is {standby_max}, below its primary {primary}'s "
                f"{primary_max}: raise max_connections on replica {standby} to at least {primary_max} "
                f"(its primary {primary} has {primary_max}), or recovery on {standby} stops with "
                "'insufficient parameter settings'.")
    return None


def littles_law(rate_per_s: float | None, hold_s: float | None) -> float | None:
    """L = λ·W: connections busy on average for `rate_per_s` acquisitions held `hold_s` each."""
    if rate_per_s is None or hold_s is None:
        return None
    return rate_per_s * hold_s


def most_at_once(spans: Iterable[tuple[T, T]]) -> int:
    """The most (start, end) spans that overlap at one instant (ends inclusive)."""
    edges = sorted([(start, 0) for start, _ in spans] + [(end, 1) for _, end in spans])
    running = best = 0
    for _, is_end in edges:
        running += -1 if is_end else 1
        best = max(best, running)
    return best
