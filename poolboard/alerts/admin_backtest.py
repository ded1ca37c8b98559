"""The backtest on an alert rule's admin page: what the rule would have done over the last days.

It replays the stored pool samples of every service the rule selects through the SAME pure
evaluator as the live evaluation (`poolboard.lib.alerting.backtest`, which calls `evaluate`
and `step`), one evaluation per collection tick as live does (longer ranges: one a minute,
each seeing the newest sample, as Prometheus with a 1 m evaluation interval). The result is
when it would have gone pending, fired and resolved, how many notifications a receiver would
have got, and the total firing time, drawn over the signal with the threshold line.

An unsaved edit is previewed too: the change form sends its threshold, comparator, `for` and
`keep_firing_for` fields (htmx, on change) and the backtest runs with those instead of the
saved ones. Nothing is written.

Hooked into the rule's ModelAdmin by `BacktestMixin` (poolboard/alerts/admin.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from poolboard.alerts.signals import Tick
from poolboard.fleet.models import stale_after
from poolboard.history.rollup import RES_5M
from poolboard.lib import alerting, promql
from poolboard.lib.alerting import COMPARATORS, NO_DATA_POLICIES, Backtest, backtest
from poolboard.lib.pools import FIELDS

# The ranges a backtest may cover (raw samples are kept RAW_RETENTION days, 14 by default).
RANGES = {"6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}
DEFAULT_RANGE = "7d"
# Up to a day, one evaluation per collection tick, as live; beyond, one a minute
# (10 080 evaluations a series over 7 days, the cap Grafana's preview uses).
TICK_RANGE_S = 86400
LONG_STEP_S = 60
# Services backtested in one run, and series drawn on the chart (the most firing first).
MAX_SERIES = 25
CHART_SERIES = 6
CHART_POINTS = 1500
# The `for` values the sweep tries besides the rule's own (Prometheus#15545).
FOR_SWEEP_S = (0, 60, 300, 900)

# Raw pool samples of the selected services, oldest first; for ranges past a day the newest
# sample of each pool in each minute (what an evaluation once a minute would have seen).
SAMPLES_SQL = """
SELECT p.service_id, s.pool_id, s.ts, {sample_fields}
FROM fleet_poolsample s JOIN fleet_pool p ON p.id = s.pool_id
WHERE p.service_id = ANY(%(services)s) AND s.ts > %(start)s AND s.ts <= %(end)s
ORDER BY s.ts
"""
SAMPLES_PER_STEP_SQL = """
SELECT service_id, pool_id, ts, {fields} FROM (
    SELECT DISTINCT ON (s.pool_id, date_bin(make_interval(secs => %(step)s), s.ts, TIMESTAMPTZ 'epoch'))
           p.service_id, s.pool_id, s.ts, {sample_fields}
    FROM fleet_poolsample s JOIN fleet_pool p ON p.id = s.pool_id
    WHERE p.service_id = ANY(%(services)s) AND s.ts > %(start)s AND s.ts <= %(end)s
    ORDER BY s.pool_id, date_bin(make_interval(secs => %(step)s), s.ts, TIMESTAMPTZ 'epoch'), s.ts DESC
) AS newest ORDER BY ts
"""
# Before the first raw sample in the range (raw samples are kept RAW_RETENTION days; a fresh
# install or the demo's made-up weeks have only rollups): the 5-minute rollups that ended by
# then, one evaluation per bucket at its end. A bucket's in use and waiting are taken on the
# side that breaches (its max for > and >=, its min for < and <=; the average when the rollup
# has no extreme): some tick in the bucket saw that value, and the replay must not smooth a
# breach away. Times are averages only.
ROLLUP_SQL = """
SELECT p.service_id, r.pool_id, r.bucket + make_interval(secs => %(width)s) AS at,
       r.max_avg, coalesce(r.in_use_{in_use}, r.in_use_avg), coalesce(r.pending_{pending}, r.pending_avg),
       coalesce(r.timeouts_max, r.timeouts), r.acquire_s_avg, r.hold_s_avg
FROM {table} r JOIN fleet_pool p ON p.id = r.pool_id
WHERE p.service_id = ANY(%(services)s) AND r.bucket >= %(start)s
  AND r.bucket + make_interval(secs => %(width)s) <= %(until)s
ORDER BY at
"""
ROLLUP_FIELDS = ("max", "in_use", "pending", "timeouts", "acquire_s", "hold_s")
FIRST_RAW_SQL = """
SELECT min(s.ts) FROM fleet_poolsample s JOIN fleet_pool p ON p.id = s.pool_id
WHERE p.service_id = ANY(%(services)s) AND s.ts > %(start)s AND s.ts <= %(end)s
"""
# Signals the backtest can replay from stored data (stale_s is about the collection itself).
POOL_REPLAYED = tuple(s for s in alerting.POOL_SIGNALS if s != "stale_s")
# Per-service signals read from stored intervals (a finding open from .. to, an episode from
# first seen to ended), evaluated at the same ticks as the pool signals.
INTERVAL_REPLAYED = ("finding", "idle_in_transaction_s", "query_s")
REPLAYED = POOL_REPLAYED + INTERVAL_REPLAYED


@dataclass(frozen=True)
class Params:
    """What the backtest evaluates with: the rule's saved values, or an unsaved edit's."""

    comparator: str
    threshold: float
    for_s: float
    keep_firing_for_s: float
    no_data: str
    range_key: str = DEFAULT_RANGE
    edited: tuple[str, ...] = ()  # names that differ from the saved rule

    @property
    def range_s(self) -> int:
        return RANGES[self.range_key]


@dataclass
class SeriesResult:
    service: object  # poolboard.alerts.signals.ServiceRow: id, name, labels
    threshold: float
    points: list[tuple[datetime, float | None]]
    result: Backtest

    @property
    def firing_s(self) -> float:
        return self.result.firing_s


@dataclass
class Run:
    params: Params
    start: datetime
    end: datetime
    signal: str
    series: list[SeriesResult] = field(default_factory=list)
    matched: int = 0
    error: str = ""
    sweep: list[tuple[float, int, int]] = field(default_factory=list)  # (for_s, fired, notifications)
    first_raw: datetime | None = None  # before it, the replay ran on 5-minute rollups

    @property
    def from_rollups(self) -> bool:
        return self.first_raw is not None and any(s.points and s.points[0][0] < self.first_raw for s in self.series)

    @cached_property
    def episodes(self) -> list[dict]:
        """Every episode of every series, oldest first: {series, episode, firing_s}."""
        rows = [
            {"series": s, "episode": e, "firing_s": e.firing_s(self.end)} for s in self.series for e in s.result.episodes
        ]
        return sorted(rows, key=lambda row: row["episode"].pending_at)

    @cached_property
    def fired_rows(self) -> list[dict]:
        return [row for row in self.episodes if row["episode"].firing_at is not None]

    @cached_property
    def pending_rows(self) -> list[dict]:
        return [row for row in self.episodes if row["episode"].firing_at is None]

    @property
    def fired(self) -> int:
        return sum(len(s.result.fired) for s in self.series)

    @property
    def notifications(self) -> int:
        return sum(s.result.notifications for s in self.series)

    @property
    def firing_s(self) -> float:
        return sum(s.firing_s for s in self.series)

    @property
    def evaluations(self) -> int:
        return sum(s.result.evaluations for s in self.series)

    @property
    def has_data(self) -> bool:
        return any(v is not None for s in self.series for _, v in s.points)


def rollup_sides(signal: str, comparator: str) -> dict[str, str]:
    """Which extreme of a bucket's in use and waiting breaches `signal comparator threshold`."""
    high = comparator in (">", ">=")
    if comparator in ("==", "!="):
        return {"in_use": "avg", "pending": "avg"}
    # Fewer connections are available when more are in use.
    in_use_high = high if signal != "available" else not high
    return {"in_use": "max" if in_use_high else "min", "pending": "max" if high else "min"}


def pool_signal_points(signal: str, service_ids: list[int], start: datetime, end: datetime,
                       step_s: int | None, comparator: str = ">", overflows: dict[int, float] | None = None,
                       ) -> tuple[dict[int, list[tuple[datetime, float | None]]], datetime]:
    """({service_id: [(at, value), ...]}, the first raw sample's time): the signal at each stored tick, computed by the live
    evaluation's own `alerting.pool_signal` from every pool's newest values at that tick.

    A tick is a moment with a sample of any of the services: every service is evaluated
    then, so one whose pools stopped reporting while the others did goes stale and then
    has no data (the rule's no-data policy applies), as live. Before the first raw sample
    the ticks are the 5-minute rollups' bucket ends. A stretch with no stored data at all
    longer than the outage tolerance (1 h: poolboard was not running, or not yet) ends with
    one no-data evaluation, so an alert active when the data stopped is not counted as
    firing across days of nothing.

    `overflows`: each service's configured pool overflow (Service.pool_overflow), added to
    every pool's max for utilization and available as live does; the rollups keep the max,
    so replayed rollups get the same capacity.
    """
    overflows = overflows or {}
    params = {"services": service_ids, "start": start, "end": end, "step": step_s}
    with connection.cursor() as cursor:
        cursor.execute(FIRST_RAW_SQL, params)
        first_raw = cursor.fetchone()[0] or end
        cursor.execute(ROLLUP_SQL.format(table=RES_5M.table, **rollup_sides(signal, comparator)),
                       {**params, "until": first_raw, "width": RES_5M.width_s})
        ticks = [(service_id, pool_id, at, dict(zip(ROLLUP_FIELDS, values)), RES_5M.width_s)
                 for service_id, pool_id, at, *values in cursor.fetchall()]
        sql = (SAMPLES_SQL if step_s is None else SAMPLES_PER_STEP_SQL).format(
            fields=", ".join(FIELDS), sample_fields=", ".join(f"s.{f}" for f in FIELDS))
        cursor.execute(sql, params)
        stale_s = stale_after().total_seconds()
        ticks += [(service_id, pool_id, ts, dict(zip(FIELDS, values)), stale_s)
                  for service_id, pool_id, ts, *values in cursor.fetchall()]
    ticks.sort(key=lambda tick: tick[2])  # stable: the rollups' and the samples' order kept within a moment
    points: dict[int, list] = {pk: [] for pk in service_ids}
    newest: dict[int, dict[int, tuple[dict, datetime]]] = {pk: {} for pk in service_ids}
    previous: tuple[datetime, float] | None = None  # the last tick, and how long its data stays fresh
    for i, (service_id, pool_id, at, values, fresh_s) in enumerate(ticks):
        if previous is not None and (at - previous[0]).total_seconds() > alerting.OUTAGE_TOLERANCE_S:
            for sid in service_ids:
                points[sid].append((previous[0] + timedelta(seconds=previous[1]), None))
        previous = (at, fresh_s)
        newest[service_id][pool_id] = (values, at)
        if i + 1 < len(ticks) and ticks[i + 1][2] == at:
            continue  # more pools of this tick to come
        for sid in service_ids:
            points[sid].append((at, alerting.pool_signal(signal, newest[sid].values(), at, fresh_s,
                                                          overflow=overflows.get(sid, 0))))
    return points, first_raw


def interval_signal_points(rule, ticks: dict[int, list[tuple[datetime, float | None]]], start: datetime,
                           end: datetime) -> dict[int, list[tuple[datetime, float]]]:
    """The finding and age signals at the pool signals' ticks, from what was stored of them:
    1 while a finding of the rule's kind was open (opened_at .. closed_at), else 0; the age of
    the service's oldest idle-in-transaction or long-query episode seen by then and not yet
    ended (now - started, as live computes it), else 0."""
    from django.db.models import Q

    from poolboard.databases.models import Episode
    from poolboard.diagnosis.models import Finding
    from poolboard.lib.episodes import IDLE_IN_TRANSACTION, LONG_QUERY

    spans: dict[int, list[tuple[datetime, datetime | None, datetime]]] = {pk: [] for pk in ticks}
    if rule.signal == "finding":
        rows = (Finding.objects.filter(service_id__in=list(ticks), kind=rule.finding_kind, opened_at__lte=end)
                .filter(Q(closed_at__isnull=True) | Q(closed_at__gt=start))
                .values_list("service_id", "opened_at", "closed_at", "opened_at"))
    else:
        kind = IDLE_IN_TRANSACTION if rule.signal == "idle_in_transaction_s" else LONG_QUERY
        rows = (Episode.objects.filter(service_id__in=list(ticks), kind=kind, first_seen__lte=end)
                .filter(Q(ended__isnull=True) | Q(ended__gt=start))
                .values_list("service_id", "first_seen", "ended", "started"))
    for service_id, since, until, started in rows:
        spans[service_id].append((since, until, started))

    def value(service_id: int, at: datetime) -> float:
        open_at = [started for since, until, started in spans[service_id] if since <= at and (until is None or until > at)]
        if rule.signal == "finding":
            return 1.0 if open_at else 0.0
        return max(((at - started).total_seconds() for started in open_at), default=0.0)

    return {service_id: [(at, value(service_id, at)) for at, _ in series] for service_id, series in ticks.items()}


def run_backtest(rule, params: Params, now: datetime) -> Run:
    """Replay `rule` (with `params` instead of its saved condition) over the range ending `now`."""
    start = now - timedelta(seconds=params.range_s)
    run = Run(params=params, start=start, end=now, signal=rule.signal)
    if rule.signal not in REPLAYED:
        run.error = (
            f"The backtest replays {', '.join(REPLAYED)} from the stored samples, episodes and findings; "
            f"{rule.get_signal_display()} is not replayed (yet): its real state history is on the rule's page."
        )
        return run
    services = matched_services(rule, now)
    run.matched = len(services)
    services = services[:MAX_SERIES]
    overrides = {o.service_id: o.threshold for o in rule.overrides.all()}
    step_s = None if params.range_s <= TICK_RANGE_S else LONG_STEP_S
    service_ids = [s.id for s in services]
    points, run.first_raw = pool_signal_points(rule.signal if rule.signal in POOL_REPLAYED else "waiting", service_ids,
                                               start, now, step_s, params.comparator,
                                               overflows={s.id: s.overflow for s in services})
    if rule.signal in INTERVAL_REPLAYED:
        points = interval_signal_points(rule, points, start, now)
    for service in services:
        threshold = overrides.get(service.id, params.threshold)
        series = points[service.id]
        result = backtest(series, comparator=params.comparator, threshold=threshold, for_s=params.for_s,
                          keep_firing_for_s=params.keep_firing_for_s, no_data=params.no_data)
        if series:
            result.end = now  # an episode still open at the end counts its firing time up to now
        run.series.append(SeriesResult(service=service, threshold=threshold, points=series, result=result))
    for for_s in sorted(set(FOR_SWEEP_S) | {params.for_s}):
        results = [
            s.result if for_s == params.for_s else backtest(
                s.points, comparator=params.comparator, threshold=s.threshold, for_s=for_s,
                keep_firing_for_s=params.keep_firing_for_s, no_data=params.no_data)
            for s in run.series
        ]
        run.sweep.append((for_s, sum(len(r.fired) for r in results), sum(r.notifications for r in results)))
    return run


def matched_services(rule, now: datetime) -> list:
    """The services the rule selects, by name: the live evaluation's selector on its service rows."""
    rows = [r for r in Tick(now).services()
            if alerting.glob_matches(rule.service_glob, r.name)
            and all(r.labels.get(k) == v for k, v in (rule.service_labels or {}).items())]
    return sorted(rows, key=lambda r: r.name)


def chart_data(run: Run) -> dict:
    """What static/js/alerts-backtest.js draws: the charted series on one time grid (the
    worst value of each chart bucket, so a breach never disappears), the threshold, and the
    pending/firing spans as bands."""
    charted = sorted(run.series, key=lambda s: (-s.firing_s, -len(s.result.episodes), s.service.name))
    charted = [s for s in charted if any(v is not None for _, v in s.points)][:CHART_SERIES]
    # A history shorter than the range (a new install, the demo) fills the chart from its first sample.
    first = min((s.points[0][0] for s in charted), default=run.start)
    start = max(run.start, first).timestamp()
    range_s = run.end.timestamp() - start
    # Never finer than the evaluations (one a tick, or one a minute): a point per bucket, so lines join.
    evaluation_s = settings.COLLECT_INTERVAL if run.params.range_s <= TICK_RANGE_S else LONG_STEP_S
    if run.from_rollups:
        evaluation_s = RES_5M.width_s
    step = max(evaluation_s, math.ceil(range_s / CHART_POINTS))
    start -= start % step
    n = max(1, math.ceil((run.end.timestamp() - start) / step))
    worse = max if run.params.comparator in (">", ">=", "==", "!=") else min
    x = [int(start + i * step) for i in range(n)]
    series = []
    for s in charted:
        values: list[float | None] = [None] * n
        for at, value in s.points:
            if value is None:
                continue
            i = min(n - 1, max(0, int((at.timestamp() - start) // step)))
            values[i] = value if values[i] is None else worse(values[i], value)
        series.append({"label": s.service.name, "values": values})
    bands = []
    end = run.end.timestamp()
    for s in charted:
        for e in s.result.episodes:
            pending_end = (e.firing_at or e.resolved_at or run.end).timestamp()
            bands.append({"start": e.pending_at.timestamp(), "end": pending_end, "state": "pending", "label": s.service.name})
            if e.firing_at:
                stop = e.resolved_at.timestamp() if e.resolved_at else end
                bands.append({"start": e.firing_at.timestamp(), "end": stop, "state": "firing", "label": s.service.name})
    return {
        "x": x,
        "series": series,
        "threshold": run.params.threshold,
        "comparator": run.params.comparator,
        "unit": alerting.SIGNALS[run.signal].unit,
        "bands": bands,
    }


class ParamError(ValueError):
    pass


def seconds(text: str, name: str) -> float:
    """'300', '300.5' or a Prometheus duration ('5m', '1h30m') -> seconds, >= 0."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            value = promql.duration_seconds(text)
        except ValueError:
            raise ParamError(f"{name}: {text!r} is neither seconds nor a duration such as 5m or 1h30m") from None
    if not math.isfinite(value) or value < 0:
        raise ParamError(f"{name}: give a duration of 0 or more, not {text!r}")
    return value


def params_from(rule, query) -> Params:
    """The saved rule's condition, with whatever the (unsaved) form sends instead.

    Raises ParamError with a message that names the field.
    """
    saved = {
        "comparator": rule.comparator,
        "threshold": float(rule.threshold),
        "for_s": float(rule.for_s or 0),
        "keep_firing_for_s": float(rule.keep_firing_for_s or 0),
        "no_data": rule.no_data,
    }
    values = dict(saved)
    text = query.get("comparator", "").strip()
    if text:
        if text not in COMPARATORS:
            raise ParamError(f"comparator: {text!r} is not one of {' '.join(COMPARATORS)}")
        values["comparator"] = text
    text = query.get("threshold", "").strip()
    if text:
        try:
            values["threshold"] = float(text)
        except ValueError:
            raise ParamError(f"threshold: {text!r} is not a number") from None
        if not math.isfinite(values["threshold"]):
            raise ParamError(f"threshold: {text!r} is not a finite number")
    for name, label in (("for_s", "for"), ("keep_firing_for_s", "keep firing for")):
        text = query.get(name, "").strip()
        if text:
            values[name] = seconds(text, label)
    text = query.get("no_data", "").strip()
    if text:
        if text not in NO_DATA_POLICIES:
            raise ParamError(f"no data: {text!r} is not one of {', '.join(NO_DATA_POLICIES)}")
        values["no_data"] = text
    range_key = query.get("range", DEFAULT_RANGE)
    if range_key not in RANGES:
        raise ParamError(f"range: {range_key!r} is not one of {', '.join(RANGES)}")
    edited = tuple(name for name in saved if values[name] != saved[name])
    return Params(range_key=range_key, edited=edited, **values)


class BacktestMixin:
    """Adds /admin/alerts/alertrule/<pk>/backtest/ and the backtest panel on the change form."""

    change_form_template = "alerts/admin_change_form.html"

    def get_urls(self):
        own = [
            path(
                "<int:pk>/backtest/",
                self.admin_site.admin_view(self.backtest_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_backtest",
            )
        ]
        return own + super().get_urls()

    def backtest_view(self, request, pk: int):
        """The backtest of one rule: the whole admin page, or (htmx) the panel alone."""
        rule = get_object_or_404(self.model, pk=pk)
        if not self.has_view_permission(request, rule):
            raise PermissionDenied
        now = timezone.now()
        try:
            params = params_from(rule, request.GET)
            run = run_backtest(rule, params, now)
            error = run.error
        except ParamError as exc:
            params, run, error = None, None, str(exc)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "rule": rule,
            "params": params,
            "run": run,
            "error": error,
            "chart": chart_data(run) if run and not run.error else None,
            "ranges": list(RANGES),
            "comparators": list(COMPARATORS),
            "title": f"Backtest of {rule.name}",
            "now": now,
        }
        panel_only = request.headers.get("HX-Request") == "true"
        template = "alerts/_backtest.html" if panel_only else "alerts/backtest.html"
        return TemplateResponse(request, template, context)

