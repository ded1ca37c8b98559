"""A seeded discrete-event model of a service's connection pools, its PostgreSQL
sessions, Prometheus and the in-app agent, for the diagnosis scenario library.

Per instance: callers arrive (Poisson, rate varying with time), check a connection out
of a FIFO pool (open a new one below max, else wait with a timeout), hold it, return it.
Some checkouts leak (hoarded idle, or an abandoned transaction); some run long queries;
connections past their lifetime are closed on return (churn). Prometheus scrapes every
5 s; the collector reads the newest scrape at each jittered tick and turns counters into
increases over the rate window, as the presets' PromQL does; exporter dialects drop the
fields they do not have. The server is snapshotted (sessions by state, idle ages from
state_change, session ages from backend_start) and episodes are derived as
poolboard.lib.episodes tracks them (first/last snapshot over the threshold).
"""

from __future__ import annotations

import heapq
import random
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from poolboard.lib.diagnosis import (
    AgentHeld,
    DiagnosisInput,
    EpisodeView,
    PoolPoint,
    ServerPoint,
    Thresholds,
)

EPOCH = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
PROM_SCRAPE_S = 5.0
LEAK_S = 60.0  # the leak threshold the snapshots count idle ages against
LONG_QUERY_S = 30.0  # poolboard.lib.episodes.Thresholds.query_s
IDLE_IN_TX_S = 60.0  # poolboard.lib.episodes.Thresholds.idle_in_transaction_s
TIMEOUT_S = 30.0  # callers give up after this long waiting
EXPORTER_FIELDS = {
    # prometheus-client db_pool_* / HikariCP: everything.
    "full": {"max", "in_use", "idle", "pending", "timeouts", "acquire_s", "hold_s", "conns_opened", "conns_closed", "acquisitions"},
    # OpenTelemetry db.client.connection.*: no waiting gauge or timeouts in some versions.
    "otel": {"max", "in_use", "idle", "acquire_s", "hold_s", "conns_opened", "acquisitions"},
    # Go database/sql with SetMaxOpenConns: waits counted only when they end; no hold time, no checkouts.
    "go": {"max", "in_use", "idle", "conns_closed"},
    # asyncpg-style: sizes only.
    "sizes": {"max", "in_use", "idle"},
}


@dataclass
class Spec:
    name: str
    expected: frozenset[str]
    interval_s: float
    duration_s: float
    seed: int
    rate: Callable[[float], float]  # callers per second per instance at time t
    hold_s: float = 0.1  # mean normal hold
    max_size: int = 10
    min_size: int = 2
    max_waiting: int | None = None  # callers that can queue (threads, workers); None: 3 x max_size
    lifo: bool = False  # psycopg_pool / HikariCP hand out the most recently used connection
    autocommit: bool | None = None  # think time idle (autocommit) or idle in transaction; None: Go only
    think_share: float = 0.25  # share of a normal hold spent in the application, not in a query
    rate_window_s: float = 300.0
    snapshot_s: float | None = 15.0  # None: the database is not monitored
    exporter: str = "full"
    go_unlimited: bool = False  # Go max_open 0
    agent: bool = False
    agent_interval_s: float = 15.0
    slow_rate: Callable[[float], float] | None = None  # long queries per second
    slow_hold: tuple[float, float] = (35.0, 45.0)
    leak: str | None = None  # 'hoard' | 'transaction' | 'all' (every checkout from leak_start leaks)
    leak_start_s: float = 0.0
    leak_every_s: float = 600.0
    leak_max: int = 100
    abandon_after_s: float | None = None  # an abandoned transaction is returned after this
    lifetime_s: float | None = None  # connection max lifetime (churn)
    instances: tuple[tuple[str, float, float | None], ...] = (("app-1:8000", 0.0, None),)
    data_until_s: float | None = None  # the collector stops (stale data)
    allowed: frozenset[str] = frozenset()  # further kinds that may also show at the end
    leak_deadline: bool = False  # check the 2-interval deadline for the first leak
    checks: tuple[tuple[float, frozenset[str]], ...] = ()  # (time, kinds that must be found then)
    absent: tuple[tuple[float, frozenset[str]], ...] = ()  # (time, kinds that must not be found then)
    no_leak_ever: bool = False
    thresholds: Thresholds = field(default_factory=Thresholds)


@dataclass
class _Conn:
    id: int
    born: float
    state: str = "idle"
    state_change: float = 0.0
    query_start: float = 0.0
    out_at: float | None = None
    kind: str = ""
    closed: bool = False


@dataclass
class _Instance:
    name: str
    start: float
    stop: float | None
    conns: dict[int, _Conn] = field(default_factory=dict)
    idle: deque = field(default_factory=deque)
    waiters: deque = field(default_factory=deque)
    counters: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("acq", "wait_sum", "hold_sum", "hold_count", "timeouts", "opened", "closed"), 0.0))
    scrapes: list[tuple[float, dict, dict]] = field(default_factory=list)  # (t, gauges, counters)
    leaked: int = 0

    @property
    def open_count(self) -> int:
        return len(self.conns)


@dataclass
class Run:
    spec: Spec
    ticks: list[float]  # collection instants (seconds from EPOCH)
    points: dict[str, list[tuple[float, PoolPoint]]]
    server: list[tuple[float, ServerPoint]]
    phases: list[tuple[str, str, float, float | None]]  # (kind, fingerprint, start, end)
    snapshot_ts: list[float]
    agent: list[AgentHeld]
    leak_times: list[float]

    def input_at(self, now_s: float, history_s: float = 3600.0) -> DiagnosisInput:
        lo = now_s - history_s
        instances = {}
        by_tick: dict[float, list[PoolPoint]] = {}
        for name, pts in self.points.items():
            chosen = [p for t, p in pts if lo <= t <= now_s]
            if chosen:
                instances[name] = chosen
            for t, p in pts:
                if lo <= t <= now_s:
                    by_tick.setdefault(t, []).append(p)
        total = [_sum_points(by_tick[t]) for t in sorted(by_tick)]
        server = [p for t, p in self.server if lo <= t <= now_s]
        return DiagnosisInput(
            service=self.spec.name, now=at(now_s), interval_s=self.spec.interval_s, total=total, instances=instances,
            server=server, episodes=self.episodes_at(now_s, lo),
            agent=[a for a in self.agent if now_s - 300 <= (a.reported_at - EPOCH).total_seconds() <= now_s],
            thresholds=self.spec.thresholds, rate_window_s=self.spec.rate_window_s,
        )

    def episodes_at(self, now_s: float, lo: float) -> list[EpisodeView]:
        snaps = self.snapshot_ts[: bisect_right(self.snapshot_ts, now_s)]
        out = []
        for kind, fp, start, end in self.phases:
            thr = IDLE_IN_TX_S if kind == "idle_in_transaction" else LONG_QUERY_S
            i = bisect_right(snaps, start + thr - 1e-9)
            if i >= len(snaps):
                continue
            first = snaps[i]
            if end is not None and first > end:
                continue
            j = bisect_right(snaps, end if end is not None else now_s) - 1
            last = snaps[j]
            if last < lo:
                continue
            closed = end is not None and j + 1 < len(snaps)  # a later snapshot did not see it
            out.append(EpisodeView(kind, fp, at(first), at(last), last - start, not closed))
        return out


def at(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def _sum_points(points: list[PoolPoint]) -> PoolPoint:
    def add(name: str) -> float | None:
        vals = [getattr(p, name) for p in points if getattr(p, name) is not None]
        return sum(vals) if vals else None

    def mean(name: str) -> float | None:
        vals = [getattr(p, name) for p in points if getattr(p, name) is not None]
        return sum(vals) / len(vals) if vals else None

    return PoolPoint(
        ts=points[0].ts, max=add("max"), in_use=add("in_use"), idle=add("idle"), pending=add("pending"),
        timeouts=add("timeouts"), acquire_s=mean("acquire_s"), hold_s=mean("hold_s"),
        conns_opened=add("conns_opened"), conns_closed=add("conns_closed"), acquisitions=add("acquisitions"),
    )


def simulate(spec: Spec) -> Run:
    rng = random.Random(spec.seed)
    events: list = []
    seq = [0]

    def push(t: float, kind: str, *payload) -> None:
        seq[0] += 1
        heapq.heappush(events, (t, seq[0], kind, payload))

    insts = {name: _Instance(name, start, stop) for name, start, stop in spec.instances}
    ids = [0]
    phases: list[list] = []
    open_phase: dict[int, list] = {}
    server: list[tuple[float, ServerPoint]] = []
    snapshot_ts: list[float] = []
    agent: list[AgentHeld] = []
    leak_times: list[float] = []
    next_leak = [spec.leak_start_s]

    def new_conn(inst: _Instance, t: float) -> _Conn:
        ids[0] += 1
        c = _Conn(ids[0], t, state_change=t)
        inst.conns[c.id] = c
        inst.counters["opened"] += 1
        return c

    def set_state(c: _Conn, state: str, t: float, fp: str = "") -> None:
        ph = open_phase.pop(c.id, None)
        if ph is not None:
            ph[3] = t
        c.state, c.state_change = state, t
        if state == "active" and fp:
            c.query_start = t
            if c.kind == "slow":
                ph = ["long_query", fp, t, None]
                phases.append(ph)
                open_phase[c.id] = ph
        if state == "idle in transaction" and fp:
            ph = ["idle_in_transaction", fp, t, None]
            phases.append(ph)
            open_phase[c.id] = ph

    def close(inst: _Instance, c: _Conn, t: float) -> None:
        set_state(c, "gone", t)
        c.closed = True
        inst.conns.pop(c.id, None)
        inst.counters["closed"] += 1

    def checkout(inst: _Instance, c: _Conn, kind: str, t: float, wait: float) -> None:
        inst.counters["acq"] += 1
        inst.counters["wait_sum"] += wait
        c.out_at, c.kind = t, kind
        fp = {"slow": "SELECT * FROM report_rows(?)", "hoard": "SELECT id FROM invoices WHERE id = ?",
              "transaction": "UPDATE notifications SET sent = true WHERE id = ?"}.get(kind, "SELECT ?")
        set_state(c, "active", t, fp)
        if kind == "normal":
            hold = rng.lognormvariate(0, 0.5) * spec.hold_s * 0.88
            autocommit = spec.autocommit if spec.autocommit is not None else spec.exporter == "go"
            think = "idle" if autocommit else "idle in transaction"
            push(t + hold * (1 - spec.think_share), "state", inst.name, c.id, think, "")
            push(t + hold, "release", inst.name, c.id)
        elif kind == "slow":
            push(t + rng.uniform(*spec.slow_hold), "release", inst.name, c.id)
        elif kind == "hoard":
            push(t + 0.01, "state", inst.name, c.id, "idle", "")
        elif kind == "transaction":
            push(t + 0.01, "state", inst.name, c.id, "idle in transaction", fp)
            if spec.abandon_after_s:
                push(t + spec.abandon_after_s, "release", inst.name, c.id)

    def acquire(inst: _Instance, kind: str, t: float) -> None:
        while inst.idle:
            c = inst.conns.get(inst.idle.pop() if spec.lifo else inst.idle.popleft())
            if c is not None:
                checkout(inst, c, kind, t, 0.0)
                return
        if inst.open_count < spec.max_size or spec.go_unlimited:
            checkout(inst, new_conn(inst, t), kind, t, 0.004)
            return
        limit = spec.max_waiting if spec.max_waiting is not None else 3 * spec.max_size
        if sum(1 for w in inst.waiters if not w[2]) >= limit:
            inst.counters["timeouts"] += 1  # rejected at once: every worker is already waiting
            return
        w = [t, kind, False]
        inst.waiters.append(w)
        push(t + TIMEOUT_S, "timeout", inst.name, w)

    def release(inst: _Instance, cid: int, t: float) -> None:
        c = inst.conns.get(cid)
        if c is None or c.out_at is None:
            return
        inst.counters["hold_sum"] += t - c.out_at
        inst.counters["hold_count"] += 1
        c.out_at = None
        set_state(c, "idle", t)
        if spec.lifetime_s is not None and t - c.born > spec.lifetime_s:
            close(inst, c, t)
            c = None
        while inst.waiters:
            w = inst.waiters.popleft()
            if w[2]:
                continue
            w[2] = True
            if c is None:
                c = new_conn(inst, t)
            checkout(inst, c, w[1], t, t - w[0])
            return
        if c is not None:
            inst.idle.append(c.id)

    for inst in insts.values():
        push(inst.start, "boot", inst.name)
        if inst.stop is not None:
            push(inst.stop, "die", inst.name)
        push(inst.start + rng.expovariate(max(spec.rate(inst.start), 1e-3)), "arrive", inst.name)
        if spec.slow_rate is not None:
            push(inst.start + rng.expovariate(max(spec.slow_rate(inst.start), 1e-3)), "slow", inst.name)
        push(inst.start + rng.uniform(0, PROM_SCRAPE_S), "scrape", inst.name)
        if spec.agent:
            push(inst.start + rng.uniform(0, spec.agent_interval_s), "agent", inst.name)
    if spec.snapshot_s:
        push(rng.uniform(0, spec.snapshot_s), "snapshot")

    def alive(inst: _Instance, t: float) -> bool:
        return inst.start <= t and (inst.stop is None or t < inst.stop)

    while events:
        t, _, kind, payload = heapq.heappop(events)
        if t > spec.duration_s:
            break
        if kind == "snapshot":
            active = idle = iit = over = young = long_queries = 0
            longest = None
            for inst in insts.values():
                if not alive(inst, t):
                    continue
                for c in inst.conns.values():
                    if c.state == "active":
                        active += 1
                        age = t - c.query_start
                        longest = age if longest is None else max(longest, age)
                        long_queries += age >= LONG_QUERY_S
                    elif c.state == "idle":
                        idle += 1
                        over += t - c.state_change > LEAK_S
                    elif c.state == "idle in transaction":
                        iit += 1
                    young += t - c.born < 60
            server.append((t, ServerPoint(at(t), active, idle, iit, over, young, longest, long_queries)))
            snapshot_ts.append(t)
            push(t + spec.snapshot_s * rng.uniform(0.95, 1.05), "snapshot")
            continue
        inst = insts[payload[0]]
        if kind == "boot":
            for _ in range(spec.min_size):
                inst.idle.append(new_conn(inst, t).id)
        elif kind == "die":
            for c in list(inst.conns.values()):
                close(inst, c, t)
            inst.idle.clear()
            inst.waiters.clear()
        elif not alive(inst, t):
            continue
        elif kind == "arrive":
            leak_now = spec.leak is not None and t >= next_leak[0] and inst.leaked < spec.leak_max
            if spec.leak == "all" and t >= spec.leak_start_s:
                leak_now = True
            if leak_now:
                inst.leaked += 1
                next_leak[0] = t + spec.leak_every_s * rng.uniform(0.9, 1.1)
                leak_times.append(t)
                acquire(inst, "hoard" if spec.leak in ("hoard", "all") else "transaction", t)
            else:
                acquire(inst, "normal", t)
            push(t + rng.expovariate(max(spec.rate(t), 1e-3)), "arrive", inst.name)
        elif kind == "slow":
            acquire(inst, "slow", t)
            push(t + rng.expovariate(max(spec.slow_rate(t), 1e-3)), "slow", inst.name)
        elif kind == "release":
            release(inst, payload[1], t)
        elif kind == "state":
            c = inst.conns.get(payload[1])
            if c is not None and c.out_at is not None:
                set_state(c, payload[2], t, payload[3])
        elif kind == "timeout":
            w = payload[1]
            if not w[2]:
                w[2] = True
                inst.counters["timeouts"] += 1
                inst.waiters.remove(w)
        elif kind == "scrape":
            in_use = sum(1 for c in inst.conns.values() if c.out_at is not None)
            gauges = {"max": 0.0 if spec.go_unlimited else float(spec.max_size), "in_use": float(in_use),
                      "idle": float(len(inst.conns) - in_use), "pending": float(sum(1 for w in inst.waiters if not w[2]))}
            inst.scrapes.append((t, gauges, dict(inst.counters)))
            push(t + PROM_SCRAPE_S, "scrape", inst.name)
        elif kind == "agent":
            groups: dict[str, list[float]] = {}
            for c in inst.conns.values():
                if c.out_at is not None and t - c.out_at >= LEAK_S:
                    groups.setdefault(c.kind, []).append(t - c.out_at)
            for k, ages in groups.items():
                function = {"hoard": "billing.invoices.fetch_invoice", "transaction": "notify.send_batch",
                            "slow": "reports.build_report"}.get(k, "app.handle")
                stack = f'File "app/main.py", line 10, in handle\nFile "{function.replace(".", "/")}.py", line 42, in {function.rsplit(".", 1)[1]}'
                agent.append(AgentHeld(f"fp-{k}", stack, function, len(ages), max(ages), inst.name, at(t)))
            push(t + spec.agent_interval_s, "agent", inst.name)

    ticks, points = _collect(spec, insts, rng)
    return Run(spec, ticks, points, server, [tuple(p) for p in phases], snapshot_ts, agent, leak_times)


def _collect(spec: Spec, insts: dict[str, _Instance], rng: random.Random):
    """The collector's ticks: newest Prometheus scrape, counters as increases over the window."""
    fields = EXPORTER_FIELDS[spec.exporter]
    ticks: list[float] = []
    points: dict[str, list[tuple[float, PoolPoint]]] = {}
    k = 1
    until = spec.data_until_s if spec.data_until_s is not None else spec.duration_s
    while True:
        t = k * spec.interval_s + rng.uniform(-0.1, 0.1) * spec.interval_s
        k += 1
        if t > until:
            break
        ticks.append(t)
        for inst in insts.values():
            if not (inst.start <= t and (inst.stop is None or t < inst.stop)) or not inst.scrapes:
                continue
            times = [s[0] for s in inst.scrapes]  # small lists; clarity over speed
            i = bisect_right(times, t) - 1
            if i < 0 or inst.scrapes[i][0] < inst.start:
                continue
            st, gauges, cur = inst.scrapes[i]
            j = bisect_right(times, st - spec.rate_window_s) - 1
            before = inst.scrapes[j][2] if j >= 0 else dict.fromkeys(cur, 0.0)
            d = {key: cur[key] - before[key] for key in cur}
            values = {
                **gauges,
                "timeouts": d["timeouts"],
                "acquisitions": d["acq"],
                "conns_opened": d["opened"],
                "conns_closed": d["closed"],
                "hold_s": d["hold_sum"] / d["hold_count"] if d["hold_count"] else None,
                "acquire_s": d["wait_sum"] / d["acq"] if d["acq"] else None,
            }
            values = {key: (v if key in fields else None) for key, v in values.items()}
            points.setdefault(inst.name, []).append((t, PoolPoint(ts=at(t), **values)))
    return ticks, points
