"""Builders for the alert pages' tests (dashboard, API, browser): rules, instances, transitions."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from poolboard.alerts.models import AlertInstance, AlertRule, AlertTransition
from poolboard.lib.alerting import fingerprint


def rule(name="PoolSaturated", signal="utilization", threshold=90.0, for_s=300, severity="critical", **extra) -> AlertRule:
    """The rule `name` with these values, enabled (a default rule shipped by the migration is updated;
    whether it exists depends on whether an earlier test flushed the database)."""
    return AlertRule.objects.update_or_create(name=name, defaults={
        "enabled": True, "signal": signal, "threshold": threshold, "for_s": for_s, "severity": severity,
        "summary": "{{ service }} at {{ value }} %", **extra})[0]


def instance(r: AlertRule, service, state: str, *, minutes: float, value: float, fired_minutes: float | None = None,
             **labels) -> AlertInstance:
    """An instance of rule `r` for `service`, active for `minutes` (firing for `fired_minutes`)."""
    now = timezone.now()
    labels = r.instance_labels({"service": service.name, **labels})
    return AlertInstance.objects.create(
        rule=r, fingerprint=fingerprint(labels), labels=labels, state=state, value=value, service=service,
        active_since=now - timedelta(minutes=minutes),
        fired_at=now - timedelta(minutes=fired_minutes) if fired_minutes is not None else None,
        last_evaluated_at=now,
    )


def transition(i: AlertInstance, seq: int, minutes_ago: float, before: str, after: str, value: float) -> AlertTransition:
    return AlertTransition.objects.create(instance=i, rule=i.rule, seq=seq, at=timezone.now() - timedelta(minutes=minutes_ago),
                                          from_state=before, to_state=after, value=value)


def alert_fleet(make_service) -> dict:
    """search firing (utilization 100 % for 12 min), billing pending (waiting 3), checkout healthy."""
    search = make_service("search", instances=1, max=10, in_use=10, pending=4)
    billing = make_service("billing", instances=1, max=10, in_use=6)
    checkout = make_service("checkout", instances=1, max=10, in_use=2)
    saturated = rule()
    waiting = rule("PoolWaiting", signal="waiting", threshold=0, for_s=120, severity="warning")
    firing = instance(saturated, search, "firing", minutes=17, fired_minutes=12, value=100.0)
    pending = instance(waiting, billing, "pending", minutes=1, value=3.0)
    instance(waiting, checkout, "inactive", minutes=0, value=0.0)
    return {"search": search, "billing": billing, "checkout": checkout, "saturated": saturated, "waiting": waiting,
            "firing": firing, "pending": pending}
