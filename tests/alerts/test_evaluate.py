"""Evaluation on stored data: Prometheus semantics end to end, error versus no data, the DB clock."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import connection

from poolboard.alerts.evaluate import evaluate_rules
from poolboard.alerts.models import DATASOURCE_ALERTNAME, AlertInstance, AlertTransition, RuleOverride
from poolboard.fleet.models import PrometheusSource
from poolboard.lib.alerting import FIRING, INACTIVE, PENDING, fingerprint
from poolboard.notify.models import Notification

from .factories import T0, channel, fleet, only_these_rules, rule, sample, source, ticks

pytestmark = pytest.mark.django_db


@pytest.fixture
def hook():
    only_these_rules()
    return channel()


def states(r) -> dict[str, str]:
    return {i.labels.get("service") or i.labels.get("alertname"): i.state for i in AlertInstance.objects.filter(rule=r)}


def test_it_fires_after_for_and_sends_once_per_transition(hook) -> None:
    src = source()
    (svc,) = fleet(src, 1, in_use=10, max=10)
    saturated = rule(for_s=300, channels=[hook], summary="{{ service }} at {{ value }} % (> {{ threshold }})")
    for at in ticks(T0, 300):
        sample([svc], at)
        evaluate_rules(at)
        expected = FIRING if at >= T0 + timedelta(seconds=300) else PENDING
        assert states(saturated) == {svc.name: expected}
    sample([svc], T0 + timedelta(seconds=315), in_use=3)
    evaluate_rules(T0 + timedelta(seconds=315))
    assert states(saturated) == {svc.name: INACTIVE}
    sent = list(Notification.objects.order_by("id"))
    assert [n.payload["status"] for n in sent] == ["firing", "resolved"]
    instance = AlertInstance.objects.get(rule=saturated)
    labels = {"alertname": "PoolSaturated", "severity": "warning", "service": svc.name}
    assert instance.fingerprint == fingerprint(labels)
    assert [n.idempotency_key for n in sent] == [f"{instance.fingerprint}:2", f"{instance.fingerprint}:3"]
    assert sent[0].payload["annotations"]["summary"] == f"{svc.name} at 100 % (> 90)"
    assert [(t.from_state, t.to_state) for t in AlertTransition.objects.order_by("seq")] == [
        (INACTIVE, PENDING), (PENDING, FIRING), (FIRING, INACTIVE)
    ]


def test_pending_that_goes_away_sends_nothing(hook) -> None:
    src = source()
    (svc,) = fleet(src, 1, in_use=10, max=10)
    saturated = rule(for_s=300, channels=[hook])
    evaluate_rules(T0)
    sample([svc], T0 + timedelta(seconds=15), in_use=1)
    evaluate_rules(T0 + timedelta(seconds=15))
    assert states(saturated) == {svc.name: INACTIVE}
    assert AlertTransition.objects.count() == 2
    assert Notification.objects.count() == 0


def test_a_healthy_fleet_writes_no_instance_rows(hook) -> None:
    src = source()
    fleet(src, 20, in_use=1, max=10)
    rule(for_s=0, channels=[hook])
    evaluate_rules(T0)
    assert AlertInstance.objects.count() == 0


def test_prometheus_down_ten_minutes_resolves_nothing_then_one_datasource_alert(hook, settings) -> None:
    settings.ALERTS_DATASOURCE_FAILURES = 5
    src = source()
    (svc,) = fleet(src, 1, in_use=10, max=10)
    saturated = rule(for_s=0, channels=[hook])
    evaluate_rules(T0)
    assert states(saturated) == {svc.name: FIRING}
    # Prometheus stops answering: every tick fails, the pools keep their last (now old) values.
    down_at = T0 + timedelta(seconds=15)
    for at in ticks(down_at, 600):
        PrometheusSource.objects.filter(pk=src.pk).update(last_error_at=at, last_error="connection refused")
        evaluate_rules(at)
    assert AlertInstance.objects.get(rule=saturated, labels__service=svc.name).state == FIRING
    sent = [n.payload for n in Notification.objects.order_by("id")]
    assert [(p["labels"]["alertname"], p["status"]) for p in sent] == [
        ("PoolSaturated", "firing"), (DATASOURCE_ALERTNAME, "firing")
    ]
    assert "connection refused" in sent[1]["annotations"]["summary"]
    saturated.refresh_from_db()
    assert saturated.failing_evaluations == 41
    assert "source main has had no successful collection" in saturated.last_error
    # Back: the data source alert resolves, the pool alert goes on from its old state.
    back = down_at + timedelta(seconds=615)
    sample([svc], back, in_use=10)
    evaluate_rules(back)
    assert states(saturated) == {svc.name: FIRING, DATASOURCE_ALERTNAME: INACTIVE}
    assert Notification.objects.count() == 3


def test_no_data_resolves_by_default_and_keeps_when_asked(hook) -> None:
    src = source()
    resolving, keeping = fleet(src, 2, in_use=10, max=10)
    resolve_rule = rule("Resolves", for_s=0, service_glob=resolving.name, channels=[hook])
    keep_rule = rule("Keeps", for_s=0, service_glob=keeping.name, no_data="keep", channels=[hook])
    evaluate_rules(T0)
    # The source answers, but these services' series are gone (their pools stop being sampled).
    later = T0 + timedelta(minutes=5)
    PrometheusSource.objects.filter(pk=src.pk).update(last_success_at=later)
    evaluate_rules(later)
    assert states(resolve_rule) == {resolving.name: INACTIVE}
    assert states(keep_rule) == {keeping.name: FIRING}
    assert AlertTransition.objects.filter(rule=resolve_rule, to_state=INACTIVE).get().reason == "NoData"


def test_no_data_alert_policy_fires_on_missing_values(hook) -> None:
    src = source()
    (svc,) = fleet(src, 1, in_use=3)  # no max: utilization has no value
    blind = rule(for_s=0, no_data="alert")
    evaluate_rules(T0)
    assert states(blind) == {svc.name: FIRING}


def test_the_cardinality_cap_records_an_error_and_sends_nothing(hook) -> None:
    src = source()
    fleet(src, 5, in_use=10, max=10)
    capped = rule(for_s=0, max_instances=3, channels=[hook])
    evaluate_rules(T0)
    capped.refresh_from_db()
    assert capped.last_error.startswith("result exceeds limit (5 > 3 instances)")
    assert AlertInstance.objects.exclude(state=INACTIVE).count() == 0
    assert Notification.objects.count() == 0


def test_a_service_override_has_its_own_threshold(hook) -> None:
    src = source()
    web, batch = fleet(src, 2, in_use=19, max=20)  # 95 %
    saturated = rule(for_s=0)
    RuleOverride.objects.create(rule=saturated, service=batch, threshold=99)
    evaluate_rules(T0)
    assert states(saturated) == {web.name: FIRING}


def test_selectors_pick_services_by_glob_and_label(hook) -> None:
    src, other = source(), source("other")
    billing = fleet(src, 2, prefix="billing", in_use=10, max=10)
    fleet(src, 2, prefix="search", in_use=10, max=10)
    elsewhere = fleet(other, 1, prefix="billing-x", in_use=10, max=10)
    by_glob = rule("ByGlob", for_s=0, service_glob="billing-*")
    by_label = rule("ByLabel", for_s=0, service_glob="billing-*", service_labels={"source": "other"})
    evaluate_rules(T0)
    assert set(states(by_glob)) == {s.name for s in billing + elsewhere}
    assert set(states(by_label)) == {elsewhere[0].name}


def test_a_restart_keeps_active_since(hook) -> None:
    src = source()
    (svc,) = fleet(src, 1, in_use=10, max=10)
    saturated = rule(for_s=300)
    evaluate_rules(T0)
    # Another worker (or the same one restarted) evaluates next: evaluate_rules keeps nothing
    # in memory between calls, only the database carries the countdown.
    sample([svc], T0 + timedelta(seconds=300))
    evaluate_rules(T0 + timedelta(seconds=300))
    instance = AlertInstance.objects.get(rule=saturated)
    assert (instance.state, instance.active_since, instance.fired_at) == (FIRING, T0, T0 + timedelta(seconds=300))


def test_it_evaluates_on_the_database_clock_not_the_workers(hook) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        db_now = cursor.fetchone()[0]
    src = source(at=db_now)
    fleet(src, 1, at=db_now, in_use=10, max=10)
    saturated = rule(for_s=300)
    # This worker's clock is a day ahead: `for` must not count from it.
    with time_machine.travel(db_now + timedelta(days=1), tick=True):
        result = evaluate_rules()
    assert abs((result.now - db_now).total_seconds()) < 60
    instance = AlertInstance.objects.get(rule=saturated)
    assert instance.state == PENDING
    assert abs((instance.active_since - db_now).total_seconds()) < 60


def test_missed_evaluations_are_not_replayed(hook, settings) -> None:
    src = source()
    (svc,) = fleet(src, 1, in_use=10, max=10)
    rule(for_s=60, channels=[hook])
    evaluate_rules(T0)
    # Forty minutes without evaluations (a stopped beat), then one.
    later = T0 + timedelta(minutes=40)
    sample([svc], later)
    evaluate_rules(later)
    assert Notification.objects.count() == 1
    assert AlertTransition.objects.count() == 2
    # ... and counted: the ticks of those 40 minutes, less the one evaluated.
    saturated = AlertInstance.objects.get().rule
    assert saturated.evaluations_missed == 40 * 60 // settings.COLLECT_INTERVAL - 1


def test_a_service_leaving_the_selection_resolves(hook) -> None:
    src = source()
    (svc,) = fleet(src, 1, in_use=10, max=10)
    saturated = rule(for_s=0, channels=[hook])
    evaluate_rules(T0)
    saturated.service_glob = "nothing-*"
    saturated.save()
    sample([svc], T0 + timedelta(seconds=15))
    evaluate_rules(T0 + timedelta(seconds=15))
    assert states(saturated) == {svc.name: INACTIVE}
    assert [n.payload["status"] for n in Notification.objects.order_by("id")] == ["firing", "resolved"]


def test_a_service_whose_series_vanished_is_stale(hook) -> None:
    src = source()
    quiet, busy = fleet(src, 2, in_use=1, max=10)
    stale = rule("Stale", "stale_s", 120, for_s=0, channels=[hook])
    later = T0 + timedelta(minutes=3)
    sample([busy], later)  # the source answers; only `quiet` has no new sample
    evaluate_rules(later)
    assert states(stale) == {quiet.name: FIRING}
    assert AlertInstance.objects.get(rule=stale).value == 180


def test_a_disabled_rule_resolves_what_it_had_firing(hook) -> None:
    src = source()
    (svc,) = fleet(src, 1, in_use=10, max=10)
    saturated = rule(for_s=0, channels=[hook])
    evaluate_rules(T0)
    saturated.enabled = False
    saturated.save()
    evaluate_rules(T0 + timedelta(seconds=15))
    assert states(saturated) == {svc.name: INACTIVE}
    assert AlertTransition.objects.filter(to_state=INACTIVE).get().reason == "Paused"
    assert [n.payload["status"] for n in Notification.objects.order_by("id")] == ["firing", "resolved"]
    evaluate_rules(T0 + timedelta(seconds=30))
    assert Notification.objects.count() == 2


def test_a_disabled_channel_gets_no_outbox_row(hook) -> None:
    src = source()
    fleet(src, 1, in_use=10, max=10)
    off = channel("off")
    off.enabled = False
    off.save()
    rule(for_s=0, channels=[hook, off])
    evaluate_rules(T0)
    assert [n.channel.name for n in Notification.objects.all()] == ["hook"]
