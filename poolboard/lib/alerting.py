"""Alert rule semantics: Prometheus's state machine, as a pure function of one evaluation.

Pure: no Django, no I/O, no clock reads (`now` is the evaluation timestamp, the database's
clock, passed in). The live evaluation (poolboard.alerts.evaluate) and the backtest (over a
stored series) call the same `step`, so "what would this rule have done" is what it does.

The semantics follow Prometheus's `rules/alerting.go` (reliability.md §1.2):

- an instance whose condition holds for the first time (or again after it resolved) becomes
  **pending** with `active_since = now`; it becomes **firing** at the first evaluation with
  `now - active_since >= for` (note the `>=`; `for = 0` fires on the first evaluation);
- a **pending** instance whose condition stops holding goes back to inactive at once, and
  nothing is sent: the receiver never heard of it;
- a **firing** instance whose condition stops holding resolves, unless `keep_firing_for` is
  set: then it keeps firing while `now - keep_firing_since < keep_firing_for`, where
  `keep_firing_since` is the first evaluation at which the condition no longer held (reset
  when it holds again). A pending instance gets no such grace;
- a firing instance whose `for` was raised above its active time goes back to pending;
- missed evaluations are not replayed: `step` is called once per real evaluation;
- an evaluation gap longer than the outage tolerance (Prometheus' `for-outage-tolerance`,
  1 h) restarts a pending countdown instead of firing on stale evidence.

NaN never satisfies a comparison (PromQL's filter semantics): it is "no sample".
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

from . import promql
from .pools import effective_max

INACTIVE, PENDING, FIRING = "inactive", "pending", "firing"
STATES = (INACTIVE, PENDING, FIRING)

COMPARATORS: Mapping[str, str] = {">": "above", ">=": "at or above", "<": "below", "<=": "at or below",
                                  "==": "equal to", "!=": "not equal to"}

# What to do with an instance whose signal has no value (the source answered, but this
# service or database has no sample, or NaN): Prometheus resolves (the series is gone);
# Grafana offers keeping the last state or alerting.
NO_DATA_RESOLVE, NO_DATA_KEEP, NO_DATA_ALERT = "resolve", "keep", "alert"
NO_DATA_POLICIES = (NO_DATA_RESOLVE, NO_DATA_KEEP, NO_DATA_ALERT)

# Prometheus --rules.alert.for-outage-tolerance.
OUTAGE_TOLERANCE_S = 3600.0


def compare(value: float | None, comparator: str, threshold: float) -> bool:
    """PromQL filter semantics: None and NaN never satisfy; +Inf > t does."""
    if value is None or math.isnan(value):
        return False
    if comparator == ">":
        return value > threshold
    if comparator == ">=":
        return value >= threshold
    if comparator == "<":
        return value < threshold
    if comparator == "<=":
        return value <= threshold
    if comparator == "==":
        return value == threshold
    if comparator == "!=":
        return value != threshold
    raise ValueError(f"unknown comparator {comparator!r}")


def has_value(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


@dataclass(frozen=True)
class InstanceState:
    """What an alert instance carries between evaluations (persisted on AlertInstance)."""

    state: str = INACTIVE
    active_since: datetime | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    keep_firing_since: datetime | None = None
    value: float | None = None


@dataclass(frozen=True)
class Step:
    state: InstanceState
    # None when the state did not change; else (from_state, to_state).
    transition: tuple[str, str] | None = None

    @property
    def notifies(self) -> bool:
        """Only firing and its end are sent; a pending instance that goes away sends nothing."""
        if self.transition is None:
            return False
        before, after = self.transition
        return after == FIRING or before == FIRING


def step(
    prev: InstanceState,
    active: bool,
    value: float | None,
    now: datetime,
    *,
    for_s: float,
    keep_firing_for_s: float = 0.0,
    last_evaluated_at: datetime | None = None,
    outage_tolerance_s: float = OUTAGE_TOLERANCE_S,
) -> Step:
    """One evaluation of one instance. `active`: the condition holds now."""
    state = prev.state
    if active:
        if state == INACTIVE:
            cur = InstanceState(PENDING, active_since=now, value=value, resolved_at=prev.resolved_at)
        else:
            active_since = prev.active_since or now
            if (
                state == PENDING
                and last_evaluated_at is not None
                and (now - last_evaluated_at).total_seconds() > outage_tolerance_s
            ):
                # The evidence between the two evaluations is unknown: count again from now.
                active_since = now
            cur = replace(prev, active_since=active_since, keep_firing_since=None, value=value)
        if cur.state == PENDING and (now - cur.active_since).total_seconds() >= for_s:
            cur = replace(cur, state=FIRING, fired_at=now)
        elif cur.state == FIRING and (now - cur.active_since).total_seconds() < for_s:
            # `for` was raised above the time it has been active (alerting.go L532-537).
            cur = replace(cur, state=PENDING, fired_at=None)
    else:
        if state == INACTIVE:
            return Step(prev)
        if state == PENDING:
            cur = InstanceState(INACTIVE, resolved_at=prev.resolved_at, value=value)
        else:
            since = prev.keep_firing_since or now
            if keep_firing_for_s > 0 and (now - since).total_seconds() < keep_firing_for_s:
                cur = replace(prev, keep_firing_since=since, value=value)
            else:
                cur = InstanceState(INACTIVE, active_since=None, fired_at=prev.fired_at, resolved_at=now, value=value)
    transition = (state, cur.state) if cur.state != state else None
    return Step(cur, transition)


def evaluate(
    prev: InstanceState,
    value: float | None,
    now: datetime,
    *,
    comparator: str,
    threshold: float,
    for_s: float,
    keep_firing_for_s: float = 0.0,
    no_data: str = NO_DATA_RESOLVE,
    last_evaluated_at: datetime | None = None,
) -> Step:
    """`step` for a value: the comparison, and the no-data policy when there is no value.

    A source that *failed* never reaches here (error is not no data): the caller leaves
    the instance as it is.
    """
    if not has_value(value):
        if no_data == NO_DATA_KEEP:
            return Step(prev)
        active = no_data == NO_DATA_ALERT
        value = None
    else:
        active = compare(value, comparator, threshold)
    return step(prev, active, value, now, for_s=for_s, keep_firing_for_s=keep_firing_for_s,
                last_evaluated_at=last_evaluated_at)


# --- identity ------------------------------------------------------------------------


def fingerprint(labels: Mapping[str, str]) -> str:
    """16 hex digits, stable for the same label set across processes and versions (sorted JSON)."""
    text = json.dumps(sorted((str(k), str(v)) for k, v in labels.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- templates -----------------------------------------------------------------------

TEMPLATE_VAR_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
# instance and pool: the pool a utilization or available value comes from (the worst one);
# empty for the other signals.
TEMPLATE_VARIABLES = ("service", "database", "server", "value", "threshold", "rule", "severity", "instance", "pool")


def template_errors(text: str, allowed: Iterable[str] = TEMPLATE_VARIABLES) -> list[str]:
    """What is wrong with a summary/description template (empty: fine).

    Only `{{ name }}` with a known name is a placeholder: no filters, no attributes, no
    expressions, nothing evaluated.
    """
    allowed = tuple(allowed)
    errors: list[str] = []
    for match in TEMPLATE_VAR_RE.finditer(text or ""):
        name = match.group(1)
        if name not in allowed:
            errors.append(
                f"Unknown variable {{{{ {name} }}}}: use {', '.join('{{ ' + a + ' }}' for a in allowed)}."
            )
    rest = TEMPLATE_VAR_RE.sub("", text or "")
    if "{{" in rest or "}}" in rest:
        errors.append("Unbalanced {{ or }}: write a variable as {{ name }}.")
    return errors


def format_value(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "no data"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def render_template(text: str, variables: Mapping[str, object]) -> str:
    """Substitute `{{ name }}`; plain text out (whoever puts it in HTML escapes it).

    Numbers are formatted for humans; an unknown name renders empty (validation refuses it
    before it is saved).
    """

    def sub(match: re.Match) -> str:
        value = variables.get(match.group(1), "")
        if isinstance(value, float) or value is None:
            return format_value(value)  # type: ignore[arg-type]
        return str(value)

    return TEMPLATE_VAR_RE.sub(sub, text or "")


# --- backtest ------------------------------------------------------------------------


@dataclass
class Episode:
    """One activation of the rule in a backtest: pending from, firing from, resolved at."""

    pending_at: datetime
    firing_at: datetime | None = None
    resolved_at: datetime | None = None  # None: still active at the end of the range
    peak: float | None = None  # the most breaching value (the lowest for < and <=)

    def firing_s(self, end: datetime) -> float:
        if self.firing_at is None:
            return 0.0
        return ((self.resolved_at or end) - self.firing_at).total_seconds()


@dataclass
class Backtest:
    episodes: list[Episode] = field(default_factory=list)
    # (at, from_state, to_state, value) for every change, in order.
    transitions: list[tuple[datetime, str, str, float | None]] = field(default_factory=list)
    evaluations: int = 0
    end: datetime | None = None

    @property
    def fired(self) -> list[Episode]:
        return [e for e in self.episodes if e.firing_at is not None]

    @property
    def notifications(self) -> int:
        """Firing and resolved messages (send_resolved on): what a receiver would have got."""
        return sum(1 for _, before, after, _ in self.transitions if after == FIRING or before == FIRING)

    @property
    def firing_s(self) -> float:
        end = self.end
        return sum(e.firing_s(end) for e in self.episodes) if end else 0.0

    def firing_at(self, at: datetime) -> bool:
        """Was it firing at `at` (right after the evaluation at `at`)."""
        state = INACTIVE
        for when, _, after, _ in self.transitions:
            if when > at:
                break
            state = after
        return state == FIRING


def backtest(
    points: Sequence[tuple[datetime, float | None]],
    *,
    comparator: str,
    threshold: float,
    for_s: float,
    keep_firing_for_s: float = 0.0,
    no_data: str = NO_DATA_RESOLVE,
    step_s: float | None = None,
    lookback_s: float = 300.0,
) -> Backtest:
    """What the rule would have done, evaluated at each point of a series (oldest first).

    With `step_s`, evaluations happen every `step_s` from the first point to the last, each
    seeing the newest point less than `lookback_s` old (Prometheus' lookback, 5 m; a rollup
    series passes its bucket width); without it, exactly once per point. A None value is no data (the no-data policy applies).
    """
    result = Backtest()
    cur = InstanceState()
    episode: Episode | None = None
    last_at: datetime | None = None
    for at, value in _evaluation_times(points, step_s, lookback_s):
        result.evaluations += 1
        out = evaluate(cur, value, at, comparator=comparator, threshold=threshold, for_s=for_s,
                       keep_firing_for_s=keep_firing_for_s, no_data=no_data, last_evaluated_at=last_at)
        last_at = at
        if out.transition is not None:
            before, after = out.transition
            result.transitions.append((at, before, after, value))
            if before == INACTIVE and after in (PENDING, FIRING):
                # With for 0 an alert goes inactive -> firing in one evaluation: it is still an episode.
                episode = Episode(pending_at=at, peak=value if has_value(value) else None)
                result.episodes.append(episode)
                if after == FIRING:
                    episode.firing_at = at
            elif after == FIRING and episode is not None:
                episode.firing_at = at
            elif after == INACTIVE and episode is not None:
                episode.resolved_at = at
                episode = None
        if episode is not None and has_value(value) and (
            episode.peak is None or _further(value, episode.peak, comparator)
        ):
            episode.peak = value
        cur = out.state
        result.end = at
    return result


def _further(value: float, than: float, comparator: str) -> bool:
    """Whether `value` breaches further than `than`: lower for < and <= (the fewest free
    connections is the worst of "available < 3"), higher otherwise."""
    return value < than if comparator in ("<", "<=") else value > than


def _evaluation_times(points: Sequence[tuple[datetime, float | None]], step_s: float | None, lookback_s: float):
    if not step_s:
        yield from points
        return
    if not points:
        return
    lookback, interval = timedelta(seconds=lookback_s), timedelta(seconds=step_s)
    at, end, i, newest = points[0][0], points[-1][0], 0, None
    while at <= end:
        while i < len(points) and points[i][0] <= at:
            newest = points[i]
            i += 1
        value = newest[1] if newest is not None and at - newest[0] < lookback else None
        yield at, value
        at += interval


# --- signals -------------------------------------------------------------------------


@dataclass(frozen=True)
class Signal:
    name: str
    label: str
    # What one instance is: a service, a database on a server (datname), or a server.
    scope: str  # service | database | server
    unit: str  # shown after values: "%", "s", "" (a count)


SERVICE, DATABASE, SERVER = "service", "database", "server"
SIGNALS: Mapping[str, Signal] = {
    s.name: s
    for s in (
        Signal("utilization", "pool utilization, worst pool (in use ÷ (max + overflow), %)", SERVICE, "%"),
        Signal("available", "free connections, fewest in one pool (max + overflow − in use)", SERVICE, ""),
        Signal("waiting", "callers waiting for a connection", SERVICE, ""),
        Signal("timeouts", "acquire timeouts per rate window", SERVICE, ""),
        Signal("acquire_s", "acquire time, worst pool (s)", SERVICE, "s"),
        Signal("hold_s", "hold time, worst pool (s)", SERVICE, "s"),
        Signal("stale_s", "seconds since the newest sample", SERVICE, "s"),
        Signal("finding", "open diagnosis finding of a kind (1 = open)", SERVICE, ""),
        Signal("idle_in_transaction_s", "oldest idle in transaction, per service (s)", SERVICE, "s"),
        Signal("query_s", "oldest running query, per service (s)", SERVICE, "s"),
        Signal("db_idle_in_transaction_s", "oldest idle in transaction, per database (s)", DATABASE, "s"),
        Signal("db_query_s", "oldest running query, per database (s)", DATABASE, "s"),
        Signal("budget", "server connection budget used (open ÷ usable, %)", SERVER, "%"),
    )
}
POOL_SIGNALS = ("utilization", "available", "waiting", "timeouts", "acquire_s", "hold_s", "stale_s")
# Taken from one pool (the worst) against its capacity (max + configured overflow).
CAPACITY_SIGNALS = ("utilization", "available")


def pool_capacity(values: Mapping[str, float | None], overflow: float = 0.0) -> float | None:
    """How many connections one pool may open: its reported max plus the service's configured
    overflow (SQLAlchemy reports pool_size as max and opens up to max_overflow more), or None
    when the max is absent, NaN or 0 (Go's "unlimited")."""
    limit = effective_max(values.get("max"))
    if limit is None or math.isnan(limit):
        return None
    return limit + max(0.0, overflow or 0.0)


def worst_pool(
    signal: str,
    pools: Iterable[tuple],
    now: datetime,
    stale_after_s: float,
    *,
    overflow: float = 0.0,
) -> tuple[float | None, object]:
    """(value, key of the pool that gives it) of a pool signal over one service's pools.

    `pools` are (values, sampled_at) or (values, sampled_at, key); the key (the live
    evaluation passes (instance, pool name)) comes back for utilization and available, the
    signals taken from one pool, so an alert can say which instance is exhausted.

    Only fresh pools count (a pool whose series vanished is absent, as in Prometheus after
    its lookback); absent fields are absent, never 0 (DESIGN §4).

    - utilization: the highest in_use ÷ capacity of any one pool (capacity = max + the
      service's configured overflow), over the pools that give both with max > 0 (max 0 means
      unlimited). Not the service total: one instance at 100 % among ten idle ones is 100 %
      here (its callers are failing) but ~10 % summed, and a saturation alert on the sum
      never fires. The overview's utilization column is the total (its status, the worst
      pool's); the service page's per-pool rows are what this signal takes the highest of.
    - available: the fewest free connections (capacity − in use) in any one pool, for the
      same reason: free slots on another instance serve none of this one's callers.
    - waiting, timeouts: added up over pools; acquire and hold time: the worst pool.
    """
    items = [(item[0], item[1], item[2] if len(item) > 2 else None) for item in pools]
    if signal == "stale_s":
        newest = [sampled for _, sampled, _ in items if sampled is not None]
        return ((now - max(newest)).total_seconds() if newest else None), None
    fresh = [(v, key) for v, sampled, key in items
             if sampled is not None and (now - sampled).total_seconds() <= stale_after_s]
    if signal in CAPACITY_SIGNALS:
        per_pool = []
        for v, key in fresh:
            in_use, capacity = v.get("in_use"), pool_capacity(v, overflow)
            if in_use is None or math.isnan(in_use) or capacity is None:
                continue
            value = 100.0 * in_use / capacity if signal == "utilization" else capacity - in_use
            per_pool.append((value, key))
        if not per_pool:
            return None, None
        # The first of equals wins: the caller's order (instance, pool name) makes it stable.
        pick = max if signal == "utilization" else min
        return pick(per_pool, key=lambda pair: pair[0])
    field_name = {"waiting": "pending"}.get(signal, signal)
    values = [v.get(field_name) for v, _ in fresh]
    values = [x for x in values if x is not None and not math.isnan(x)]
    if not values:
        return None, None
    return (max(values) if signal in ("acquire_s", "hold_s") else float(sum(values))), None


def pool_signal(
    signal: str,
    pools: Iterable[tuple],
    now: datetime,
    stale_after_s: float,
    *,
    overflow: float = 0.0,
) -> float | None:
    """One service's value of a pool signal from its pools' newest (values, sampled_at): `worst_pool`'s value."""
    return worst_pool(signal, pools, now, stale_after_s, overflow=overflow)[0]


def glob_matches(pattern: str, name: str) -> bool:
    """Shell-style glob (* ? [..]); blank matches everything. Case-sensitive."""
    return not pattern or fnmatchcase(name, pattern)


def glob_to_regex(pattern: str) -> str:
    """The same glob as an RE2 regex body (Prometheus anchors it): * -> .*, ? -> ., rest literal.

    Character classes are not translated: `[` is taken literally (validation refuses them
    for rules that are exported).
    """
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.sub(r"([.+*?()|\[\]{}^$\\])", r"\\\1", ch))
    return "".join(out)


# --- Prometheus export -----------------------------------------------------------------

# How each pool signal adds up over a service's pools, in PromQL (the same as pool_signal).
_EXPORT_AGGREGATION = {"waiting": ("sum", "pending"), "timeouts": ("sum", "timeouts"),
                       "acquire_s": ("max", "acquire_s"), "hold_s": ("max", "hold_s")}


def prometheus_expr(signal: str, preset, *, window: str, sel: str = "", overflow: float = 0.0) -> str | None:
    """The PromQL giving one series per service (label `service`) with the signal's value, or None.

    `preset` is a lib.presets.Preset (its templates render with `$sel` = the service matchers).
    Only signals the preset's own metrics give are exportable: the staleness, diagnosis and
    server-side signals are poolboard's (pg_stat_activity snapshots, findings).

    utilization and available are per pool first (the preset's series are one per pool), then
    the worst pool by service, as `worst_pool`. `overflow` (Service.pool_overflow, no metric
    gives it) is written into the expression as a constant: the exported file is right for the
    overflow configured when it was written.
    """
    if signal in CAPACITY_SIGNALS:
        per_pool = _prometheus_per_pool(signal, preset, window=window, sel=sel, overflow=overflow)
        if per_pool is None:
            return None
        return f"{'max' if signal == 'utilization' else 'min'} by (service) ({per_pool})"
    if signal in _EXPORT_AGGREGATION:
        how, name = _EXPORT_AGGREGATION[signal]
        inner = _prometheus_field(preset, name, window=window, sel=sel)
        return f"{how} by (service) ({inner})" if inner is not None else None
    return None


def _prometheus_field(preset, name: str, *, window: str, sel: str) -> str | None:
    if name not in preset.queries:
        return None
    query = preset.query(name, window=window, sel=sel)
    return f'label_replace({query}, "service", "$1", {promql.quote(preset.service_label)}, "(.*)")'


def _prometheus_per_pool(signal: str, preset, *, window: str, sel: str, overflow: float) -> str | None:
    """utilization or available of each pool (one series per pool, with a `service` label)."""
    in_use = _prometheus_field(preset, "in_use", window=window, sel=sel)
    limit = _prometheus_field(preset, "max", window=window, sel=sel)
    if in_use is None or limit is None:
        return None
    capacity = f"({limit} > 0)"
    if overflow:
        capacity = f"({capacity} + {format_threshold(overflow)})"
    return f"100 * {in_use} / {capacity}" if signal == "utilization" else f"{capacity} - {in_use}"


def prometheus_pool_lookups(signal: str, preset, *, window: str, sel: str = "", overflow: float = 0.0) -> dict[str, str]:
    """Annotation snippets for `{{ instance }}` and `{{ pool }}` of an exported rule ({} when none).

    The exported alert is one per service (its labels must not change when another instance
    becomes the worst), so the worst pool is looked up with Prometheus' `query` template
    function: the same per-pool expression, topk (bottomk for available) by service, picked
    for the alert's service. Between equal pools Prometheus picks any one (poolboard the first
    by instance name).
    """
    if signal not in CAPACITY_SIGNALS:
        return {}
    per_pool = _prometheus_per_pool(signal, preset, window=window, sel=sel, overflow=overflow)
    if per_pool is None or "`" in per_pool:
        return {}
    pick = "topk" if signal == "utilization" else "bottomk"

    def lookup(snippet: str) -> str:
        return (f"{{{{ range query `{pick} by (service) (1, {per_pool})` }}}}"
                f'{{{{ if eq (index .Labels "service") $labels.service }}}}{snippet}{{{{ end }}}}{{{{ end }}}}')

    if preset.instance_label == "instance":
        instance = '{{ or (index .Labels "exported_instance") (index .Labels "instance") }}'
    else:
        instance = f'{{{{ index .Labels "{preset.instance_label}" }}}}'
    if preset.pool_labels:
        pool = "/".join(f'{{{{ index .Labels "{label}" }}}}' for label in preset.pool_labels)
    else:
        pool = "default"
    return {"instance": lookup(instance), "pool": lookup(pool)}


def format_threshold(value: float) -> str:
    """A PromQL number literal for the threshold."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if value != int(value) else str(int(value))


def prometheus_template(text: str, threshold: float, lookups: Mapping[str, str] | None = None) -> str:
    """A poolboard template as a Prometheus annotation template ({{ $labels.x }}, {{ $value }}).

    `lookups`: what `{{ instance }}` and `{{ pool }}` become (`prometheus_pool_lookups`); without
    one they are empty, as in poolboard for signals that do not come from one pool.
    """

    def sub(match: re.Match) -> str:
        name = match.group(1)
        if name in ("instance", "pool"):
            return (lookups or {}).get(name, "")
        if name == "value":
            return "{{ $value }}"
        if name == "threshold":
            return format_threshold(threshold)
        if name == "rule":
            return "{{ $labels.alertname }}"
        return "{{ $labels." + name + " }}"

    return TEMPLATE_VAR_RE.sub(sub, text or "")


def prometheus_duration(seconds: int) -> str:
    if not seconds:
        return "0s"
    out, rest = [], int(seconds)
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out)
