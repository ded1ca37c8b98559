"""poolboard.statements: readings of a real cluster (fixture pg_cluster) stored as deltas,
idempotent per slot, resets and a missing or unreadable extension; top(), rollup, retention."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import time_machine

from poolboard.databases.models import MonitoredServer, QueryHold, Snapshot
from poolboard.lib import statements as st
from poolboard.sources import pgstatements as ps
from poolboard.statements import collection
from poolboard.statements.models import (
    Statement,
    StatementHourly,
    StatementInterval,
    StatementSample,
    StatementsStatus,
)
from tests.wait import wait_until

SLEEP_S = 0.2  # long enough that scheduling delays on a busy machine stay far inside 10 %


@pytest.fixture
def server(db, pg_cluster, cluster_db, settings):
    settings.STATEMENTS_INTERVAL = 1  # one reading per second, so a test can take several
    return MonitoredServer.objects.create(
        name="cluster", host=pg_cluster.host, port=pg_cluster.port, dbname=cluster_db, user="root"
    )


def run(pg_cluster, dbname, sql, times, app="reports"):
    with pg_cluster.connect(dbname, application_name=app) as conn:
        for _ in range(times):
            conn.execute(sql)


def wait_for_a_new_slot(server) -> None:
    """Until the clock is in a later 1 s slot than the newest sample (the cluster runs on this machine's clock)."""
    newest = StatementSample.objects.filter(server=server).order_by("-slot").first()
    if newest is not None:
        wait_until(lambda: datetime.now(timezone.utc).timestamp() // 1 > newest.slot, timeout=3, what="the next slot")


def collect_in_new_slot(server) -> collection.CollectResult:
    wait_for_a_new_slot(server)
    return collection.collect_server(server)


def sleep_statement(server, dbname) -> Statement:
    return Statement.objects.select_related("query").get(server=server, datname=dbname, query__text="SELECT pg_sleep($1)")


def test_it_stores_the_deltas_of_what_ran(server, pg_cluster, cluster_db) -> None:
    run(pg_cluster, cluster_db, f"SELECT pg_sleep({SLEEP_S})", 3)
    first = collect_in_new_slot(server)
    assert first.status == "ok" and first.intervals == 0  # the first reading is a baseline
    statement = sleep_statement(server, cluster_db)
    assert (statement.rolname, statement.last_calls, statement.toplevel) == ("root", 3, True)
    assert len(statement.query.fingerprint) == 16

    run(pg_cluster, cluster_db, f"SELECT pg_sleep({SLEEP_S})", 5, app="billing")
    second = collect_in_new_slot(server)
    assert second.status == "ok" and second.notes == []
    (interval,) = StatementInterval.objects.filter(statement=statement)
    assert interval.calls == 5
    assert interval.total_exec_ms / interval.calls == pytest.approx(SLEEP_S * 1000, rel=0.10)
    assert interval.rows == 5 and not interval.restarted
    samples = list(StatementSample.objects.filter(server=server).order_by("slot"))
    assert (interval.start, interval.end) == (samples[0].taken_at, samples[1].taken_at)
    status = StatementsStatus.objects.get(server=server)
    assert (status.state, status.message, status.track) == ("ok", "", "top")


def test_it_does_not_count_a_redelivered_reading_twice(server, pg_cluster, cluster_db) -> None:
    run(pg_cluster, cluster_db, f"SELECT pg_sleep({SLEEP_S})", 2)
    collect_in_new_slot(server)
    run(pg_cluster, cluster_db, f"SELECT pg_sleep({SLEEP_S})", 4)
    wait_for_a_new_slot(server)
    reading = ps.read(server.target(), None, server.limits())
    assert collection.store_reading(server, reading).status == "ok"
    assert collection.store_reading(server, reading).status == "skipped"
    newest = StatementSample.objects.filter(server=server).order_by("-slot").first()
    server.port = 9  # nothing listens there: a read would fail
    with time_machine.travel(newest.taken_at + timedelta(seconds=0.1), tick=False):
        # A task redelivered within the slot does not even read the server.
        assert collection.collect_server(server).status == "skipped"
    statement = sleep_statement(server, cluster_db)
    assert [i.calls for i in StatementInterval.objects.filter(statement=statement)] == [4]
    assert statement.last_calls == 6


def test_it_counts_from_a_reset_with_a_note_and_no_negative_delta(server, pg_cluster, cluster_db) -> None:
    run(pg_cluster, cluster_db, f"SELECT pg_sleep({SLEEP_S})", 6)
    collect_in_new_slot(server)
    with pg_cluster.connect(cluster_db) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
    run(pg_cluster, cluster_db, f"SELECT pg_sleep({SLEEP_S})", 2)
    result = collect_in_new_slot(server)
    assert result.status == "ok"
    assert StatementInterval.objects.filter(calls__lt=0).count() == 0
    assert StatementInterval.objects.filter(total_exec_ms__lt=0).count() == 0
    (interval,) = StatementInterval.objects.filter(statement=sleep_statement(server, cluster_db))
    assert interval.calls == 2 and interval.restarted
    newest = StatementSample.objects.filter(server=server).order_by("-slot").first()
    assert interval.start == newest.stats_reset
    assert len(newest.notes) == 1
    assert newest.notes[0].startswith("pg_stat_statements was reset at ")
    assert newest.notes[0].endswith("; this interval counts from the reset.")
    since = newest.taken_at - timedelta(minutes=5)
    assert [n for _, _, n in StatementSample.objects.notes(since, newest.taken_at, server=server)] == newest.notes


def test_it_explains_a_missing_extension_and_stores_nothing(server, pg_cluster, cluster_db) -> None:
    with pg_cluster.connect(cluster_db) as conn:
        conn.execute("DROP EXTENSION pg_stat_statements")
    result = collection.collect_server(server)
    assert result.status == "unavailable"
    status = StatementsStatus.objects.get(server=server)
    assert status.state == ps.NOT_INSTALLED
    assert f"in database {cluster_db}:  CREATE EXTENSION pg_stat_statements;" in status.message
    assert result.error == status.message
    assert not StatementSample.objects.filter(server=server).exists()
    assert not Statement.objects.filter(server=server).exists()


def test_it_collects_its_own_statements_and_says_why_without_pg_read_all_stats(server, pg_cluster, cluster_db) -> None:
    role = "sc_plain_monitor"
    with pg_cluster.connect() as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} LOGIN")
    try:
        server.user = role
        server.save()
        run(pg_cluster, cluster_db, f"SELECT pg_sleep({SLEEP_S})", 1)
        assert collection.collect_server(server).status == "ok"
        status = StatementsStatus.objects.get(server=server)
        assert status.state == ps.UNREADABLE
        assert f"GRANT pg_read_all_stats TO {role};" in status.message
        assert set(Statement.objects.filter(server=server).values_list("rolname", flat=True)) == {role}
    finally:
        with pg_cluster.connect() as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_it_reports_an_unchecked_server_as_such(db) -> None:
    server = MonitoredServer.objects.create(name="fresh", host="127.0.0.1", port=9, dbname="x", user="x")
    status = StatementsStatus.for_server(server)
    assert status.state == "" and status.message == StatementsStatus.NOT_CHECKED and status.pk is None


def test_it_records_an_unreachable_server(db) -> None:
    server = MonitoredServer.objects.create(name="gone", host="127.0.0.1", port=9, dbname="x", user="x")
    result = collection.collect_server(server)
    assert result.status == "failed"
    status = StatementsStatus.objects.get(server=server)
    assert status.state == "error" and "127.0.0.1:9" in status.message


# --- top(), rollup and retention over rows written directly ---------------------------------

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc)


def make_statement(server, queryid, text, datname="shop"):
    from poolboard.databases.models import QueryFingerprint

    fp = QueryFingerprint.objects.create(fingerprint=f"{queryid:016x}"[-16:], text=text, first_seen=T0, last_seen=T0)
    return Statement.objects.create(
        server=server, datname=datname, rolname="app", queryid=queryid, query=fp, first_seen=T0, last_seen=T0
    )


def interval(statement, minute, calls, total_ms, rows=0, mx=None, start_minute=None):
    start = T0 + timedelta(minutes=minute - 5 if start_minute is None else start_minute)
    return StatementInterval.objects.create(
        statement=statement, start=start, end=T0 + timedelta(minutes=minute), calls=calls, total_exec_ms=total_ms,
        rows=rows, shared_blks_hit=calls * 10, shared_blks_read=calls, max_exec_ms=mx,
    )


def hold(server, minute, query_id, service, count, app="x", datname="shop", slot_offset=0):
    taken = T0 + timedelta(minutes=minute)
    snap, _ = Snapshot.objects.get_or_create(
        server=server, slot=int(taken.timestamp()) // 10 + slot_offset,
        defaults={"taken_at": taken, "total": 10, "max_connections": 100, "superuser_reserved_connections": 3},
    )
    QueryHold.objects.create(snapshot=snap, datname=datname, query_id=query_id, service=service,
                             application_name=app, count=count)


@pytest.fixture
def fleet_rows(db, make_service, settings):
    settings.DATABASE_SNAPSHOT_INTERVAL = 10
    server = MonitoredServer.objects.create(name="pg1", host="127.0.0.1", port=9, dbname="shop", user="x")
    reports = make_service("reports", instances=2, max=5, in_use=1)
    billing = make_service("billing")
    slow = make_statement(server, 101, "SELECT pg_sleep($1)")
    fast = make_statement(server, 202, "SELECT * FROM orders WHERE id = $1")
    interval(slow, 5, 10, 5000.0, rows=10, mx=900.0)
    interval(slow, 10, 2, 1000.0, rows=2)
    interval(fast, 5, 3000, 3000.0, rows=3000, mx=4.0)
    interval(fast, 60 * 24 * -7 + 10, 1000, 500.0)  # a week earlier: mean 0.5 ms
    # Holds: reports runs the slow one with 2 connections at 2 snapshots, then 3 (two app names); billing 1.
    hold(server, 1, 101, reports, 2)
    hold(server, 2, 101, reports, 2)
    hold(server, 3, 101, reports, 2, app="reports-a")
    hold(server, 3, 101, reports, 1, app="reports-b")
    hold(server, 3, 101, billing, 1)
    hold(server, 4, 202, billing, 1)
    return server, reports, billing, slow, fast


def test_it_ranks_statements_by_total_time_with_their_services(fleet_rows) -> None:
    server, reports, billing, slow, fast = fleet_rows
    rows = Statement.objects.top(T0, T0 + timedelta(minutes=30))
    assert [r["id"] for r in rows] == [slow.pk, fast.pk]
    top = rows[0]
    assert (top["calls"], top["total_ms"], top["mean_ms"], top["max_ms"]) == (12, 6000.0, 500.0, 900.0)
    assert top["calls_per_s"] == pytest.approx(12 / 1800)
    assert top["total_share"] == pytest.approx(6000 / 9000)
    assert top["rows_per_call"] == 1.0
    assert top["hit_ratio"] == pytest.approx(120 / 132)
    assert top["text"] == "SELECT pg_sleep($1)" and top["server"] == "pg1" and top["datname"] == "shop"
    # reports: 2 + 2 + 3 sessions over three 10 s snapshots = 70 connection-seconds, peak 3 (of 2 × 5).
    assert top["services"] == [
        {"id": reports.pk, "name": "reports", "held_conn_s": 70.0, "peak_held": 3, "pool_max": 10},
        {"id": billing.pk, "name": "billing", "held_conn_s": 10.0, "peak_held": 1, "pool_max": None},
    ]
    assert (top["held_conn_s"], top["peak_held"]) == (80.0, 3)
    assert top["trend_vs_last_week"] is None
    assert rows[1]["last_week_mean_ms"] == 0.5 and rows[1]["trend_vs_last_week"] == pytest.approx(1.0)


def test_a_nested_statements_time_is_not_counted_twice_in_the_shares(fleet_rows) -> None:
    server, reports, billing, slow, fast = fleet_rows
    # track = all: the function's inner SELECT ran 4 000 ms of the caller's 6 000 ms.
    inner = Statement.objects.create(server=server, datname="shop", rolname="app", queryid=303, toplevel=False,
                                     first_seen=T0, last_seen=T0)
    interval(inner, 5, 10, 4000.0)
    rows = {r["id"]: r for r in Statement.objects.top(T0, T0 + timedelta(minutes=30))}
    # Of the 9 000 ms the top-level statements took, not of 13 000.
    assert rows[slow.pk]["total_share"] == pytest.approx(6000 / 9000)
    assert rows[inner.pk]["total_share"] == pytest.approx(4000 / 9000)


def test_the_pool_a_statement_holds_is_the_services_live_instances_with_their_overflow(fleet_rows) -> None:
    from poolboard.fleet.models import Pool

    server, reports, billing, slow, fast = fleet_rows
    until = T0 + timedelta(minutes=30)
    Pool.objects.filter(service=reports).update(sampled_at=until - timedelta(minutes=1))
    # A pod of last week's deploy, with a bigger pool: gone, not part of today's pool.
    gone = Pool.objects.filter(service=reports).first()
    Pool.objects.create(service=reports, instance="old-pod:8080", name=gone.name, max=20,
                        sampled_at=until - timedelta(days=6))
    reports.pool_overflow = 2
    reports.save()
    top = Statement.objects.top(T0, until)[0]
    # 2 instances × (5 + 2 overflow), not 5 + 5 + 20.
    assert top["services"][0]["name"] == "reports" and top["services"][0]["pool_max"] == 14


def test_ranges_over_48_hours_read_held_time_from_the_hourly_rollup_after_the_snapshots_are_pruned(fleet_rows) -> None:
    from poolboard.statements import holds
    from poolboard.statements.models import HoldHourly

    server, reports, billing, slow, fast = fleet_rows
    hold(server, 62, 101, reports, 4)  # the next hour: one more snapshot, 4 sessions
    hold(server, 62, 101, None, 1, app="psql")  # nobody's: kept apart (service NULL), not in any service's share
    assert holds.rollup_since(T0 - timedelta(hours=1)) == 5
    # Recomputed, not added: a second run writes the same rows.
    holds.rollup_since(T0 - timedelta(hours=1))
    assert HoldHourly.objects.count() == 5
    collection.rollup_recent(T0 + timedelta(hours=2), hours=24 * 9)  # the statements' own hours
    week = (T0 - timedelta(days=3), T0 + timedelta(days=4))
    before = {r["id"]: r for r in Statement.objects.top(*week)}
    Snapshot.objects.all().delete()  # RAW_RETENTION_DAYS later: the holds are gone with their snapshots
    after = {r["id"]: r for r in Statement.objects.top(*week)}
    assert after == before
    top = after[slow.pk]
    # reports: 70 connection-seconds in the first hour + 40 in the next, peak 4; billing 10; psql's 10 unattributed.
    assert top["services"] == [
        {"id": reports.pk, "name": "reports", "held_conn_s": 110.0, "peak_held": 4, "pool_max": 10},
        {"id": billing.pk, "name": "billing", "held_conn_s": 10.0, "peak_held": 1, "pool_max": None},
    ]
    assert (top["held_conn_s"], top["peak_held"]) == (130.0, 4)
    assert after[fast.pk]["held_conn_s"] == 10.0
    # One statement's page (a narrowed queryset) and one service's filter read the same hours.
    (only,) = Statement.objects.filter(pk=slow.pk).top(*week, service=billing)
    assert only["held_conn_s"] == 10.0
    # The short ranges still read the raw holds, which are gone now.
    assert Statement.objects.top(T0, T0 + timedelta(hours=2))[0]["held_conn_s"] == 0
    # Retention: after STATEMENTS_HOURLY_DAYS.
    assert collection.expire(T0 + timedelta(days=399))["hold_hours"] == 0
    assert collection.expire(T0 + timedelta(days=401))["hold_hours"] == 5


@pytest.mark.parametrize(("sort", "first"), [("total", "slow"), ("mean", "slow"), ("calls", "fast"), ("held", "slow")])
def test_it_sorts_by_what_is_asked(fleet_rows, sort, first) -> None:
    server, reports, billing, slow, fast = fleet_rows
    rows = Statement.objects.top(T0, T0 + timedelta(minutes=30), sort=sort)
    assert rows[0]["id"] == {"slow": slow.pk, "fast": fast.pk}[first]


def test_it_filters_by_service_database_and_server(fleet_rows) -> None:
    server, reports, billing, slow, fast = fleet_rows
    until = T0 + timedelta(minutes=30)
    only_reports = Statement.objects.top(T0, until, service=reports)
    assert [r["id"] for r in only_reports] == [slow.pk]
    assert [s["name"] for s in only_reports[0]["services"]] == ["reports"]
    assert only_reports[0]["total_share"] == 1.0
    assert [r["id"] for r in Statement.objects.top(T0, until, service=billing, sort="calls")] == [fast.pk, slow.pk]
    assert Statement.objects.top(T0, until, datname="other") == []
    assert Statement.objects.top(T0, until, server=server.pk + 1000) == []
    assert len(Statement.objects.top(T0, until, server=server, limit=1)) == 1
    (one,) = Statement.objects.filter(pk=fast.pk).top(T0, until)  # a statement's own page
    assert one["id"] == fast.pk and one["total_share"] == 1.0
    with pytest.raises(ValueError, match="sort must be one of"):
        Statement.objects.top(T0, until, sort="bogus")


def test_it_rolls_intervals_up_per_hour_as_lib_statements_does(fleet_rows) -> None:
    server, reports, billing, slow, fast = fleet_rows
    interval(slow, 62, 4, 40.0, mx=12.0, start_minute=57)  # midpoint 10:59:30 -> 10:00
    interval(slow, 66, 1, 1.0, start_minute=61)
    now = T0 + timedelta(minutes=70)
    assert collection.rollup_recent(now) > 0
    collection.rollup_recent(now)  # twice: recomputed, not added again
    stored = {
        (h.statement_id, h.hour): (h.calls, h.total_exec_ms, h.rows, h.max_exec_ms, h.intervals)
        for h in StatementHourly.objects.all()
    }
    expected = st.rollup_hourly(
        (i.statement_id, i.start, i.end, st.Counters(i.calls, i.total_exec_ms, i.rows, i.shared_blks_hit,
                                                      i.shared_blks_read, i.max_exec_ms))
        for i in StatementInterval.objects.filter(end__gt=now - timedelta(hours=3))
    )
    assert stored == {k: (t.calls, t.total_exec_ms, t.rows, t.max_exec_ms, t.intervals) for k, t in expected.items()}
    assert stored[(slow.pk, T0)] == (16, 6040.0, 12, 900.0, 3)
    # Past 48 h, top() reads the hours.
    rows = Statement.objects.top(T0 - timedelta(days=3), now)
    assert {r["id"]: r["calls"] for r in rows} == {slow.pk: 17, fast.pk: 3000}


def test_it_expires_intervals_after_14_days_and_hours_after_400(fleet_rows) -> None:
    server, reports, billing, slow, fast = fleet_rows
    collection.rollup_recent(T0 + timedelta(minutes=30))
    gone = collection.expire(T0 + timedelta(days=15))
    assert gone["intervals"] == 4
    assert StatementInterval.objects.count() == 0 and StatementHourly.objects.count() == 2
    collection.expire(T0 + timedelta(days=401))
    assert StatementHourly.objects.count() == 0 and Statement.objects.count() == 0


def test_it_charts_one_statement_per_interval_and_per_hour(fleet_rows) -> None:
    server, reports, billing, slow, fast = fleet_rows
    points = slow.history(T0, T0 + timedelta(minutes=30))
    assert [(p["end"] - T0, p["calls"], p["mean_ms"]) for p in points] == [
        (timedelta(minutes=5), 10, 500.0), (timedelta(minutes=10), 2, 500.0),
    ]
    assert points[0]["calls_per_s"] == pytest.approx(10 / 300)
    collection.rollup_recent(T0 + timedelta(minutes=30))
    (hour,) = slow.history(T0 - timedelta(days=3), T0 + timedelta(hours=1))
    assert (hour["start"], hour["calls"], hour["total_ms"], hour["max_ms"]) == (T0, 12, 6000.0, 900.0)


def test_it_runs_as_tasks_one_per_enabled_server(server, pg_cluster, cluster_db) -> None:
    from poolboard.statements import tasks

    assert tasks.collect_one(server.pk)["status"] == "ok"
    server.enabled = False
    server.save()
    assert tasks.collect_one(server.pk) == {"status": "skipped"}
    assert set(tasks.rollup_statements()) == {"statements", "holds"}
    assert set(tasks.expire_statements()) == {"intervals", "samples", "hours", "statements", "hold_hours"}


def test_it_drops_a_reading_that_arrives_after_a_newer_one(server, pg_cluster, cluster_db) -> None:
    run(pg_cluster, cluster_db, f"SELECT pg_sleep({SLEEP_S})", 1)
    collect_in_new_slot(server)
    wait_for_a_new_slot(server)
    older = ps.read(server.target(), None, server.limits())
    run(pg_cluster, cluster_db, f"SELECT pg_sleep({SLEEP_S})", 3)
    wait_until(lambda: datetime.now(timezone.utc).timestamp() // 1 > older.taken_at.timestamp() // 1, timeout=3)
    newer = ps.read(server.target(), None, server.limits())
    assert collection.store_reading(server, newer).status == "ok"
    assert collection.store_reading(server, older).status == "skipped"
    statement = sleep_statement(server, cluster_db)
    assert statement.last_calls == 4
    assert [i.calls for i in StatementInterval.objects.filter(statement=statement)] == [3]


def test_it_gives_a_statement_new_in_another_database_the_text_its_queryid_has(server, pg_cluster, cluster_db) -> None:
    pg_cluster.create_database("t_other_database")
    try:
        run(pg_cluster, cluster_db, f"SELECT pg_sleep({SLEEP_S})", 1)
        collect_in_new_slot(server)
        first = sleep_statement(server, cluster_db)
        run(pg_cluster, "t_other_database", f"SELECT pg_sleep({SLEEP_S})", 2)
        collect_in_new_slot(server)  # its text is not read again: the queryid has one
        other = sleep_statement(server, "t_other_database")
        assert other.queryid == first.queryid and other.query_id == first.query_id
    finally:
        pg_cluster.drop_database("t_other_database")


def test_it_is_on_the_beat_schedule_once_per_slot(settings) -> None:
    from poolboard.fleet.schedules import every_slot
    from poolboard.statements import tasks

    beat = settings.CELERY_BEAT_SCHEDULE
    collect = beat["collect-statements"]
    assert collect["task"] == tasks.collect_statements.name
    assert isinstance(collect["schedule"], every_slot) and collect["schedule"].seconds == settings.STATEMENTS_INTERVAL
    assert settings.STATEMENTS_INTERVAL == 300 and collect["options"]["expires"] == 300
    assert beat["rollup-statements"]["task"] == tasks.rollup_statements.name
    assert beat["expire-statements"]["task"] == tasks.expire_statements.name


def test_the_hold_hourly_migration_fills_the_hours_of_the_holds_still_kept(fleet_rows) -> None:
    import importlib

    from django.db import connection

    from poolboard.statements import holds
    from poolboard.statements.models import HoldHourly

    migration = importlib.import_module("poolboard.statements.migrations.0003_hold_hourly")
    holds.rollup_since(T0 - timedelta(hours=1))
    fields = ["server_id", "datname", "query_id", "service_id", "hour", "held_s", "peak", "snapshots"]
    rolled = list(HoldHourly.objects.order_by(*fields).values_list(*fields))
    HoldHourly.objects.all().delete()

    class SchemaEditor:
        pass

    editor = SchemaEditor()
    editor.connection = connection
    migration.backfill(None, editor)
    assert list(HoldHourly.objects.order_by(*fields).values_list(*fields)) == rolled
    assert len(rolled) == 3  # slow for reports and billing, fast for billing
