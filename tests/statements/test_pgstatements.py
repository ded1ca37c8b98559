"""sources.pgstatements against a real cluster with pg_stat_statements preloaded (fixture pg_cluster),
and lib.statements' deltas over real readings: what was run is what is counted."""

from __future__ import annotations

import types

import pytest

from poolboard.lib import statements as st
from poolboard.sources import pgstatements as ps
from poolboard.sources.pgactivity import MonitorError, Target

SLEEP_S = 0.2  # long enough that scheduling delays on a busy machine stay far inside 10 %


def target(pg_cluster, dbname, user="root") -> Target:
    return Target(host=pg_cluster.host, port=pg_cluster.port, dbname=dbname, user=user)


def run(pg_cluster, dbname, sql, times, app="reports", user="root"):
    with pg_cluster.connect(dbname, application_name=app, user=user) as conn:
        for _ in range(times):
            conn.execute(sql)


def as_lib(reading: ps.Reading) -> st.Reading:
    return st.Reading(
        taken_at=reading.taken_at, entries={e.key: e.counters for e in reading.entries}, complete=reading.complete,
        stats_reset=reading.stats_reset, dealloc=reading.dealloc,
    )


def in_db(reading: ps.Reading, dbname: str, text_part: str) -> list[ps.Entry]:
    return [e for e in reading.entries if e.key.datname == dbname and text_part in (e.query or "")]


def test_it_counts_exactly_the_calls_run_between_two_readings(pg_cluster, cluster_db) -> None:
    t = target(pg_cluster, cluster_db)
    run(pg_cluster, cluster_db, f"SELECT pg_sleep({SLEEP_S})", 3)
    first = ps.read(t)
    (sleep,) = in_db(first, cluster_db, "pg_sleep")
    assert sleep.query == "SELECT pg_sleep($1)"  # normalised by the server
    assert sleep.key.rolname == "root" and sleep.counters.calls == 3

    run(pg_cluster, cluster_db, f"SELECT pg_sleep({SLEEP_S})", 5, app="billing")
    run(pg_cluster, cluster_db, "SELECT g FROM generate_series(1, 7) g", 2)
    second = ps.read(t, with_text=frozenset(e.key.queryid for e in first.entries))
    assert second.taken_at > first.taken_at
    d = st.diff(as_lib(first), as_lib(second))
    (delta,) = [x for x in d.deltas if x.key == sleep.key]
    assert delta.counters.calls == 5
    assert delta.mean_ms == pytest.approx(SLEEP_S * 1000, rel=0.10)
    assert delta.counters.rows == 5
    assert (delta.start, delta.end) == (first.taken_at, second.taken_at)
    # The series statement is new since the first read; that read saw the whole view, so it counts in full.
    (series,) = in_db(second, cluster_db, "generate_series")
    assert [(x.counters.calls, x.counters.rows) for x in d.deltas if x.key == series.key] == [(2, 14)]
    # Text is read only for queryids the caller has none for.
    assert next(e for e in second.entries if e.key == sleep.key).query is None
    assert d.notes == []


def test_it_reads_the_top_n_and_the_tracked_statements(pg_cluster, cluster_db) -> None:
    t = target(pg_cluster, cluster_db)
    run(pg_cluster, cluster_db, "SELECT pg_sleep(0.2)", 1)
    run(pg_cluster, cluster_db, "SELECT 1 + 1", 1)
    everything = ps.read(t)
    (cheap,) = in_db(everything, cluster_db, "$1 + $2")
    top = ps.read(t, top=1)
    assert len(top.entries) == 1 and not top.complete and top.view_entries > 1
    tracked = ps.read(t, top=1, tracked={cheap.key.queryid})
    assert {e.key.queryid for e in tracked.entries} == {top.entries[0].key.queryid, cheap.key.queryid}
    assert tracked.looked_for == frozenset({cheap.key.queryid})


def test_it_counts_from_a_reset_between_readings_with_a_note(pg_cluster, cluster_db) -> None:
    t = target(pg_cluster, cluster_db)
    run(pg_cluster, cluster_db, f"SELECT pg_sleep({SLEEP_S})", 4)
    first = ps.read(t)
    (sleep,) = in_db(first, cluster_db, "pg_sleep")
    with pg_cluster.connect(cluster_db) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
    run(pg_cluster, cluster_db, f"SELECT pg_sleep({SLEEP_S})", 2)
    second = ps.read(t)
    assert second.stats_reset > first.taken_at
    d = st.diff(as_lib(first), as_lib(second))
    assert d.reset_at == second.stats_reset
    assert all(x.counters.calls >= 0 and x.counters.total_exec_ms >= 0 and x.counters.rows >= 0 for x in d.deltas)
    (delta,) = [x for x in d.deltas if x.key == sleep.key]
    assert delta.counters.calls == 2 and delta.restarted and delta.start == second.stats_reset
    assert delta.mean_ms == pytest.approx(SLEEP_S * 1000, rel=0.10)
    assert len(d.notes) == 1
    assert d.notes[0].startswith("pg_stat_statements was reset at ")
    assert d.notes[0].endswith("; this interval counts from the reset.")


def test_it_never_resets_the_view(pg_cluster, cluster_db) -> None:
    t = target(pg_cluster, cluster_db)
    run(pg_cluster, cluster_db, "SELECT 42", 1)
    before = ps.read(t)
    ps.check(t)
    after = ps.read(t)
    assert after.stats_reset == before.stats_reset
    with pg_cluster.connect(cluster_db) as conn:
        resets = conn.execute(
            "SELECT count(*) FROM pg_stat_statements WHERE query ILIKE '%pg_stat_statements_reset%'"
            " AND query LIKE '%poolboard%'"
        ).fetchone()[0]
    assert resets == 0


def test_it_reports_a_database_without_the_extension(pg_cluster, cluster_db) -> None:
    with pg_cluster.connect(cluster_db) as conn:
        conn.execute("DROP EXTENSION pg_stat_statements")
    t = target(pg_cluster, cluster_db)
    status = ps.check(t)
    assert (status.state, status.preloaded, status.installed) == (ps.NOT_INSTALLED, True, False)
    assert f"in database {cluster_db}:  CREATE EXTENSION pg_stat_statements;" in status.message
    with pytest.raises(MonitorError) as raised:
        ps.read(t)
    assert raised.value.message == status.message


def test_it_reuses_what_it_learnt_of_the_extension_and_asks_again_every_so_often(pg_cluster, cluster_db) -> None:
    t = target(pg_cluster, cluster_db)
    ps.forget_status(t)
    readings = [ps.read(t) for _ in range(ps.STATUS_RECHECK_READINGS + 1)]
    assert [r.status_checked for r in readings] == [True] + [False] * (ps.STATUS_RECHECK_READINGS - 1) + [True]
    assert all(r.status.ok and r.entries for r in readings)


def test_a_reused_status_is_asked_again_when_the_extension_is_gone(pg_cluster, cluster_db) -> None:
    t = target(pg_cluster, cluster_db)
    ps.forget_status(t)
    assert ps.read(t).status_checked
    with pg_cluster.connect(cluster_db) as conn:
        conn.execute("DROP EXTENSION pg_stat_statements")
    with pytest.raises(ps.Unavailable) as raised:
        ps.read(t)
    assert raised.value.status.state == ps.NOT_INSTALLED
    with pg_cluster.connect(cluster_db) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
    assert ps.read(t).status_checked  # nothing was kept from the failed reading


def test_it_reports_a_server_that_does_not_preload_it(target_dbname) -> None:
    # The machine's own server: pg_stat_statements is not in shared_preload_libraries there.
    from tests.pg import HOST, PORT, SUPERUSER

    status = ps.check(Target(host=HOST, port=PORT, dbname=target_dbname, user=SUPERUSER))
    assert (status.state, status.preloaded) == (ps.NOT_PRELOADED, False)
    assert "shared_preload_libraries = 'pg_stat_statements'" in status.message
    assert "restart PostgreSQL" in status.message
    assert "CREATE EXTENSION pg_stat_statements;" in status.message


def test_it_reads_only_its_own_statements_without_pg_read_all_stats(pg_cluster, cluster_db) -> None:
    role = "st_monitor_plain"
    with pg_cluster.connect() as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} LOGIN")
    try:
        run(pg_cluster, cluster_db, "SELECT 'someone else''s statement'", 2)
        t = target(pg_cluster, cluster_db, user=role)
        status = ps.check(t)
        assert (status.state, status.readable) == (ps.UNREADABLE, False)
        assert f"GRANT pg_read_all_stats TO {role};" in status.message
        assert "<insufficient privilege>" in status.message
        reading = ps.read(t)
        assert reading.status.state == ps.UNREADABLE
        assert reading.entries  # its own statements
        assert {e.key.rolname for e in reading.entries} == {role}
    finally:
        with pg_cluster.connect() as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_it_says_so_when_the_server_is_unreachable() -> None:
    status = ps.check(Target(host="127.0.0.1", port=9, dbname="x", user="x"))
    assert status.state == ps.ERROR and "127.0.0.1:9" in status.message


def test_it_marks_its_connection_as_poolboards(pg_cluster, cluster_db) -> None:
    ps.read(target(pg_cluster, cluster_db))
    with pg_cluster.connect(cluster_db) as conn:
        apps = conn.execute(
            "SELECT count(*) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
            " WHERE d.datname = %s AND s.query LIKE '/* poolboard */%%'",
            (cluster_db,),
        ).fetchone()[0]
    assert apps > 0


def test_before_postgresql_14_it_says_sessions_cannot_be_tied_to_statements() -> None:
    from poolboard.sources.pgstatements import OK, _judge

    target = types.SimpleNamespace(dbname="shop", user="monitor")
    args = dict(compute_query_id=None, track="top", max_entries=5000, schema="public", ext_version="1.8",
                available=True, read_all=True, superuser=False, columns=(), has_info=True, installed=True,
                preloaded=True)
    old = _judge(target, 130011, **args)
    assert old.state == OK
    assert "PostgreSQL 13 has no pg_stat_activity.query_id" in old.message
    assert "how many connections they hold, cannot be told" in old.message
    assert "query_id" not in _judge(target, 160002, **{**args, "compute_query_id": "auto"}).message
