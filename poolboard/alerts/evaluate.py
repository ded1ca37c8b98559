"""Evaluate every enabled rule once, at one timestamp: the database's clock.

For each rule (reliability.md §1.6):
1. its readings (signals.Tick: a fixed number of queries for the whole pass, whatever the
   fleet size), filtered by its selector;
2. a reading whose source failed or is stale changes nothing (error is not no data); the rule
   counts consecutive failing evaluations and, from ALERTS_DATASOURCE_FAILURES on, its one
   PoolboardDatasourceError instance fires (and resolves when the source is back);
3. more active instances than `max_instances`: an error on the rule, nothing changes, nothing
   is sent (Prometheus' rule `limit`);
4. every other reading goes through `poolboard.lib.alerting.evaluate` (the pure state
   machine the backtest uses too); an instance whose subject left the selection resolves;
5. each transition is applied by `transitions.apply` (compare-and-set + outbox, one
   transaction each); instances that only changed value are updated in one statement.

Missed evaluations are never replayed: this runs once per call, at `now`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction

from poolboard.lib import alerting

from . import transitions
from .models import DATASOURCE_ALERTNAME, AlertInstance, AlertRule
from .signals import Reading, Tick, selected

log = logging.getLogger(__name__)
_INACTIVE = alerting.InstanceState()


def datasource_failures() -> int:
    """Consecutive failing evaluations before a rule's PoolboardDatasourceError fires."""
    return max(1, int(getattr(settings, "ALERTS_DATASOURCE_FAILURES", 5)))


def missed_ticks(last: datetime | None, now: datetime) -> int:
    """Collection ticks between two evaluations that had none (Prometheus' IterationsMissed).

    They are not replayed: one evaluation after an outage, never one per missed tick (R1.5).
    Half a tick of slack absorbs a late worker.
    """
    if last is None:
        return 0
    interval = float(settings.COLLECT_INTERVAL)
    return max(0, int(((now - last).total_seconds() + interval / 2) // interval) - 1)


def db_now() -> datetime:
    """The database's clock: every worker evaluates on the same time line (reliability.md F15)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        return cursor.fetchone()[0]


@dataclass
class EvaluationResult:
    now: datetime
    rules: int = 0
    transitions: int = 0
    lost_races: int = 0
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class _Planned:
    """One instance the rule has an opinion about this evaluation."""

    fingerprint: str
    labels: dict
    reading: Reading | None
    step: alerting.Step
    row: AlertInstance | None
    threshold: float
    reason: str = ""


def evaluate_rules(now: datetime | None = None, *, strategy: str = transitions.CAS) -> EvaluationResult:
    now = now or db_now()
    result = EvaluationResult(now)
    _resolve_disabled(now, result, strategy)
    rules = list(AlertRule.objects.for_evaluation())
    if not rules:
        return result
    tick = Tick(now)
    rows = {
        (i.rule_id, i.fingerprint): i
        for i in AlertInstance.objects.filter(rule__in=rules).exclude(state=alerting.INACTIVE)
    }
    plans: list[tuple[AlertRule, list[_Planned]]] = []
    for rule in rules:
        result.rules += 1
        try:
            planned = _plan(rule, tick, rows, now)
        except Exception as exc:  # a broken loader or rule must not stop the other rules
            log.exception("alert rule %s could not be evaluated", rule.name)
            rule.last_error, rule.last_error_at = f"evaluation failed: {exc.__class__.__name__}: {exc}"[:1000], now
            planned = []
        rule.evaluations_missed += missed_ticks(rule.last_evaluated_at, now)
        rule.last_evaluated_at = now
        if rule.last_error:
            result.errors[rule.name] = rule.last_error
        plans.append((rule, planned))
    _ensure_rows(plans, now)
    value_updates = []
    for rule, planned in plans:
        channels = [c for c in rule.channels.all() if c.enabled]
        for p in planned:
            if p.step.transition is None:
                if p.row is not None and p.row.state != alerting.INACTIVE:
                    value_updates.append((p.row, p.step.state))
                continue
            try:
                seq = transitions.apply(_change(rule, p, now), rule, channels, strategy=strategy)
            except Exception as exc:  # rolled back (its own savepoint); the other transitions go on
                log.exception("alert transition of rule %s failed", rule.name)
                rule.last_error, rule.last_error_at = f"transition failed: {exc.__class__.__name__}: {exc}"[:1000], now
                continue
            if seq is None:
                result.lost_races += 1
            else:
                result.transitions += 1
    _update_values(value_updates, now)
    _update_rules([rule for rule, _ in plans])
    return result


def _update_rules(rules: list[AlertRule]) -> None:
    """Every rule's health in one statement (bulk_update's CASE per field is slower at 50 rules)."""
    table = AlertRule._meta.db_table
    values_sql = ", ".join(
        ["(%s::bigint, %s::timestamptz, %s::text, %s::timestamptz, %s::integer, %s::integer)"] * len(rules))
    params: list = []
    for rule in rules:
        params += [rule.pk, rule.last_evaluated_at, rule.last_error, rule.last_error_at, rule.failing_evaluations,
                   rule.evaluations_missed]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS r SET last_evaluated_at = v.at, last_error = v.error, last_error_at = v.error_at, "
            "failing_evaluations = v.failing, evaluations_missed = v.missed "
            f"FROM (VALUES {values_sql}) AS v(id, at, error, error_at, failing, missed) WHERE r.id = v.id",
            params,
        )


def _resolve_disabled(now: datetime, result: EvaluationResult, strategy: str) -> None:
    """A rule switched off resolves what it had firing (and drops what was pending), as
    Prometheus does when a rule is removed: nothing stays 'firing' that nobody evaluates."""
    # A switched-off rule is not evaluated, so its pause is no missed evaluation when it comes back.
    AlertRule.objects.filter(enabled=False).exclude(last_evaluated_at=None).update(last_evaluated_at=None)
    rows = list(AlertInstance.objects.active().filter(rule__enabled=False).select_related("rule"))
    for row in rows:
        step = alerting.step(row.lib_state(), False, None, now, for_s=row.rule.for_s)
        planned = _Planned(row.fingerprint, row.labels, None, step, row, row.rule.threshold, "Paused")
        channels = [c for c in row.rule.channels.all() if c.enabled]
        if transitions.apply(_change(row.rule, planned, now), row.rule, channels, strategy=strategy) is None:
            result.lost_races += 1
        else:
            result.transitions += 1


def _subject(identity: dict) -> tuple:
    return (identity.get("service", ""), identity.get("server", ""), identity.get("database", ""))


def _plan(rule: AlertRule, tick: Tick, rows: dict, now: datetime) -> list[_Planned]:
    readings = selected(rule, tick.readings(rule.signal, rule.finding_kind))
    overrides = {o.service_id: o.threshold for o in rule.overrides.all()}
    # This rule's instances that are not inactive, by subject: most readings have none, and
    # those need no fingerprint unless their condition holds.
    mine = {_subject(row.labels): row for (rule_id, _), row in rows.items()
            if rule_id == rule.pk and row.labels.get("alertname") != DATASOURCE_ALERTNAME}
    failing = [r for r in readings if r.error]
    planned: list[_Planned] = []
    seen: set[tuple] = set()
    for reading in readings:
        subject = _subject(reading.identity)
        seen.add(subject)
        if reading.error:
            continue  # error is not no data: this instance stays exactly as it is
        row = mine.get(subject)
        threshold = rule.threshold_for(reading.service_id, overrides)
        if row is None and not _could_activate(rule, reading.value, threshold):
            continue  # inactive and staying so: the common case, kept cheap
        prev = row.lib_state() if row is not None else _INACTIVE
        step = alerting.evaluate(
            prev, reading.value, now, comparator=rule.comparator, threshold=threshold, for_s=rule.for_s,
            keep_firing_for_s=rule.keep_firing_for_s, no_data=rule.no_data, last_evaluated_at=rule.last_evaluated_at,
        )
        if step.transition is None and row is None:
            continue
        labels = rule.instance_labels(reading.identity)
        reason = "NoData" if not alerting.has_value(reading.value) else ""
        planned.append(_Planned(alerting.fingerprint(labels), labels, reading, step, row, threshold, reason))
    # Instances whose subject is no longer selected (service deleted, selector edited): resolve.
    for subject, row in mine.items():
        if subject in seen:
            continue
        step = alerting.step(row.lib_state(), False, None, now, for_s=rule.for_s, keep_firing_for_s=0)
        planned.append(_Planned(row.fingerprint, row.labels, None, step, row, rule.threshold, "MissingSeries"))

    active = sum(1 for p in planned if p.step.state.state != alerting.INACTIVE)
    if active > rule.max_instances:
        rule.last_error = (f"result exceeds limit ({active} > {rule.max_instances} instances): nothing was changed "
                           "or sent; narrow the selector or raise max instances")
        rule.last_error_at = now
        planned = []
    elif failing:
        names = sorted({r.error for r in failing})
        rule.last_error = f"{len(failing)} of {len(readings)} selected had no fresh data: {'; '.join(names[:3])}"[:1000]
        rule.last_error_at = now
    else:
        rule.last_error = ""
    rule.failing_evaluations = rule.failing_evaluations + 1 if failing else 0
    planned += _datasource_plan(rule, rows, now, failing)
    return planned


def _could_activate(rule: AlertRule, value: float | None, threshold: float) -> bool:
    if alerting.has_value(value):
        return alerting.compare(value, rule.comparator, threshold)
    return rule.no_data == alerting.NO_DATA_ALERT


def _datasource_plan(rule: AlertRule, rows: dict, now: datetime, failing: list[Reading]) -> list[_Planned]:
    """The rule's one 'data source failing' instance: fires after N consecutive failing evaluations."""
    labels = rule.datasource_labels()
    fp = alerting.fingerprint(labels)
    row = rows.get((rule.pk, fp))
    active = rule.failing_evaluations >= datasource_failures()
    if row is None and not active:
        return []
    prev = row.lib_state() if row is not None else alerting.InstanceState()
    step = alerting.step(prev, active, float(rule.failing_evaluations), now, for_s=0)
    reading = Reading({"rule": rule.name}, float(rule.failing_evaluations), "; ".join(sorted({r.error for r in failing}))[:300])
    return [_Planned(fp, labels, reading, step, row, float(datasource_failures()), "Error")]


def _ensure_rows(plans, now: datetime) -> None:
    """Rows for instances about to leave inactive: INSERT ... ON CONFLICT DO NOTHING, then one read."""
    missing = [(rule, p) for rule, planned in plans for p in planned if p.row is None]
    if not missing:
        return
    AlertInstance.objects.bulk_create(
        [
            AlertInstance(
                rule=rule, fingerprint=p.fingerprint, labels=p.labels,
                service_id=p.reading.service_id if p.reading else None,
                server_id=p.reading.server_id if p.reading else None,
                datname=p.reading.datname if p.reading else "",
            )
            for rule, p in missing
        ],
        ignore_conflicts=True,
    )
    found = {
        (i.rule_id, i.fingerprint): i
        for i in AlertInstance.objects.filter(
            rule__in={rule.pk for rule, _ in missing}, fingerprint__in={p.fingerprint for _, p in missing}
        )
    }
    for rule, p in missing:
        p.row = found.get((rule.pk, p.fingerprint))


def _change(rule: AlertRule, p: _Planned, now: datetime) -> transitions.Change:
    row = p.row
    variables = {
        "service": p.labels.get("service", ""), "database": p.labels.get("database", ""),
        "server": p.labels.get("server", ""), "value": p.step.state.value, "threshold": p.threshold,
        "rule": rule.name, "severity": p.labels.get("severity", rule.severity),
        # utilization and available come from one pool (the worst): which one, for the message.
        # Not labels: the worst instance changes, the alert's identity (its service) must not.
        "instance": p.reading.pool.get("instance", "") if p.reading else "",
        "pool": p.reading.pool.get("pool", "") if p.reading else "",
    }
    if p.labels.get("alertname") == DATASOURCE_ALERTNAME:
        summary = (f"The data for rule {rule.name} has failed for {rule.failing_evaluations} evaluations"
                   + (f": {p.reading.error}" if p.reading and p.reading.error else ""))
        description = "Its alerts keep their state until the data is fresh again."
    else:
        summary = alerting.render_template(rule.summary, variables) or _default_summary(rule, variables)
        description = alerting.render_template(rule.description, variables)
    return transitions.Change(
        instance_id=row.pk, fingerprint=p.fingerprint, labels=p.labels, expected_state=row.state,
        expected_version=row.version, new=p.step.state, at=now, summary=summary, description=description,
        reason=p.reason, generator_url=f"/alerts/rules/{rule.pk}/",
    )


def _default_summary(rule: AlertRule, variables: dict) -> str:
    info = rule.signal_info
    subject = variables["service"] or (
        f"{variables['database']} on {variables['server']}" if variables["database"] else variables["server"])
    unit = info.unit if info else ""
    where = f" (instance {variables['instance']}, pool {variables['pool']})" if variables["instance"] else ""
    return (f"{subject}: {info.label if info else rule.signal} {alerting.format_value(variables['value'])}{unit} "
            f"{rule.comparator} {alerting.format_value(float(variables['threshold']))}{unit}{where}")


def _update_values(updates: list[tuple[AlertInstance, alerting.InstanceState]], now: datetime) -> None:
    """Active instances whose state did not change: value, keep_firing_since, active_since — one statement.

    Guarded by version: an instance another evaluator has just moved is left to it.
    """
    if not updates:
        return
    table = AlertInstance._meta.db_table
    values_sql = ", ".join(["(%s::bigint, %s::integer, %s::double precision, %s::timestamptz, %s::timestamptz)"] * len(updates))
    params: list = []
    for row, state in updates:
        params += [row.pk, row.version, transitions._finite(state.value), state.keep_firing_since, state.active_since]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS i SET value = v.value, keep_firing_since = v.kfs, active_since = v.since, "
            f"last_evaluated_at = %s FROM (VALUES {values_sql}) AS v(id, version, value, kfs, since) "
            "WHERE i.id = v.id AND i.version = v.version",
            [now, *params],
        )
