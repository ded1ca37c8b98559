"""The database-side and diagnosis signals, read from stored snapshots, episodes and findings."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

from poolboard.alerts.evaluate import evaluate_rules
from poolboard.alerts.models import AlertInstance, AlertRule
from poolboard.databases.models import Episode, MonitoredServer, ServerDatabase, SessionCount, Snapshot
from poolboard.diagnosis.models import Finding
from poolboard.lib.alerting import FIRING
from poolboard.lib.episodes import IDLE_IN_TRANSACTION, LONG_QUERY

from .factories import T0, fleet, only_these_rules, rule, sample, source

pytestmark = pytest.mark.django_db


def server(name: str = "orders", at=T0, **fields) -> MonitoredServer:
    return MonitoredServer.objects.create(name=name, host=f"{name}.internal", last_snapshot_at=at, **fields)


def episode(srv, kind: str, age_s: float, *, service=None, datname: str = "orders", pid: int = 100) -> Episode:
    started = T0 - timedelta(seconds=age_s)
    return Episode.objects.create(server=srv, kind=kind, pid=pid, started=started, first_seen=started, last_seen=T0,
                                  peak_age_s=age_s, service=service, datname=datname)


def firing() -> set[tuple[str, str]]:
    return {(i.rule.name, i.subject) for i in AlertInstance.objects.filter(state=FIRING).select_related("rule")}


def test_idle_in_transaction_and_query_age_per_service_and_per_database() -> None:
    only_these_rules()
    src = source()
    billing, search = fleet(src, 2, in_use=1, max=10)
    srv = server()
    ServerDatabase.objects.create(server=srv, datname="orders", first_seen=T0, last_seen=T0)
    ServerDatabase.objects.create(server=srv, datname="quiet", first_seen=T0, last_seen=T0)
    episode(srv, IDLE_IN_TRANSACTION, 90, service=billing, pid=1)
    episode(srv, LONG_QUERY, 45, service=search, pid=2)
    episode(srv, LONG_QUERY, 10, service=billing, pid=3)
    rule("IdleTx", "idle_in_transaction_s", 60)
    rule("Slow", "query_s", 30)
    rule("DbIdleTx", "db_idle_in_transaction_s", 60)
    rule("DbSlow", "db_query_s", 30, database_glob="ord*")
    evaluate_rules(T0)
    assert firing() == {("IdleTx", billing.name), ("Slow", search.name), ("DbIdleTx", "orders on orders"),
                        ("DbSlow", "orders on orders")}
    value = AlertInstance.objects.get(rule__name="IdleTx").value
    assert value == pytest.approx(90)


def test_a_server_whose_snapshots_stopped_freezes_its_alerts() -> None:
    only_these_rules()
    src = source()
    (billing,) = fleet(src, 1, in_use=1, max=10)
    srv = server()
    ep = episode(srv, IDLE_IN_TRANSACTION, 90, service=billing)
    idle = rule("IdleTx", "idle_in_transaction_s", 60)
    evaluate_rules(T0)
    assert firing() == {("IdleTx", billing.name)}
    # The snapshots stop failing... to arrive: the episode's session ended unseen, but nothing resolves.
    ep.ended = T0 + timedelta(seconds=30)
    ep.save()
    MonitoredServer.objects.filter(pk=srv.pk).update(last_error_at=T0 + timedelta(minutes=5), last_error="timeout")
    evaluate_rules(T0 + timedelta(minutes=5))
    assert firing() == {("IdleTx", billing.name)}
    idle.refresh_from_db()
    assert "server orders has had no snapshot since" in idle.last_error


def test_budget_share_per_server() -> None:
    only_these_rules()
    busy, calm = server("busy"), server("calm")
    for srv, open_connections in ((busy, 85), (calm, 20)):
        snap = Snapshot.objects.create(server=srv, slot=1, taken_at=T0, total=open_connections, max_connections=103,
                                       superuser_reserved_connections=3)
        SessionCount.objects.create(snapshot=snap, application_name="app", state="idle", count=open_connections)
    budget = rule("Budget", "budget", 80)
    evaluate_rules(T0)
    assert firing() == {("Budget", "busy")}
    assert AlertInstance.objects.get(rule=budget).value == pytest.approx(85.0)


def test_an_open_leak_finding_is_an_alert() -> None:
    only_these_rules()
    src = source()
    leaking, healthy = fleet(src, 2, in_use=1, max=10)
    Finding.objects.create(service=leaking, kind="leak", severity="crit", confidence=0.9, opened_at=T0, last_seen_at=T0,
                           summary="in use rose", fix="fix the leak")
    Finding.objects.create(service=healthy, kind="leak", severity="crit", confidence=0.9, opened_at=T0 - timedelta(hours=1),
                           last_seen_at=T0, closed_at=T0 - timedelta(minutes=5), summary="old", fix="-")
    rule("Leak", "finding", 0, finding_kind="leak")
    evaluate_rules(T0)
    assert firing() == {("Leak", leaking.name)}


def test_the_shipped_default_rules_evaluate_every_signal() -> None:
    # A transaction=True test elsewhere flushes what migrations wrote: run the data migration again
    # (it creates what is missing and leaves edited rules alone).
    importlib.import_module("poolboard.alerts.migrations.0002_default_rules").create_defaults(apps, None)
    assert set(AlertRule.objects.values_list("name", flat=True)) == {
        "PoolSaturated", "PoolWaiting", "PoolTimeouts", "IdleInTransaction", "SlowQuery", "DatabaseBudget", "LeakSuspected"
    }
    for default in AlertRule.objects.all():
        default.full_clean()
        assert default.origin
    src = source()
    (svc,) = fleet(src, 1, in_use=10, max=10, pending=3, timeouts=2)
    evaluate_rules(T0)
    assert {name for name, _ in firing()} == {"PoolTimeouts"}
    sample([svc], T0 + timedelta(minutes=5))
    evaluate_rules(T0 + timedelta(minutes=5))
    assert {name for name, _ in firing()} == {"PoolTimeouts", "PoolSaturated", "PoolWaiting"}
    assert not AlertRule.objects.exclude(last_error="").exists()


def queries_of_one_pass(services: int) -> int:
    src = source(f"src{services}")
    fleet(src, services, prefix=f"f{services}", in_use=1, max=10)
    srv = server(f"db{services}")
    Snapshot.objects.create(server=srv, slot=1, taken_at=T0, total=5, max_connections=100, superuser_reserved_connections=3)
    evaluate_rules(T0)  # the first pass may create rows; the steady state is what is counted
    with CaptureQueriesContext(connection) as captured:
        evaluate_rules(T0 + timedelta(seconds=15))
    return len(captured)


def test_a_pass_costs_the_same_number_of_queries_for_10_and_300_services() -> None:
    small = queries_of_one_pass(10)
    Finding.objects.all().delete()
    assert queries_of_one_pass(300) == small


def test_real_sessions_through_real_snapshots_fire_the_default_age_rules(monitored, sessions, make_service, fast_slots) -> None:
    """A session idle in transaction and a long query on a real server, stored by the snapshot
    task, fire the shipped IdleInTransaction and SlowQuery rules (thresholds lowered to 1 s)."""
    from poolboard.alerts.evaluate import db_now
    from poolboard.databases.snapshots import snapshot_server
    from tests.pg import wait_for_next_slot

    importlib.import_module("poolboard.alerts.migrations.0002_default_rules").create_defaults(apps, None)
    AlertRule.objects.exclude(name__in=["IdleInTransaction", "SlowQuery"]).delete()
    AlertRule.objects.update(threshold=1)
    make_service("idle-svc"), make_service("slow-svc")
    sessions.idle_in_transaction("idle-svc")
    sessions.active("slow-svc", "SELECT pg_sleep(30)")
    sessions.wait_seen({"idle-svc": "idle in transaction", "slow-svc": "active"}, older_than=2.5)
    first = snapshot_server(monitored)
    assert first.status == "ok"
    wait_for_next_slot(monitored.snapshots.order_by("-slot").first().taken_at, 1)
    assert snapshot_server(monitored).status == "ok"
    evaluate_rules(db_now())
    assert firing() == {("IdleInTransaction", "idle-svc"), ("SlowQuery", "slow-svc")}
    assert AlertInstance.objects.get(rule__name="SlowQuery").value > 2
