from __future__ import annotations

import logging
import os

import pytest

from poolboard.databases.models import (
    AttributionRule,
    Episode,
    MonitoredServer,
    QueryFingerprint,
    SessionCount,
    Snapshot,
    snapshot_interval,
)
from poolboard.databases.snapshots import snapshot_all, snapshot_server, store_snapshot
from poolboard.lib import episodes as ep
from poolboard.sources import pgactivity
from tests.pg import monitor_sessions, wait_for_next_slot

pytestmark = pytest.mark.django_db

# The target server is shared: other people's sessions may use common names.
SFX = f"-t{os.getpid()}"
BILLING = "billing" + SFX


def without_thresholds(database) -> None:
    """Every idle-in-transaction session and running query is an episode at once: for the tests
    whose subject is not the thresholds (those wait for sessions to age past 1 s)."""
    database.idle_in_transaction_s = database.query_s = 0
    database.save(update_fields=["idle_in_transaction_s", "query_s"])


def wait_next_slot(database) -> None:
    wait_for_next_slot(database.snapshots.latest("taken_at").taken_at, snapshot_interval())


def test_idle_in_transaction_and_slow_query_become_attributed_episodes_within_two_snapshots(
    monitored, sessions, make_service, fast_slots
):
    billing = make_service(BILLING)
    reports = make_service("reports")
    sessions.idle_in_transaction(BILLING, "SELECT 'card=4111111111111111'")
    sessions.active("reports-worker-7", "SELECT pg_sleep(30), 'token=abc'")
    AttributionRule.objects.create(service=reports, application_name="reports-*")
    sessions.wait_seen({BILLING: "idle in transaction", "reports-worker-7": "active"}, older_than=1)  # the thresholds

    first = snapshot_server(monitored)
    assert first.status == "ok", first.error
    wait_next_slot(monitored)
    sessions.wait_seen({BILLING: "idle in transaction"}, older_than=2)
    second = snapshot_server(monitored)
    assert second.status == "ok"

    iit = Episode.objects.get(server=monitored, kind=ep.IDLE_IN_TRANSACTION, application_name=BILLING)
    assert iit.service == billing and iit.ended is None
    assert iit.last_seen > iit.first_seen and iit.peak_age_s >= 2
    assert iit.query.text == "SELECT $1"
    slow = Episode.objects.get(server=monitored, kind=ep.LONG_QUERY, application_name="reports-worker-7")
    assert slow.service == reports and slow.application_name == "reports-worker-7"
    assert slow.query.text == "SELECT pg_sleep($1), $2"
    assert monitor_sessions(monitored.dbname) == 0

    # The session ends: the next snapshot closes its episodes.
    sessions.close()
    wait_next_slot(monitored)
    third = snapshot_server(monitored)
    assert third.closed >= 2
    iit.refresh_from_db()
    assert iit.ended is not None


def test_budget_adds_up_to_what_pg_stat_activity_shows(monitored, sessions, make_service):
    make_service(BILLING)
    for _ in range(3):
        sessions.idle(BILLING)
    sessions.idle_in_transaction("search")
    result = snapshot_server(monitored)
    snap = Snapshot.objects.get(server=monitored)
    budget = snap.budget()
    assert budget.total == snap.total == result.total
    assert sum(s.count for s in budget.slices) == budget.total
    assert sum(budget.by_state.values()) == budget.total
    assert dict((s.label, s.count) for s in budget.slices)[BILLING] == 3
    assert SessionCount.objects.filter(snapshot=snap, service__name=BILLING).get().count == 3
    assert budget.usable == snap.max_connections - snap.superuser_reserved_connections


def test_a_redelivered_slot_stores_nothing_twice(monitored, sessions):
    snap = pgactivity.snapshot(monitored.target())
    assert store_snapshot(monitored, snap).status == "ok"
    assert store_snapshot(monitored, snap).status == "skipped"
    assert Snapshot.objects.filter(server=monitored).count() == 1


def test_it_leaves_its_own_sessions_out_of_episodes(monitored, sessions, fast_slots):
    without_thresholds(monitored)
    sessions.idle_in_transaction("poolboard-worker")
    sessions.idle_in_transaction(BILLING)  # the same state, not poolboard's: the one kept
    sessions.wait_seen({"poolboard-worker": "idle in transaction", BILLING: "idle in transaction"})
    snapshot_server(monitored)
    # The server is shared with other tests: only this test's database is looked at.
    mine = Episode.objects.filter(datname=sessions.dbname)
    assert list(mine.values_list("application_name", flat=True)) == [BILLING]
    monitored.refresh_from_db()
    assert {s["application_name"] for s in monitored.last_sessions if s["datname"] == sessions.dbname} == {BILLING}


def test_unreachable_target_records_a_sanitised_error(db, monkeypatch, caplog):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setenv("PB_TEST_SECRET", "Very-Secret-Pw-42")
    dead = MonitoredServer.objects.create(name="dead", host="127.0.0.1", port=port, user="mon", password_env="PB_TEST_SECRET")
    with caplog.at_level(logging.DEBUG):
        result = snapshot_server(dead)
    assert result.status == "failed" and "unreachable" in result.error
    dead.refresh_from_db()
    assert dead.last_error_kind == "unreachable" and dead.last_error_at
    assert "Very-Secret-Pw-42" not in dead.last_error + result.error + caplog.text


def test_missing_password_reference_is_a_clear_config_error(db, monkeypatch):
    monkeypatch.delenv("PB_NOT_SET", raising=False)
    db_row = MonitoredServer.objects.create(name="cfg", host="127.0.0.1", port=1, password_env="PB_NOT_SET")
    result = snapshot_server(db_row)
    assert result.status == "failed"
    assert "environment variable PB_NOT_SET is not set" in result.error
    missing_file = MonitoredServer.objects.create(name="cfg2", host="127.0.0.1", port=2, password_file="/nonexistent/pw")
    assert "cannot be read" in snapshot_server(missing_file).error


def test_password_file_is_read_and_never_stored(db, tmp_path, target_dbname):
    pw = tmp_path / "pw"
    pw.write_text("File-Secret-99\n")
    row = MonitoredServer.objects.create(name="f", host="127.0.0.1", dbname=target_dbname, user="root", password_file=str(pw))
    assert row.password() == "File-Secret-99"
    assert snapshot_server(row).status == "ok"
    assert "File-Secret-99" not in repr(MonitoredServer.objects.filter(pk=row.pk).values().get())


def test_raw_literals_never_reach_the_database_or_logs(monitored, sessions, caplog, fast_slots):
    sessions.idle_in_transaction("leaky", "SELECT 'card=4111111111111111' /* email=alice@example.com */")
    sessions.active("leaky2", "SELECT pg_sleep(30), 'card=4111111111111111'")
    without_thresholds(monitored)
    sessions.wait_seen({"leaky": "idle in transaction", "leaky2": "active"})
    with caplog.at_level(logging.DEBUG):
        snapshot_server(monitored)
    dumped = repr(list(Episode.objects.values())) + repr(list(QueryFingerprint.objects.values()))
    dumped += repr(list(MonitoredServer.objects.values())) + repr(list(SessionCount.objects.values()))
    assert "4111" not in dumped and "alice@" not in dumped
    assert "4111" not in caplog.text


def test_raw_mode_only_by_setting(monitored, sessions, settings, fast_slots):
    settings.QUERY_TEXT_MODE = "raw"
    sessions.active("rawapp", "SELECT pg_sleep(30), 'visible-literal'")
    without_thresholds(monitored)
    sessions.wait_seen({"rawapp": "active"})
    snapshot_server(monitored)
    assert Episode.objects.get(application_name="rawapp", kind=ep.LONG_QUERY).query.text.endswith("'visible-literal'")


def test_snapshot_all_covers_enabled_databases_only(monitored, db):
    MonitoredServer.objects.create(name="off", host="127.0.0.1", port=3, enabled=False)
    results = snapshot_all()
    assert [r.server for r in results] == ["orders-db"]


def test_ten_thousand_sessions_store_a_bounded_number_of_rows(monitored, make_service):
    """Synthetic snapshot: 10 000 sessions, counts exact, at most session_limit rows kept."""
    from datetime import timedelta

    from django.utils import timezone

    from poolboard.lib.budget import ServerSettings
    from poolboard.lib.budget import SessionCount as Count

    now = timezone.now()
    counts = [Count(f"app{i % 50}", "u", f"10.0.{i % 200}.1", "idle in transaction", "Client", 1) for i in range(10_000)]
    rows = [
        ep.Session(pid=10_000 + i, backend_start=now - timedelta(hours=1), xact_start=now - timedelta(seconds=600 - i),
                   query_start=now - timedelta(seconds=600 - i), state_change=now - timedelta(seconds=600 - i),
                   state="idle in transaction", application_name=f"app{i % 50}", query="SELECT $1", fingerprint="f" * 16)
        for i in range(pgactivity.DEFAULT_SESSION_LIMIT)
    ]
    snap = pgactivity.Snapshot(
        taken_at=now, settings=ServerSettings(max_connections=20_000), counts=counts, total=10_000,
        sessions=rows, sessions_truncated_after=rows[-1].xact_start,
    )
    result = store_snapshot(monitored, snap)
    assert result.status == "ok"
    stored = Snapshot.objects.get(server=monitored)
    assert stored.budget().total == 10_000
    assert Episode.objects.filter(server=monitored).count() <= 2 * pgactivity.DEFAULT_SESSION_LIMIT
    assert len(MonitoredServer.objects.get(pk=monitored.pk).last_sessions) == pgactivity.DEFAULT_SESSION_LIMIT


def test_collect_once_takes_a_snapshot(monitored, capsys):
    from django.core.management import call_command

    call_command("collect", "--once")
    out = capsys.readouterr().out
    assert "server orders-db:" in out and "connections" in out
    assert Snapshot.objects.filter(server=monitored).count() == 1
