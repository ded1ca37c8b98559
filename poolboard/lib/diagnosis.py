"""Diagnosis: why a service's pool is starving (DESIGN.md §6, issue 8).

Pure: no Django, no I/O, no clock reads (`now` is passed in). One call looks at one
service's recent history and says what is wrong, with the numbers:

- leak: connections held but not working. Five signals, each enough alone:
  1. the server: more of the service's sessions idle past the leak threshold than its
     pools count idle (the surplus is checked out and hoarded);
  2. idle-in-transaction episodes past the threshold (abandoned transactions);
  3. the in-app agent: connections held past the threshold, with their stacks;
  4. Little's law: mean in use minus (acquisitions/s × mean hold). Hold time is
     recorded when a connection comes back, so one that never does is in the gauge
     but never in the sum (research/next-capabilities.md §1.3);
  5. the floor of in use (its minimum per window) rising while throughput and demand
     stay flat.
- stuck: every connection in use and no progress (no checkout, no active session).
- saturation: every connection in use with callers waiting, while work gets done.
- slow_queries: long-query episodes holding a large share of the pool's time.
- churn: connections opened and closed so fast that they live under a minute.
- healthy / not_enough_data.

Per-interval fields (timeouts, conns_opened, conns_closed, acquisitions) are counts
over the source's rate window, and acquire_s / hold_s averages over it: `rate_window_s`
says how long that is (the collection interval when the counts are per interval).

What the caller passes (one DiagnosisInput per service):
- history: the last max(30 min, 6 × rate window) of raw samples; the pool-only leak
  signals need three windows of max(2 × leak_s, rate window) and the residual one
  rate window plus `pool_signal_sustain_s`;
- server: the snapshots over the same span, counted over the service's sessions only;
- episodes: the service's open episodes and those closed within the history;
- agent: the newest report per (instance, stack) from the last `agent_stale_s`.
A finding's `since` comes from the data and stays put from tick to tick while its start
is inside the history; once the start scrolls out of the history it becomes the oldest
point, so store `since` when a finding opens and keep it while it stays open.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone

LEAK = "leak"
STUCK = "stuck"
SATURATION = "saturation"
SLOW_QUERIES = "slow_queries"
CHURN = "churn"
HEALTHY = "healthy"
NOT_ENOUGH_DATA = "not_enough_data"
KINDS = (LEAK, STUCK, SATURATION, SLOW_QUERIES, CHURN, HEALTHY, NOT_ENOUGH_DATA)
SEVERITIES = ("crit", "warn", "info", "ok")
# Within one severity the most actionable first: a leak inside a saturated pool leads
# with the leak (growing the pool only delays the outage).
KIND_PRIORITY = (LEAK, STUCK, SLOW_QUERIES, CHURN, SATURATION, NOT_ENOUGH_DATA, HEALTHY)

IDLE_IN_TRANSACTION = "idle_in_transaction"
LONG_QUERY = "long_query"
LONG_TRANSACTION = "long_transaction"


@dataclass(frozen=True)
class PoolPoint:
    """One collection instant; a value is None when the exporter lacks the field."""

    ts: datetime
    max: float | None = None
    in_use: float | None = None
    idle: float | None = None
    pending: float | None = None
    timeouts: float | None = None
    acquire_s: float | None = None
    hold_s: float | None = None
    conns_opened: float | None = None
    conns_closed: float | None = None
    acquisitions: float | None = None


@dataclass(frozen=True)
class ServerPoint:
    """One pg_stat_activity snapshot, restricted to this service's sessions."""

    ts: datetime
    active: int
    idle: int
    idle_in_transaction: int
    idle_over_threshold: int  # state idle for longer than the leak threshold (from state_change)
    young_sessions: int  # backend_start less than churn_lifetime_s ago (a minute by default)
    longest_active_query_s: float | None = None
    # Sessions active for longer than the long-query episode threshold (30 s by default).
    # Optional: episodes alone miss a query no snapshot saw past the threshold.
    long_queries: int = 0

    @property
    def total(self) -> int:
        return self.active + self.idle + self.idle_in_transaction


@dataclass(frozen=True)
class EpisodeView:
    kind: str  # 'idle_in_transaction' | 'long_query' | 'long_transaction'
    fingerprint: str
    first_seen: datetime
    last_seen: datetime
    peak_age_s: float  # age at last_seen
    open: bool


@dataclass(frozen=True)
class AgentHeld:
    """One agent report group: connections checked out at the same stack."""

    fingerprint: str
    stack: str  # formatted, innermost last
    function: str
    count: int
    oldest_hold_s: float  # as of reported_at
    instance: str
    reported_at: datetime


@dataclass(frozen=True)
class Thresholds:
    # Held this long without working = leaked. HikariCP's maintainer advises 1-2 min for
    # leakDetectionThreshold (#738); the agent and the episode tracker default to 60 s too.
    leak_s: float = 60.0
    # Little's-law residual that counts as leaked: one connection, or 5 % of a big pool
    # (research/next-capabilities.md L2), above the sampling noise of the mean.
    residual_min: float = 1.0
    residual_min_fraction: float = 0.05
    # Pool-only leak signals (residual, floor) must persist this long: a long but finite
    # hold makes a transient residual until it returns (§1.3 caveat).
    pool_signal_sustain_s: float = 300.0
    # Throughput is "flat" when it moved less than this fraction.
    throughput_flat: float = 0.25
    # A leak finding stays open this long after its last signal (recurring abandoned
    # transactions are one problem, not one per transaction).
    leak_clear_s: float = 300.0
    # Mean wait for a connection that means callers queue, for exporters without a
    # waiting gauge (a pool that has a free connection hands it over in well under 10 ms;
    # opening a new one takes tens of ms).
    saturation_acquire_s: float = 0.1
    # A saturation finding stays open through quiet gaps shorter than this: bursty load
    # that exhausts the pool every few minutes is one problem.
    saturation_clear_s: float = 300.0
    # Saturation means legitimately busy: while the server sees the service's sessions, fewer
    # than this share of them active over the episode means the full pool is held, not
    # working (a leak or stuck callers), so it is not called saturation. A pool that is
    # honestly busy keeps most of its connections running queries.
    saturation_active_share: float = 0.5
    # Full with no progress for this long is stuck (a caller with a 30 s timeout has
    # given up twice by then).
    stuck_s: float = 60.0
    # Long queries matter when they hold this share of the pool's connection-time (as
    # episodes see it: a lower bound, since a query seen by no snapshot past the episode
    # threshold is not an episode)...
    slow_share: float = 0.15
    # ... and at their peak this share of the pool (or 2 connections when max is unknown):
    # of its max, or of the most it had in use over the window with at least 2 at once (a
    # pool of 40 that never uses more than 8 is held by 4 long queries all the same).
    slow_pool_share: float = 0.25
    # Look-back for slow queries' share of held connection-time.
    slow_window_s: float = 600.0
    # Connections living less than this on average are churning: pre-ping failures,
    # pool_recycle / maxLifetime in seconds instead of minutes (seeds 000 and 002).
    churn_lifetime_s: float = 60.0
    # ... or at least this share of the service's server sessions younger than a minute,
    churn_young_share: float = 0.5
    # ... for at least this long (a restart makes every session young for one minute).
    churn_sustain_s: float = 120.0
    # No pool point for this many collection intervals: the data is stale.
    stale_intervals: float = 3.0
    # Fewer points than this, or a shorter span, is too little to judge.
    min_points: int = 3
    min_span_s: float = 60.0
    # Agent reports older than this no longer describe the present.
    agent_stale_s: float = 180.0
    # Idle in transaction this long is critical (AWS DevOps Guru's insight threshold).
    crit_idle_in_transaction_s: float = 1800.0

    def with_overrides(self, overrides: Mapping[str, object] | None) -> Thresholds:
        """Per-service overrides ({"leak_s": 120}); unknown names raise ValueError."""
        if not overrides:
            return self
        known = {f.name: f.type for f in fields(self)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ValueError(f"unknown diagnosis thresholds {unknown}")
        cast = {name: (int(v) if name == "min_points" else float(v)) for name, v in overrides.items()}  # type: ignore[arg-type]
        return replace(self, **cast)


@dataclass(frozen=True)
class DiagnosisInput:
    service: str
    now: datetime
    interval_s: float  # collection interval
    total: list[PoolPoint] | PoolColumns  # summed over instances and pools, oldest first
    instances: dict[str, list[PoolPoint] | PoolColumns] = field(default_factory=dict)
    server: list[ServerPoint] = field(default_factory=list)  # empty when the database is not monitored
    episodes: list[EpisodeView] = field(default_factory=list)
    agent: list[AgentHeld] = field(default_factory=list)
    thresholds: Thresholds = field(default_factory=Thresholds)
    # Window of the per-interval counts and of acquire_s / hold_s (the source's rate
    # window); None: the counts are per collection interval.
    rate_window_s: float | None = None


@dataclass(frozen=True)
class Evidence:
    text: str  # a human sentence with the numbers
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Finding:
    kind: str
    severity: str  # crit | warn | info | ok
    confidence: float  # 0..1
    since: datetime
    evidence: tuple[Evidence, ...]
    fix: str
    suspected_leaked: float = 0.0  # connections; 0 for non-leaks
    detail: dict = field(default_factory=dict)  # JSON-able extras


# ---------------------------------------------------------------- series helpers

_POOL_FIELDS = (
    "max", "in_use", "idle", "pending", "timeouts", "acquire_s", "hold_s", "conns_opened", "conns_closed", "acquisitions",
)


@dataclass(frozen=True)
class PoolColumns:
    """The same history as a list of PoolPoint, as columns: `ts` in epoch seconds (oldest
    first) and one list per field of _POOL_FIELDS. What a caller reading thousands of series
    at once passes, to skip building one object per point."""

    ts: list[float]
    cols: dict[str, list[float | None]]

    def __len__(self) -> int:
        return len(self.ts)


class _Series:
    """One pool series as columns of epoch seconds and values (one pass, then cheap)."""

    __slots__ = ("name", "ts", "cols", "n", "_prefix", "_has")

    def __init__(self, name: str, points: Iterable[PoolPoint] | PoolColumns) -> None:
        self.name = name
        self._prefix: tuple[list[float], list[float], list[int]] | None = None
        self._has: dict[str, bool] = {}
        if isinstance(points, PoolColumns):
            self.ts = list(points.ts)
            self.cols = {f: list(points.cols.get(f) or [None] * len(self.ts)) for f in _POOL_FIELDS}
            self.cols["max"] = [m if m is not None and m > 0 else None for m in self.cols["max"]]
            self.n = len(self.ts)
            return
        pts = list(points)
        self.ts = [p.ts.timestamp() for p in pts]
        if any(b < a for a, b in zip(self.ts, self.ts[1:])):  # callers give them oldest first; be safe
            pts.sort(key=lambda p: p.ts)
            self.ts.sort()
        rows = [(p.max, p.in_use, p.idle, p.pending, p.timeouts, p.acquire_s, p.hold_s, p.conns_opened,
                 p.conns_closed, p.acquisitions) for p in pts]
        columns = list(zip(*rows)) if rows else [()] * len(_POOL_FIELDS)
        self.cols = {f: list(c) for f, c in zip(_POOL_FIELDS, columns)}
        # Go's database/sql reports max_open = 0 for "unlimited": absent, not zero.
        self.cols["max"] = [m if m is not None and m > 0 else None for m in self.cols["max"]]
        self.n = len(pts)

    def has(self, name: str) -> bool:
        """Whether the exporter gives the field at all (None somewhere else: no events then)."""
        found = self._has.get(name)
        if found is None:
            found = self._has[name] = any(v is not None for v in self.cols[name])
        return found

    def between(self, start: float, end: float) -> range:
        """Indexes of points with start <= ts <= end."""
        return range(bisect_left(self.ts, start), bisect_right(self.ts, end))

    def mean_in_use(self, start: float, end: float) -> tuple[float | None, float, int]:
        """Mean and standard deviation of in use over points in (start, end], and their count."""
        if self._prefix is None:
            total, squares, count = [0.0], [0.0], [0]
            for v in self.cols["in_use"]:
                x = v if v is not None else 0.0
                total.append(total[-1] + x)
                squares.append(squares[-1] + x * x)
                count.append(count[-1] + (v is not None))
            self._prefix = (total, squares, count)
        total, squares, count = self._prefix
        i, j = bisect_right(self.ts, start), bisect_right(self.ts, end)
        n = count[j] - count[i]
        if n == 0:
            return None, 0.0, 0
        mean = (total[j] - total[i]) / n
        var = max(0.0, (squares[j] - squares[i]) / n - mean * mean)
        return mean, math.sqrt(var), n



def _ts(epoch: float) -> datetime:
    # Whole milliseconds, rounded down: stable across ticks, never after the data.
    return datetime.fromtimestamp(math.floor(epoch * 1000) / 1000, tz=timezone.utc)


def _fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "?"
    if abs(x - round(x)) < 0.05:
        return str(int(round(x)))
    return f"{x:.{digits}f}"


def _dur(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours, rest = divmod(int(minutes), 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def _pct(x: float) -> str:
    return f"{x * 100:.0f} %"


def _combine(confidences: Iterable[float]) -> float:
    """Independent signals: 1 - Π(1 - c)."""
    miss = 1.0
    for c in confidences:
        miss *= 1.0 - max(0.0, min(1.0, c))
    return round(1.0 - miss, 2)


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass
class _Signal:
    """One leak signal that fires now."""

    name: str
    leaked: float
    since: float
    confidence: float
    evidence: Evidence
    detail: dict = field(default_factory=dict)


@dataclass
class _Context:
    inp: DiagnosisInput
    th: Thresholds
    now: float
    interval: float
    window: float  # rate window of the per-interval fields
    total: _Series
    live: list[_Series]  # instances with a fresh point
    server: list[ServerPoint]
    server_ts: list[float]
    server_gap: float
    server_fresh: bool

    @property
    def service(self) -> str:
        return self.inp.service

    def max_now(self) -> float | None:
        return _last(self.total.cols["max"])


def _last(values: list[float | None]) -> float | None:
    for v in reversed(values):
        if v is not None:
            return v
    return None


# ---------------------------------------------------------------- entry points


def diagnose(inp: DiagnosisInput) -> list[Finding]:
    """Findings for one service, the most actionable first (see module docstring)."""
    th = inp.thresholds
    now = inp.now.timestamp()
    interval = max(1.0, float(inp.interval_s))
    window = float(inp.rate_window_s or interval)
    total = _Series(inp.service or "(total)", inp.total)
    instance_series = [_Series(name, pts) for name, pts in sorted(inp.instances.items()) if pts] or [total]
    stale_after = max(th.stale_intervals * interval, 20.0)
    live = [s for s in instance_series if s.n and now - s.ts[-1] <= stale_after] or (
        [total] if total.n and now - total.ts[-1] <= stale_after else []
    )
    server = sorted(inp.server, key=lambda p: p.ts)
    server_ts = [p.ts.timestamp() for p in server]
    gaps = [b - a for a, b in zip(server_ts, server_ts[1:]) if b > a]
    server_gap = _median(gaps) or interval
    server_fresh = bool(server_ts) and now - server_ts[-1] <= max(3 * server_gap, stale_after)
    ctx = _Context(inp, th, now, interval, window, total, live, server, server_ts, server_gap, server_fresh)

    findings: list[Finding] = []
    shortage = _not_enough_data(ctx)
    pool_usable = shortage is None or shortage.detail.get("reason") == "short"
    if shortage is not None:
        findings.append(shortage)

    stuck = _stuck(ctx) if pool_usable and shortage is None else None
    saturation = _saturation(ctx, stuck) if pool_usable and shortage is None else None
    leak = _leak(ctx, pool_usable and shortage is None, saturation is not None or stuck is not None)
    for finding in (leak, stuck, saturation):
        if finding is not None:
            findings.append(finding)
    slow = _slow_queries(ctx) if pool_usable else None
    if slow is not None and saturation is not None and leak is None:
        # Exhausted by long queries is not "legitimately busy with short work": the fix is
        # the queries, not capacity, so the saturation is evidence of the slow queries.
        findings.remove(saturation)
        slow = replace(slow, severity=saturation.severity if saturation.severity == "crit" else "warn",
                       evidence=slow.evidence + saturation.evidence[:1])
        saturation = None
    for finding in (slow, _churn(ctx) if pool_usable else None):
        if finding is not None:
            findings.append(finding)
    if leak is not None and saturation is not None:
        # Never advise a bigger pool for a leaking one (next-capabilities L6).
        findings[findings.index(saturation)] = replace(
            saturation,
            fix="Fix the leak first: a bigger pool only delays the next exhaustion. " + saturation.fix,
        )
    if not any(f.severity in ("crit", "warn", "info") for f in findings):
        findings.append((_full_unjudged(ctx) if pool_usable and shortage is None else None) or _healthy(ctx))
    findings.sort(key=lambda f: (SEVERITIES.index(f.severity), KIND_PRIORITY.index(f.kind), -f.confidence))
    return findings


def diagnose_many(inputs: Iterable[DiagnosisInput]) -> dict[str, list[Finding]]:
    """Findings per service, for a collection tick's batch."""
    return {inp.service: diagnose(inp) for inp in inputs}


# ---------------------------------------------------------------- not enough data / healthy


def _missing_fields(ctx: _Context) -> list[str]:
    return [name for name in _POOL_FIELDS if not ctx.total.has(name)]


def _not_enough_data(ctx: _Context) -> Finding | None:
    total, th, now = ctx.total, ctx.th, ctx.now
    missing = _missing_fields(ctx)
    if total.n == 0:
        return Finding(
            NOT_ENOUGH_DATA, "warn", 1.0, ctx.inp.now,
            (Evidence(f"no pool data for {ctx.service} in the window", ctx.inp.now, ctx.inp.now),),
            "Check that Prometheus scrapes the service and that its preset matches the exporter.",
            detail={"reason": "no_data", "missing": missing},
        )
    if not ctx.live:
        last = total.ts[-1]
        return Finding(
            NOT_ENOUGH_DATA, "warn", 1.0, _ts(last),
            (Evidence(f"no pool data for {_dur(now - last)} ({_fmt((now - last) / ctx.interval)} collection intervals)",
                      _ts(last), ctx.inp.now),),
            "Check that the service is up and that Prometheus still scrapes it.",
            detail={"reason": "stale", "last_point": _ts(last).isoformat(), "missing": missing},
        )
    if not total.has("in_use"):
        return Finding(
            NOT_ENOUGH_DATA, "warn", 1.0, _ts(total.ts[0]),
            (Evidence("the exporter gives no in-use count, which every pool rule needs", _ts(total.ts[0]), ctx.inp.now),),
            "Map the exporter's in-use (checked-out / active) metric in the source's preset.",
            detail={"reason": "fields", "missing": missing},
        )
    span = total.ts[-1] - total.ts[0]
    if total.n < th.min_points or span < th.min_span_s:
        return Finding(
            NOT_ENOUGH_DATA, "info", 1.0, _ts(total.ts[0]),
            (Evidence(f"{total.n} points over {_dur(span)}; the pool rules need {th.min_points} over "
                      f"{_dur(th.min_span_s)}", _ts(total.ts[0]), _ts(total.ts[-1])),),
            "Wait for more collection ticks.",
            detail={"reason": "short", "points": total.n, "span_s": span, "missing": missing},
        )
    return None


def _unchecked(ctx: _Context) -> dict[str, str]:
    """Rules that could not run, and why (the exporter or the setup lacks what they need)."""
    has = ctx.total.has
    out: dict[str, str] = {}
    if not has("max"):
        out["saturation"] = "no pool max (unlimited or not exported)"
        out["stuck"] = "no pool max"
    elif not has("pending") and not has("acquire_s") and not has("timeouts"):
        out["saturation"] = "no waiting gauge, acquire time or timeouts"
    leak_inputs = []
    if not ctx.server:
        leak_inputs.append("server snapshots")
    if not ctx.inp.agent:
        leak_inputs.append("agent reports")
    if not (has("hold_s") and has("acquisitions")):
        leak_inputs.append("hold time with acquisitions")
    if len(leak_inputs) == 3:
        out["leak"] = "no " + ", no ".join(leak_inputs) + ": only the rising floor of in use is checked"
    if not has("conns_opened") and not ctx.server:
        out["churn"] = "no connections-opened count and no server snapshots"
    if not ctx.server and not ctx.inp.episodes:
        out["slow_queries"] = "no server snapshots"
    return out


def _full_unjudged(ctx: _Context) -> Finding | None:
    """A pool full for longer than the stuck span that neither saturation nor stuck could judge:
    the exporter gives no waiting gauge, acquire time or timeouts (whether callers wait), and
    no checkouts or server snapshots tell progress. Not healthy: not enough data, saying which."""
    th = ctx.th
    span = max(th.stuck_s, 2 * ctx.interval)
    for series in ctx.live:
        if any(series.has(name) for name in ("pending", "acquire_s", "timeouts")):
            continue
        cols, last = series.cols, series.n - 1
        if any(u is not None and m is not None and u > m + 0.5 for u, m in zip(cols["in_use"], cols["max"])):
            continue  # in use above max: max is not the limit (SQLAlchemy's pool_size, with overflow above it)
        first = _full_since(series)
        if first is None or series.ts[last] - series.ts[first] < span:
            continue
        lacking = ["a waiting gauge, acquire time or timeouts"]
        if not series.has("acquisitions") and not ctx.server_fresh:
            lacking.append("checkouts or server snapshots")
        text = (f"on {series.name} all {_fmt(cols['max'][last])} connections in use for "
                f"{_dur(series.ts[last] - series.ts[first])}, and the data has no {' and no '.join(lacking)}: "
                + ("busy cannot be told from stuck" if len(lacking) > 1 else "whether callers wait cannot be told"))
        return Finding(
            NOT_ENOUGH_DATA, "warn", 0.7, _ts(series.ts[first]),
            (Evidence(text, _ts(series.ts[first]), _ts(series.ts[last])),),
            "Export the pool's waiting count or acquire time (or monitor its database) so poolboard can tell "
            "saturation from a stuck pool; meanwhile treat a pool full this long as exhausted.",
            detail={"reason": "fields", "missing": _missing_fields(ctx), "instance": series.name},
        )
    return None


def _healthy(ctx: _Context) -> Finding:
    total = ctx.total
    start, end = _ts(total.ts[0]), _ts(total.ts[-1])
    cols = total.cols
    in_use = [v for v in cols["in_use"] if v is not None]
    mx = ctx.max_now()
    text = f"{_fmt(_last(cols['in_use']))}" + (f" of {_fmt(mx)}" if mx else "") + " in use now"
    if total.has("pending"):
        text += f", {_fmt(_last(cols['pending']))} waiting"
    text += f"; over the last {_dur(total.ts[-1] - total.ts[0])} in use peaked at {_fmt(max(in_use))}"
    pending = [v for v in cols["pending"] if v is not None]
    if pending and max(pending) > 0:
        text += f" with up to {_fmt(max(pending))} waiting"
    unchecked = _unchecked(ctx)
    evidence = [Evidence(text, start, end)]
    if unchecked:
        evidence.append(Evidence("not checked: " + "; ".join(f"{k} ({v})" for k, v in unchecked.items()), start, end))
    return Finding(
        HEALTHY, "ok", 0.9 if not unchecked else 0.6, start, tuple(evidence), "Nothing to do.",
        detail={"missing": _missing_fields(ctx), "unchecked": unchecked},
    )


# ---------------------------------------------------------------- leak


def _leak(ctx: _Context, pool_ok: bool, pool_full: bool) -> Finding | None:
    signals: list[_Signal] = []
    for rule in (_server_hoard, _abandoned_transactions, _agent_held):
        sig = rule(ctx)
        if sig is not None:
            signals.append(sig)
    if pool_ok:
        for series in ctx.live:
            for rule in (_residual, _rising_floor):
                sig = rule(ctx, series)
                if sig is not None:
                    signals.append(sig)
    if not signals:
        return None
    server_side = sum(s.leaked for s in signals if s.name in ("server_idle", "idle_in_transaction"))
    by_name: dict[str, float] = {}
    for s in signals:
        by_name[s.name] = by_name.get(s.name, 0.0) + s.leaked
    leaked = max([server_side] + list(by_name.values()))
    mx = ctx.max_now()
    severity = "crit" if pool_full or (mx and leaked >= 0.5 * mx) or any(
        s.detail.get("critical") for s in signals) else "warn"
    detail: dict = {"signals": sorted(by_name), "by_signal": {k: round(v, 1) for k, v in by_name.items()}}
    for s in signals:
        for key, value in s.detail.items():
            if key == "critical":
                continue
            if isinstance(value, list):
                detail.setdefault(key, []).extend(value)
            else:
                detail[key] = value
    fix = (
        "Find the code path that checks out a connection and does not return it: use a context manager"
        " (`with engine.connect()`, `with pool.connection()`) or `finally: close()`"
    )
    if "agent" in by_name:
        functions = sorted({h["function"] for h in detail.get("stacks", [])})
        fix = f"Return the connection checked out in {', '.join(functions)} (see the agent's stack): use a context manager or `finally: close()`"
    elif "idle_in_transaction" in by_name and len(by_name) == 1:
        fix = ("Commit or roll back before doing slow work outside the database (the transaction holds its "
               "connection and its locks); set idle_in_transaction_session_timeout as a safety net")
    return Finding(
        LEAK, severity, _combine(s.confidence for s in signals), _ts(min(s.since for s in signals)),
        tuple(s.evidence for s in signals), fix + ".", suspected_leaked=round(leaked, 1), detail=detail,
    )


def _server_hoard(ctx: _Context) -> _Signal | None:
    """Sessions idle on the server past the threshold while the pool counts them in use.

    At one snapshot the hoard is at least idle_over − pool idle (the pool's idle
    connections may all be long idle too): a sure lower bound. It is at most the
    sessions idle on the server that the pool does not count idle; a healthy pool's
    checked-out connections are idle there only between two queries, so when that
    count stayed up at every snapshot for the whole leak threshold, it is the hoard.
    """
    if not ctx.server_fresh or not any(p.idle_over_threshold for p in ctx.server):
        return None  # both bounds are capped by the sessions idle past the threshold
    total, th = ctx.total, ctx.th
    has_idle = total.has("idle")
    in_use, idle = total.cols["in_use"], total.cols["idle"]

    ts, n, span = total.ts, total.n, 1.5 * ctx.interval
    measured: list[tuple[float, float, float]] = []  # (sure surplus, checked out and idle, in-use floor)
    for snap, t in zip(ctx.server, ctx.server_ts):
        # The pool readings on either side of the snapshot (the two are taken at different instants).
        i = bisect_right(ts, t)
        near = []
        if i > 0 and t - ts[i - 1] <= span and in_use[i - 1] is not None:
            near.append(i - 1)
        if i < n and ts[i] - t <= span and in_use[i] is not None:
            near.append(i)
        if not near:
            measured.append((0.0, 0.0, 0.0))
            continue
        near_in_use = [in_use[j] for j in near]
        if has_idle and all(idle[j] is not None for j in near):
            pool_idle = max(idle[j] for j in near)
            # Sessions the pools do not know about (an uninstrumented engine, a cron job
            # under the same name) are not the pools' hoard.
            unknown = max(0.0, snap.total - max(in_use[j] + idle[j] for j in near))
        else:
            pool_idle, unknown = max(0.0, snap.total - min(near_in_use)), 0.0
        # Counted in use by the pool but not working on the server (idle there). The
        # readings on either side are averaged: a checkout that starts and ends between
        # them is working on the server without being in either, which makes this noisy.
        checked_out = sum(near_in_use) / len(near_in_use) - snap.active - snap.idle_in_transaction
        # The pool must have counted them in use the whole time they sat idle.
        held = [v for v in in_use[bisect_left(ts, t - th.leak_s):i] if v is not None]
        floor = min(held + near_in_use)
        measured.append((snap.idle_over_threshold - pool_idle - unknown, checked_out, floor))
    checked_out_idle = [m[1] for m in measured]

    # Whether the pool's idle connections stay young on the server (it hands out each in
    # turn, FIFO): then the count of sessions idle past the threshold only ever steps up,
    # one step per hoarded connection. A pool that reuses the most recent connection
    # (LIFO) leaves old idle ones at the bottom that come and go with the load: there only
    # the sure surplus tells them from a hoard.
    # And whether its checked-out connections work whenever the pool counts them (no
    # autocommit think time idle on the server), judged where nothing was idle that long.
    aged = [k for k, t in enumerate(ctx.server_ts) if t >= ctx.server_ts[0] + th.leak_s]
    over = [ctx.server[k].idle_over_threshold for k in aged]
    drops = sum(1 for a, b in zip(over, over[1:]) if b < a)
    quiet = [checked_out_idle[k] for k in aged if ctx.server[k].idle_over_threshold == 0]
    idle_stays_young = (len(aged) >= 4 and drops <= 0.1 * (len(aged) - 1)
                        and len(quiet) >= 3 and (_median(quiet) or 0.0) <= 0.5)

    def leaked_at(k: int) -> tuple[float, bool]:
        sure, _, floor = measured[k]
        t = ctx.server_ts[k]
        lo = bisect_left(ctx.server_ts, t - th.leak_s - 0.2 * ctx.server_gap)  # snapshots come with jitter
        persistent = 0.0
        if idle_stays_young and k - lo >= 1 and t - ctx.server_ts[lo] >= 0.5 * th.leak_s:
            # The lower median over the threshold: one reading caught mid-checkout is noise.
            values = sorted(checked_out_idle[lo:k + 1])
            persistent = values[(len(values) - 1) // 2]
        soft = min(persistent, ctx.server[k].idle_over_threshold, floor)
        hard = min(sure, floor)
        return (max(0.0, hard), True) if hard >= soft else (max(0.0, soft), False)

    # Carried forward: a hoard once measured stays while as many sessions stay idle past
    # the threshold and the pool keeps counting them in use (the pool's idle connections
    # coming and going must not open and close the finding).
    carried, sure, first = 0.0, False, None
    for k in range(len(ctx.server)):
        estimate, is_sure = leaked_at(k)
        carried = min(carried, float(ctx.server[k].idle_over_threshold), measured[k][2])
        if estimate > carried:
            carried, sure = estimate, is_sure
        if carried < 1:
            first = None
        elif first is None:
            first = k
    last = len(ctx.server) - 1
    leaked = carried
    if first is None or leaked < 1:
        return None
    snap = ctx.server[last]
    pool_idle_text = ""
    if has_idle and idle[-1] is not None:
        pool_idle_text = f" while its pools count {_fmt(idle[-1])} idle and {_fmt(in_use[-1])} in use"
    runs = last - first + 1
    text = (f"on the server {snap.idle_over_threshold} of {ctx.service}'s sessions have been idle for more than "
            f"{_dur(th.leak_s)}{pool_idle_text}: {'at least ' if sure else 'about '}{_fmt(leaked)} checked out and not working"
            + (f", in {runs} snapshots over {_dur(ctx.server_ts[last] - ctx.server_ts[first])}" if runs > 1 else ""))
    confidence = (0.8 if runs > 1 else 0.7) if sure else 0.6
    return _Signal("server_idle", leaked, ctx.server_ts[first], confidence,
                   Evidence(text, _ts(ctx.server_ts[first]), _ts(ctx.server_ts[last])))


def _episode_start(e: EpisodeView) -> float:
    return e.last_seen.timestamp() - e.peak_age_s


def _episode_end(e: EpisodeView, now: float) -> float:
    return now if e.open else e.last_seen.timestamp()


def _chain_start(spans: list[tuple[float, float]], gap: float) -> float:
    """Start of the run of spans (joined across gaps <= gap) that contains the latest one."""
    spans = sorted(spans)
    start, end = spans[0]
    for s, e in spans[1:]:
        if s - end > gap:
            start = s
        end = max(end, e)
    return start


def _abandoned_transactions(ctx: _Context) -> _Signal | None:
    th, now = ctx.th, ctx.now
    fresh_after = now - max(3 * ctx.server_gap, 3 * ctx.interval, 90.0)
    iit = [e for e in ctx.inp.episodes if e.kind == IDLE_IN_TRANSACTION]
    held = []
    for e in iit:
        last_seen = e.last_seen.timestamp()
        age = e.peak_age_s + (max(0.0, now - last_seen) if e.open else 0.0)
        if e.open and last_seen >= fresh_after and age >= th.leak_s:
            held.append((e, age))
    recent = [e for e in iit if not e.open and e.peak_age_s >= th.leak_s and now - e.last_seen.timestamp() <= th.leak_clear_s]
    if not held and not recent:
        return None
    over = [e for e in iit if e.peak_age_s >= th.leak_s or any(e is h for h, _ in held)]
    since = _chain_start([(e.first_seen.timestamp(), _episode_end(e, now)) for e in over], th.leak_clear_s)
    fingerprints: dict[str, int] = {}
    for e in over:
        if e.first_seen.timestamp() >= since:
            fingerprints[e.fingerprint] = fingerprints.get(e.fingerprint, 0) + 1
    oldest = max((age for _, age in held), default=max((e.peak_age_s for e in recent), default=0.0))
    count = sum(fingerprints.values())
    if held:
        text = (f"{len(held)} of {ctx.service}'s sessions idle in transaction for more than {_dur(th.leak_s)} "
                f"(oldest {_dur(oldest)}); {count} such episodes since this began")
    else:
        text = (f"{len(recent)} idle-in-transaction episodes over {_dur(th.leak_s)} ended in the last "
                f"{_dur(th.leak_clear_s)} (longest {_dur(oldest)}); {count} since this began")
    detail = {"fingerprints": [{"fingerprint": f, "episodes": n} for f, n in sorted(fingerprints.items(), key=lambda x: -x[1])]}
    if oldest >= th.crit_idle_in_transaction_s:
        detail["critical"] = True
    return _Signal("idle_in_transaction", float(len(held)), since, 0.75 if held else 0.5,
                   Evidence(text, _ts(since), ctx.inp.now), detail)


def _agent_held(ctx: _Context) -> _Signal | None:
    th, now = ctx.th, ctx.now
    latest: dict[tuple[str, str], AgentHeld] = {}
    for r in ctx.inp.agent:
        key = (r.instance, r.fingerprint)
        if key not in latest or r.reported_at > latest[key].reported_at:
            latest[key] = r
    held = [r for r in latest.values()
            if now - r.reported_at.timestamp() <= th.agent_stale_s
            and r.count > 0
            and r.oldest_hold_s + (now - r.reported_at.timestamp()) >= th.leak_s]
    if not held:
        return None
    count = sum(r.count for r in held)
    # A query running longer than the threshold is held past it too but is working: the
    # server sees it active.
    working = sum(1 for e in ctx.inp.episodes if e.kind == LONG_QUERY and e.open
                  and e.peak_age_s + (now - e.last_seen.timestamp()) >= th.leak_s) if ctx.server_fresh else 0
    leaked = count - working
    if leaked < 1:
        return None
    since = min(round(r.reported_at.timestamp() - r.oldest_hold_s + th.leak_s) for r in held)
    oldest = max(r.oldest_hold_s + (now - r.reported_at.timestamp()) for r in held)
    held.sort(key=lambda r: (-r.count, -r.oldest_hold_s))
    top = held[0]
    text = (f"the agent reports {count} connection{'s' if count != 1 else ''} held for more than {_dur(th.leak_s)} "
            f"(oldest {_dur(oldest)}), {top.count} checked out in {top.function}"
            + (f" and {len(held) - 1} more stack{'s' if len(held) > 2 else ''}" if len(held) > 1 else ""))
    stacks = [{"fingerprint": r.fingerprint, "function": r.function, "stack": r.stack, "count": r.count,
               "oldest_hold_s": round(r.oldest_hold_s + (now - r.reported_at.timestamp()), 1), "instance": r.instance}
              for r in held]
    return _Signal("agent", float(leaked), float(since), 0.85, Evidence(text, _ts(since), ctx.inp.now), {"stacks": stacks})


def _residual(ctx: _Context, series: _Series) -> _Signal | None:
    """Little's law: mean in use − acquisitions/s × mean hold, sustained."""
    if not (series.has("hold_s") and series.has("acquisitions")):
        return None
    th, window = ctx.th, ctx.window
    sustain = max(th.pool_signal_sustain_s, 2 * ctx.interval)
    if series.ts[-1] - series.ts[0] < window + sustain:
        return None
    mx = _last(series.cols["max"])
    need = max(th.residual_min, th.residual_min_fraction * mx) if mx else th.residual_min
    cols = series.cols

    def residual_at(i: int) -> tuple[float, float, float] | None:
        t = series.ts[i]
        acq, hold = cols["acquisitions"][i], cols["hold_s"][i]
        if acq is None:
            return None
        if hold is None:
            hold = 0.0  # no connection came back in the window: no hold-seconds accrued
        mean, sd, n = series.mean_in_use(t - window, t)
        if mean is None or n < 2:
            return None
        demand = acq / window * hold
        # Sampling noise of the mean of n gauge readings (2 standard errors).
        noise = 2 * sd / math.sqrt(n)
        return mean - demand, noise, demand

    start = bisect_left(series.ts, series.ts[0] + window)
    last = series.n - 1
    values = {}
    for i in range(last, start - 1, -1):
        r = residual_at(i)
        if r is None or r[0] < need + r[1]:
            break
        values[i] = r
    if not values:
        return None
    first = min(values)
    if series.ts[last] - series.ts[first] < sustain:
        return None
    # Long queries in flight are working, not leaked: they show as active on the server.
    working = 0
    if ctx.server_fresh:
        working = sum(1 for e in ctx.inp.episodes if e.kind == LONG_QUERY and e.open)
    res, _, demand = values[last]
    leaked = res - working
    if leaked < need:
        return None
    acq_rates = [cols["acquisitions"][i] / window for i in values]
    text = (f"Little's law on {series.name}: in use averaged {_fmt(res + demand)} over the last {_dur(window)} while "
            f"{_fmt(sum(acq_rates) / len(acq_rates), 2)} acquisitions/s × {_fmt(cols['hold_s'][last], 3)} s mean hold "
            f"account for {_fmt(demand)}: about {_fmt(leaked)} connections checked out and never returned, "
            f"for {_dur(series.ts[last] - series.ts[first])}")
    return _Signal("residual", leaked, series.ts[first], 0.6, Evidence(text, _ts(series.ts[first]), _ts(series.ts[last])))


def _rising_floor(ctx: _Context, series: _Series) -> _Signal | None:
    """The minimum of in use per window keeps rising while throughput and demand stay flat."""
    th, window = ctx.th, ctx.window
    # Windows as long as the rate window at least, so that each window's throughput (the
    # count over the rate window at its end) describes that window and not the one before.
    length = max(2 * th.leak_s, window, 4 * ctx.interval)
    cols = series.cols
    has_acq = series.has("acquisitions")
    has_demand = has_acq and series.has("hold_s")
    current = math.floor(ctx.now / length)
    buckets: dict[int, list[int]] = {}
    for i, t in enumerate(series.ts):
        b = math.floor(t / length)
        if b < current and cols["in_use"][i] is not None:
            buckets.setdefault(b, []).append(i)
    keys = sorted(k for k, idx in buckets.items() if len(idx) >= 2)
    if len(keys) < 3:
        return None
    # Windows must follow each other: a gap (restart, outage) starts a new run.
    run = [keys[-1]]
    for k in reversed(keys[:-1]):
        if k != run[-1] - 1:
            break
        run.append(k)
    run.reverse()
    if len(run) < 3:
        return None
    minima = [min(cols["in_use"][i] for i in buckets[k]) for k in run]
    base = max(j for j, m in enumerate(minima) if m == min(minima))
    if len(run) - 1 - base < 2:
        return None
    tail = minima[base:]
    if any(b < a for a, b in zip(tail, tail[1:])):
        return None
    # "Keeps rising": one step up can be a quiet window before a busy one.
    if sum(1 for a, b in zip(tail, tail[1:]) if b > a) < 2:
        return None
    rise = tail[-1] - tail[0]
    b_idx, k_idx = buckets[run[base]], buckets[run[-1]]
    b_mean = sum(cols["in_use"][i] for i in b_idx) / len(b_idx)
    k_mean = sum(cols["in_use"][i] for i in k_idx) / len(k_idx)
    # The floor of a busy pool wanders with its load: a rise must clear that noise.
    need = max(1.0, 1.5 * math.sqrt(max(b_mean, 0.0)))
    if rise < need or k_mean - b_mean < 0.5 * rise:
        return None

    def mean_of(name: str, idx: list[int], scale: float = 1.0) -> float | None:
        """The window's value of a rate-window field: its readings in the window's second half."""
        late = [i for i in idx if series.ts[i] >= series.ts[idx[0]] + length / 2] or idx
        vals = [cols[name][i] for i in late if cols[name][i] is not None]
        return sum(vals) / len(vals) / scale if vals else None

    def server_active(bucket: int) -> float | None:
        lo, hi = bucket * length, (bucket + 1) * length
        vals = [p.active for p, t in zip(ctx.server, ctx.server_ts) if lo <= t < hi]
        return sum(vals) / len(vals) if vals else None

    gates = []
    throughput_text = ""
    if has_acq:
        a_b, a_k = mean_of("acquisitions", b_idx, window), mean_of("acquisitions", k_idx, window)
        if a_b is None or a_k is None:
            return None
        if a_k > a_b * (1 + th.throughput_flat) + 0.02:
            return None  # more traffic: a higher floor is demand, not a leak
        if has_demand:
            d_b = _mean_demand(cols, b_idx, window)
            d_k = _mean_demand(cols, k_idx, window)
            if d_b is None or d_k is None or d_k - d_b >= 0.5 * rise:
                return None
        change = (a_k - a_b) / a_b if a_b > 0 else 0.0
        throughput_text = f" while acquisitions went {_fmt(a_b, 2)} → {_fmt(a_k, 2)}/s ({change * 100:+.0f} %)"
        gates.append("throughput")
    if ctx.server:
        s_b, s_k = server_active(run[base]), server_active(run[-1])
        if s_b is not None and s_k is not None:
            if s_k - s_b >= 0.5 * rise or (k_mean - s_k) - (b_mean - s_b) < 0.5 * rise:
                return None  # the server sees the extra connections working
            throughput_text += f"; active on the server {_fmt(s_b)} → {_fmt(s_k)}"
            gates.append("server")
    if not gates:
        return None  # nothing tells demand from a leak
    start = run[base + 1] * length
    end = series.ts[k_idx[-1]]
    mx = _last(cols["max"])
    text = (f"on {series.name} the floor of in use rose {_fmt(tail[0])} → {_fmt(tail[-1])}"
            + (f" of {_fmt(mx)}" if mx else "") + f" over {_dur(end - start)}" + throughput_text)
    return _Signal("floor", rise, start, 0.55 if len(gates) > 1 else 0.45,
                   Evidence(text, _ts(run[base] * length), _ts(end)))


def _mean_demand(cols: dict, idx: list[int], window: float) -> float | None:
    vals = [cols["acquisitions"][i] / window * cols["hold_s"][i] for i in idx
            if cols["acquisitions"][i] is not None and cols["hold_s"][i] is not None]
    return sum(vals) / len(vals) if vals else None


# ---------------------------------------------------------------- stuck


def _at_max(cols: dict, i: int) -> bool:
    """Point i has every connection in use (0.5: the gauges are floats)."""
    u, m = cols["in_use"][i], cols["max"][i]
    return u is not None and m is not None and u >= m - 0.5


def _full_since(series: _Series) -> int | None:
    """Where the run of points at max that ends with the newest starts; None when the newest is not at max."""
    last = series.n - 1
    if last < 0 or not _at_max(series.cols, last):
        return None
    first = last
    while first > 0 and _at_max(series.cols, first - 1):
        first -= 1
    return first


def _stuck(ctx: _Context) -> Finding | None:
    th = ctx.th
    span = max(th.stuck_s, 2 * ctx.interval)
    for series in ctx.live:
        cols = series.cols
        last = series.n - 1
        first = _full_since(series)
        if first is None or series.ts[last] - series.ts[first] < span:
            continue
        acq = cols["acquisitions"][last]
        reasons = []
        if series.has("acquisitions"):
            if acq is None or acq > 0:
                continue
            reasons.append(f"no checkout in the last {_dur(ctx.window)}")
        server_text = ""
        if ctx.server_fresh:
            recent = [p for p, t in zip(ctx.server, ctx.server_ts) if t >= ctx.now - span]
            if len(recent) >= 2 and all(p.active == 0 for p in recent):
                reasons.append("no active session on the server")
                p = recent[-1]
                server_text = (f"; on the server {p.active} of {ctx.service}'s {p.total} sessions are active "
                               f"({p.idle_in_transaction} idle in transaction, {p.idle} idle)")
            elif recent and not series.has("acquisitions"):
                continue
        if not reasons:
            continue  # no signal of progress either way: cannot tell stuck from busy
        # The run of "no progress": when checkouts stopped (the window's count reached 0).
        since = series.ts[first]
        if series.has("acquisitions"):
            k = last
            while k > first and cols["acquisitions"][k - 1] == 0:
                k -= 1
            since = max(since, series.ts[k] - ctx.window)
        pending = _last(cols["pending"]) if series.has("pending") else None
        timeouts = cols["timeouts"][last]
        text = (f"on {series.name} all {_fmt(cols['max'][last])} connections in use for {_dur(series.ts[last] - series.ts[first])} "
                f"with {' and '.join(reasons)}")
        if pending:
            text += f"; {_fmt(pending)} callers waiting"
        if timeouts:
            text += f"; {_fmt(timeouts)} timeouts in the last {_dur(ctx.window)}"
        text += server_text
        return Finding(
            STUCK, "crit", _combine([0.7] * len(reasons)), _ts(since),
            (Evidence(text, _ts(since), _ts(series.ts[last])),),
            "Callers are blocked: restart the instance to free the connections now, then find what holds them "
            "(see the leak suspects and the holder sessions on the server).",
            detail={"instance": series.name, "reasons": reasons},
        )
    return None


# ---------------------------------------------------------------- saturation


def _saturated_points(ctx: _Context, series: _Series) -> list[int]:
    th, cols = ctx.th, series.cols
    has_pending = series.has("pending")
    out = []
    for i in range(series.n):
        if not _at_max(cols, i):
            continue
        if has_pending:
            if (cols["pending"][i] or 0) > 0:
                out.append(i)
        elif (cols["acquire_s"][i] or 0) >= th.saturation_acquire_s or (cols["timeouts"][i] or 0) > 0:
            out.append(i)
    return out


def _saturation(ctx: _Context, stuck: Finding | None) -> Finding | None:
    th = ctx.th
    best = None
    for series in ctx.live:
        if stuck is not None and stuck.detail.get("instance") == series.name:
            continue
        points = _saturated_points(ctx, series)
        if len(points) < 2 or ctx.now - series.ts[points[-1]] > th.saturation_clear_s:
            continue
        # The episode: saturated points joined across quiet gaps shorter than the clear time.
        first = len(points) - 1
        while first > 0 and series.ts[points[first]] - series.ts[points[first - 1]] <= th.saturation_clear_s:
            first -= 1
        episode = points[first:]
        if len(episode) < 2:
            continue
        if best is None or len(episode) > len(best[1]):
            best = (series, episode)
    if best is None:
        return None
    series, episode = best
    cols = series.cols
    start, end = series.ts[episode[0]], series.ts[series.n - 1]
    span_idx = list(series.between(start, end))
    pending = [cols["pending"][i] for i in span_idx if cols["pending"][i] is not None]
    timeouts = [cols["timeouts"][i] for i in span_idx if cols["timeouts"][i] is not None]
    recent_timeouts = cols["timeouts"][series.n - 1] or 0
    mx = cols["max"][episode[-1]]
    text = (f"on {series.name} all {_fmt(mx)} connections in use with callers waiting in {len(episode)} of "
            f"{len(span_idx)} samples over {_dur(end - start)}")
    if pending:
        text += f", up to {_fmt(max(pending))} waiting"
    if timeouts and max(timeouts) > 0:
        text += f", up to {_fmt(max(timeouts))} timeouts per {_dur(ctx.window)}"
    acquire = [cols["acquire_s"][i] for i in episode if cols["acquire_s"][i] is not None]
    if acquire:
        text += f", mean wait up to {_fmt(max(acquire) * 1000, 0)} ms"
    evidence = [Evidence(text, _ts(start), _ts(end))]
    hold_during = [cols["hold_s"][i] for i in episode if cols["hold_s"][i] is not None]
    hold_before = [cols["hold_s"][i] for i in range(series.n) if series.ts[i] < start and cols["hold_s"][i] is not None]
    acq_during = [cols["acquisitions"][i] / ctx.window for i in episode if cols["acquisitions"][i] is not None]
    if hold_during:
        sentence = f"mean hold {_fmt(sum(hold_during) / len(hold_during) * 1000, 0)} ms"
        if hold_before:
            sentence += f" (before: {_fmt(sum(hold_before) / len(hold_before) * 1000, 0)} ms)"
        if acq_during:
            sentence += f" at {_fmt(sum(acq_during) / len(acq_during), 1)} acquisitions/s"
        evidence.append(Evidence(sentence, _ts(start), _ts(end)))
    if ctx.server_fresh:
        during = [p for p, t in zip(ctx.server, ctx.server_ts) if t >= start]
        if during:
            active = sum(p.active for p in during) / len(during)
            sessions = sum(p.total for p in during) / len(during)
            longest = max((p.longest_active_query_s or 0.0) for p in during)
            # Judge by the snapshots taken while the pool was full (bursty load idles between).
            near = max(ctx.interval, ctx.server_gap)
            full_ts = [series.ts[i] for i in episode]

            def taken_while_full(t: float) -> bool:
                i = bisect_left(full_ts, t)
                return any(abs(f - t) <= near for f in full_ts[max(0, i - 1):i + 1])

            while_full = [p for p, t in zip(ctx.server, ctx.server_ts) if t >= start and taken_while_full(t)]
            full_sessions = sum(p.total for p in while_full)
            if full_sessions and sum(p.active for p in while_full) < th.saturation_active_share * full_sessions:
                return None  # full but not working: not honest saturation (see Thresholds)
            evidence.append(Evidence(
                f"on the server {_fmt(active)} of {_fmt(sessions)} sessions active on average, longest query {_fmt(longest)} s",
                _ts(start), _ts(end)))
    last_sat = series.ts[episode[-1]]
    ended = ctx.now - last_sat > max(2 * ctx.interval, 30.0)
    if ended:
        evidence.append(Evidence(f"not saturated for the last {_dur(ctx.now - last_sat)}: in use falls back with the load",
                                 _ts(last_sat), ctx.inp.now))
    severity = "crit" if recent_timeouts > 0 and not ended else "warn"
    return Finding(
        SATURATION, severity, 0.8 if len(episode) >= 4 else 0.6, _ts(start), tuple(evidence),
        "Capacity, not code: the pool is honestly busy. Raise its max within the database's connection budget, "
        "add a pooler, or shorten what each request does under the connection.",
        detail={"instance": series.name, "saturated_samples": len(episode), "ended": ended},
    )


# ---------------------------------------------------------------- slow queries


def _slow_queries(ctx: _Context) -> Finding | None:
    th, now = ctx.th, ctx.now
    long_queries = [e for e in ctx.inp.episodes if e.kind == LONG_QUERY]
    if not long_queries:
        return None
    lo = now - th.slow_window_s
    spans = []
    for e in long_queries:
        s, t = _episode_start(e), _episode_end(e, now)
        if not e.open:
            t = min(now, t + ctx.server_gap / 2)  # it ended between its last sighting and the next snapshot
        if t >= lo:
            spans.append((e, max(s, lo), t))
    if not spans:
        return None
    total = ctx.total
    idx = list(total.between(lo, now))
    held = 0.0
    for a, b in zip(idx, idx[1:]):
        u = total.cols["in_use"][a]
        if u is not None:
            held += u * (total.ts[b] - total.ts[a])
    long_s = sum(t - s for _, s, t in spans)
    share = long_s / max(held, long_s, 1.0)
    # Peak concurrency of long queries.
    edges = sorted([(s, 1) for _, s, _t in spans] + [(t, -1) for _, _s, t in spans])
    running = peak = 0
    for _, d in edges:
        running += d
        peak = max(peak, running)
    # The snapshots' own count of long queries, where the snapshot gives it.
    snaps = [p for p, t in zip(ctx.server, ctx.server_ts) if t >= lo]
    in_use_now = [total.cols["in_use"][i] for i in idx if total.cols["in_use"][i] is not None]
    if snaps and in_use_now and any(p.long_queries for p in snaps):
        mean_long = sum(p.long_queries for p in snaps) / len(snaps)
        share = max(share, min(1.0, mean_long / max(sum(in_use_now) / len(in_use_now), mean_long, 1e-9)))
        peak = max(peak, max(p.long_queries for p in snaps))
    mx = ctx.max_now()
    enough = peak >= th.slow_pool_share * mx if mx else peak >= 2
    if not enough and in_use_now:
        # Against max alone the verdict would hang on how generously the pool is sized, not
        # on what the queries do to it; 2 at once keeps one occasional long query out.
        enough = peak >= 2 and peak >= th.slow_pool_share * max(in_use_now)
    if share < th.slow_share or not enough:
        return None
    by_fp: dict[str, float] = {}
    for e, s, t in spans:
        by_fp[e.fingerprint] = by_fp.get(e.fingerprint, 0.0) + (t - s)
    ranked = sorted(by_fp.items(), key=lambda x: -x[1])
    names = ", ".join(f"{fp} ({_pct(sec / max(held, long_s, 1.0))})" for fp, sec in ranked[:3])
    since = _chain_start([(_episode_start(e), _episode_end(e, now)) for e in long_queries], th.slow_window_s)
    text = (f"long queries held {_pct(share)} of {ctx.service}'s connection-time over the last {_dur(min(th.slow_window_s, now - since))}, "
            f"up to {peak} at once" + (f" of {_fmt(mx)}" if mx else "") + f": {names}")
    pressured = any(_saturated_points(ctx, s) for s in ctx.live)
    return Finding(
        SLOW_QUERIES, "warn" if pressured or (mx and peak >= 0.5 * mx) else "info", 0.8, _ts(since),
        (Evidence(text, _ts(max(lo, since)), ctx.inp.now),),
        f"Speed up or move {ranked[0][0]} off the request path (an index, a smaller batch, a read replica), "
        "and set statement_timeout so one slow query cannot hold the pool.",
        detail={"fingerprints": [{"fingerprint": fp, "share": round(sec / max(held, long_s, 1.0), 3)} for fp, sec in ranked],
                "peak_concurrent": peak},
    )


# ---------------------------------------------------------------- churn


def _churn(ctx: _Context) -> Finding | None:
    th, window = ctx.th, ctx.window
    evidence: list[Evidence] = []
    starts: list[float] = []
    detail: dict = {}
    for series in ctx.live:
        if not series.has("conns_opened"):
            continue
        cols = series.cols
        born = series.ts[0]
        run: list[tuple[int, float]] = []
        for i in range(series.n - 1, -1, -1):
            t = series.ts[i]
            if t - born < window:
                break  # a fresh instance opens its whole pool at once
            opened = cols["conns_opened"][i]
            size = (cols["in_use"][i] or 0.0) + (cols["idle"][i] or 0.0)
            if opened is None or opened <= 0 or size <= 0:
                break
            lifetime = size / (opened / window)
            if lifetime >= th.churn_lifetime_s:
                break
            run.append((i, lifetime))
        if not run:
            continue
        first, last = run[-1][0], run[0][0]
        if series.ts[last] - series.ts[first] < th.churn_sustain_s:
            continue
        lifetimes = [lt for _, lt in run]
        opened_rate = sum(cols["conns_opened"][i] for i, _ in run) / len(run) / window
        text = (f"on {series.name} connections opened at {_fmt(opened_rate * 60)}/min for a pool of "
                f"{_fmt((cols['in_use'][last] or 0) + (cols['idle'][last] or 0))}: each lives about "
                f"{_dur(sorted(lifetimes)[len(lifetimes) // 2])}, for {_dur(series.ts[last] - series.ts[first])}")
        evidence.append(Evidence(text, _ts(series.ts[first]), _ts(series.ts[last])))
        starts.append(series.ts[first])
        detail.setdefault("instances", []).append(series.name)
    if ctx.server_fresh:
        run_s: list[int] = []
        for k in range(len(ctx.server) - 1, -1, -1):
            p = ctx.server[k]
            if p.total < 2 or p.young_sessions < th.churn_young_share * p.total:
                break
            run_s.append(k)
        if len(run_s) >= 2:
            first, last = run_s[-1], run_s[0]
            if ctx.server_ts[last] - ctx.server_ts[first] >= th.churn_sustain_s:
                young = sum(ctx.server[k].young_sessions for k in run_s)
                sessions = sum(ctx.server[k].total for k in run_s)
                evidence.append(Evidence(
                    f"on the server {_pct(young / sessions)} of {ctx.service}'s sessions were younger than a minute "
                    f"in {len(run_s)} snapshots over {_dur(ctx.server_ts[last] - ctx.server_ts[first])}",
                    _ts(ctx.server_ts[first]), _ts(ctx.server_ts[last])))
                starts.append(ctx.server_ts[first])
    if not evidence:
        return None
    return Finding(
        CHURN, "warn", _combine([0.7] * len(evidence)), _ts(min(starts)), tuple(evidence),
        "Connections are replaced almost as fast as they are used: check pool_pre_ping / validation failures, and "
        "set pool_recycle / maxLifetime / max_lifetime in minutes, not seconds (and an idle timeout longer than the "
        "gap between bursts).",
        detail=detail,
    )
