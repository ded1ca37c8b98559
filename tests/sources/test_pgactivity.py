"""Snapshots against real sessions on the local PostgreSQL (no mocks).

Each test module run creates a throwaway database and drops it afterwards.
Note: pg_hba on this machine trusts 127.0.0.1, so a *wrong password* is
accepted by the server; the auth-failure path is exercised with a role that
does not exist instead (same code path: the server refuses at startup).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import timedelta

import psycopg
import pytest

from poolboard.lib.querytext import TRUNCATED
from poolboard.sources import pgactivity
from poolboard.sources.pgactivity import Limits, MonitorError, Target
from tests.pg import HOST, PORT, SUPERUSER, admin_conn
from tests.wait import wait_until

SUFFIX = f"{os.getpid()}"
BILLING = f"billing-t{SUFFIX}"


def monitor_count(conn, dbname: str | None = None) -> int:
    """poolboard-monitor sessions on this module's throwaway database.

    The server is shared with other people's work, which may run monitors of its
    own elsewhere; the tests here connect only to databases named pb_test_*_<pid>.
    """
    return conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'poolboard-monitor'"
        " AND datname LIKE %s",
        (dbname or f"pb\\_test\\_%\\_{SUFFIX}",),
    ).fetchone()[0]


def settled_monitor_count(conn, expected: int, dbname: str | None = None) -> int:
    """monitor_count once it reaches `expected`, or what it is after 3 s: a closed connection's
    backend leaves pg_stat_activity a moment after the client closes it."""
    try:
        wait_until(lambda: monitor_count(conn, dbname) == expected, timeout=3, what=f"{expected} monitor sessions")
    except AssertionError:
        return monitor_count(conn, dbname)
    return expected


@pytest.fixture
def admin():
    with admin_conn() as a:
        yield a


@pytest.fixture
def target(target_dbname):
    # The throwaway database of tests/conftest.py, where `sessions` opens its sessions.
    return Target(host=HOST, port=PORT, dbname=target_dbname, user=SUPERUSER)


def test_snapshot_sees_real_sessions_in_every_state(target, sessions, admin):
    sessions.idle(BILLING)
    sessions.idle(BILLING)
    iit = sessions.idle_in_transaction("search")
    sessions.active("reports")
    sessions.wait_active(admin, 1)
    iit_pid = iit.info.backend_pid

    snap = pgactivity.snapshot(target)

    server_now = admin.execute("SELECT now()").fetchone()[0]
    assert abs((server_now - snap.taken_at).total_seconds()) < 5
    assert snap.settings.max_connections > 0
    assert snap.settings.superuser_reserved_connections >= 0
    if snap.settings.server_version_num < 160000:
        assert snap.settings.reserved_connections is None

    by = {}
    for c in snap.counts:
        by[(c.application_name, c.state)] = by.get((c.application_name, c.state), 0) + c.count
    assert by[(BILLING, "idle")] == 2
    assert by[("search", "idle in transaction")] >= 1
    assert by[("reports", "active")] >= 1
    assert by[("poolboard-monitor", "active")] >= 1  # ourselves, counted in the budget
    assert snap.total == sum(c.count for c in snap.counts)

    rows = {s.pid: s for s in snap.sessions}
    assert snap.own_pid not in rows
    assert iit_pid in rows
    assert rows[iit_pid].state == "idle in transaction"
    assert rows[iit_pid].application_name == "search"
    assert rows[iit_pid].xact_start is not None and rows[iit_pid].state_change is not None
    assert rows[iit_pid].query == "SELECT $1"
    apps = {s.application_name for s in snap.sessions}
    assert "reports" in apps and BILLING not in apps  # idle sessions are counted, not listed
    assert settled_monitor_count(admin, 0) == 0  # closed afterwards


def test_session_rows_are_bounded_oldest_first(target, sessions, admin):
    # Only this database's sessions (the server is shared): a view over pg_stat_activity.
    with admin_conn(target.dbname) as a:
        a.execute(
            "CREATE OR REPLACE VIEW local_activity AS SELECT * FROM pg_stat_activity WHERE datname = current_database()"
        )
    pids = []
    for i in range(6):
        # Opened one after the other, so each xact_start is later than the one before.
        pids.append(sessions.idle_in_transaction(f"app{i}").info.backend_pid)
    snap = pgactivity.snapshot(target, limits=Limits(session_limit=3), activity_view="local_activity")
    assert [s.pid for s in snap.sessions] == pids[:3]
    assert snap.sessions_truncated_after == snap.sessions[-1].xact_start
    full = pgactivity.snapshot(target, activity_view="local_activity")
    assert full.sessions_truncated_after is None
    assert [s.pid for s in full.sessions] == pids


def test_counts_are_exact_across_the_whole_server(target, sessions, admin):
    # Other people's sessions on this shared server come and go, so compare
    # the sessions we opened, plus the invariant total == sum of groups.
    for i in range(5):
        for _ in range(i + 1):
            sessions.idle(f"exact{i}")
    snap = pgactivity.snapshot(target)
    mine = {}
    for c in snap.counts:
        if c.application_name.startswith("exact"):
            mine[c.application_name] = mine.get(c.application_name, 0) + c.count
    assert mine == {f"exact{i}": i + 1 for i in range(5)}
    assert snap.total == sum(c.count for c in snap.counts)
    assert snap.total >= 16


def test_connection_refused_is_quick_and_clear(target):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    t0 = time.monotonic()
    with pytest.raises(MonitorError) as e:
        pgactivity.snapshot(Target(host="127.0.0.1", port=port, dbname="x", user="u"), password="hunter2-secret")
    assert e.value.kind == "unreachable"
    assert "hunter2-secret" not in str(e.value)
    assert time.monotonic() - t0 < 3


def test_unknown_role_fails_without_leaking_the_password(target):
    bad = Target(host=HOST, port=PORT, dbname=target.dbname, user=f"pb_no_such_role_{SUFFIX}")
    with pytest.raises(MonitorError) as e:
        pgactivity.snapshot(bad, password="Sup3r-Secret-pw")
    assert e.value.kind == "auth"
    assert "Sup3r-Secret-pw" not in str(e.value) and "Sup3r-Secret-pw" not in repr(e.value)
    assert e.value.__cause__ is None and e.value.__suppress_context__
    check = pgactivity.check_database(bad, password="Sup3r-Secret-pw")
    assert not check.ok and not check.reachable
    assert "Sup3r-Secret-pw" not in check.error


def test_sanitise_removes_password_and_conninfo_secrets():
    msg = 'connection to "h" failed: password=abc123 bad; dsn host=x password=\'q w\' user=u; abc123'
    out = pgactivity.sanitise(msg, "abc123")
    assert "abc123" not in out and "q w" not in out


@pytest.mark.slow  # waits out libpq's connect_timeout, 2 s at the least
def test_a_hanging_server_is_cut_by_connect_timeout():
    """A TCP listener that accepts and never answers the startup packet."""

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    accepted = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(MonitorError) as e:
            pgactivity.snapshot(Target(host="127.0.0.1", port=port, dbname="x", user="u"), limits=Limits(connect_timeout=2))
        elapsed = time.monotonic() - t0
        assert e.value.kind == "timeout"
        assert elapsed < 6, elapsed
        assert accepted  # it really connected and hung
    finally:
        stop.set()
        t.join()
        for c in accepted:
            c.close()
        listener.close()


def test_statement_timeout_cancels_a_slow_view_and_nothing_lingers(target, admin):
    with admin_conn(target.dbname) as a:
        a.execute("CREATE OR REPLACE VIEW slow_activity AS SELECT * FROM pg_stat_activity WHERE pg_sleep(5) IS NOT NULL")
    t0 = time.monotonic()
    with pytest.raises(MonitorError) as e:
        pgactivity.snapshot(target, limits=Limits(statement_timeout_ms=1000), activity_view="slow_activity")
    assert e.value.kind == "timeout"
    assert "statement timeout" in str(e.value)
    assert time.monotonic() - t0 < 4
    assert settled_monitor_count(admin, 0) == 0


def test_lock_timeout_holds_when_a_relation_is_locked(target, sessions, admin):
    with admin_conn(target.dbname) as a:
        a.execute("CREATE TABLE IF NOT EXISTS locked_rel (x int)")
        a.execute(
            "CREATE OR REPLACE VIEW locked_activity AS"
            " SELECT a.* FROM pg_stat_activity a LEFT JOIN locked_rel ON false"
        )
    holder = sessions.open("locker", autocommit=False)
    holder.execute("LOCK TABLE locked_rel IN ACCESS EXCLUSIVE MODE")
    t0 = time.monotonic()
    with pytest.raises(MonitorError) as e:
        pgactivity.snapshot(target, limits=Limits(lock_timeout_ms=500), activity_view="locked_activity")
    assert e.value.kind == "timeout"
    assert "lock timeout" in str(e.value)
    assert time.monotonic() - t0 < 3
    assert settled_monitor_count(admin, 0) == 0


def test_monitor_connections_are_read_only(target):
    conn = pgactivity.connect(target, None)
    try:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE should_not_exist (x int)")
    finally:
        conn.close()


def test_it_refuses_above_the_monitor_cap_and_leaves_nothing_behind(target, sessions, admin):
    for _ in range(3):
        sessions.idle("poolboard-monitor")
    assert settled_monitor_count(admin, 3) == 3
    with pytest.raises(MonitorError) as e:
        pgactivity.snapshot(target, limits=Limits(max_monitor_connections=3))
    assert e.value.kind == "too_many_monitors"
    assert settled_monitor_count(admin, 3) == 3


def test_many_concurrent_workers_never_exceed_the_cap(target, admin):
    seen = []
    stop = threading.Event()

    def watch():
        with admin_conn() as w:
            while not stop.is_set():
                seen.append(monitor_count(w))

    watcher = threading.Thread(target=watch)
    watcher.start()
    results = []

    def work():
        try:
            pgactivity.snapshot(target)
            results.append("ok")
        except MonitorError as exc:
            results.append(exc.kind)

    workers = [threading.Thread(target=work) for _ in range(20)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    watcher.join()
    assert results.count("ok") >= 1
    assert set(results) <= {"ok", "busy", "too_many_monitors"}
    assert max(seen) <= pgactivity.DEFAULT_MAX_MONITOR_CONNECTIONS
    assert settled_monitor_count(admin, 0) == 0


@pytest.fixture
def nopriv_role(admin):
    role = f"pb_test_nopriv_{SUFFIX}"
    admin.execute(f'DROP ROLE IF EXISTS "{role}"')
    admin.execute(f'CREATE ROLE "{role}" LOGIN')
    yield role
    admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_without_pg_monitor_other_sessions_are_hidden_and_check_warns(target, sessions, admin, nopriv_role):
    sessions.idle_in_transaction("hidden-app", "SELECT 'card=4111111111111111'")
    mon = Target(host=HOST, port=PORT, dbname=target.dbname, user=nopriv_role)

    check = pgactivity.check_database(mon)
    assert check.ok and check.reachable and not check.can_read_all_stats
    assert any("pg_read_all_stats" in w and "hidden" in w for w in check.warnings)

    snap = pgactivity.snapshot(mon)
    # other roles' sessions: application_name and user visible, state and address hidden, still counted
    hidden = [c for c in snap.counts if c.application_name == "hidden-app"]
    assert hidden and all(c.state == "" and c.client_addr == "" for c in hidden)
    assert all(s.application_name != "hidden-app" for s in snap.sessions)
    assert "4111" not in repr(snap)

    admin.execute(f'GRANT pg_monitor TO "{nopriv_role}"')
    try:
        check = pgactivity.check_database(mon)
        assert check.can_read_all_stats and check.warnings == []
        snap = pgactivity.snapshot(mon)
        row = [s for s in snap.sessions if s.application_name == "hidden-app"][0]
        assert row.query == "SELECT $1"
        assert "4111" not in repr(snap)
    finally:
        admin.execute(f'REVOKE pg_monitor FROM "{nopriv_role}"')
    assert settled_monitor_count(admin, 0) == 0


def test_check_database_reports_version_and_max_connections(target, admin):
    check = pgactivity.check_database(target)
    assert check.ok and check.server_version and check.server_version_num >= 100000
    assert check.max_connections == int(admin.execute("SHOW max_connections").fetchone()[0])
    assert check.is_superuser and any("superuser" in w for w in check.warnings)


def test_hostile_query_text_is_normalised(target, sessions, admin):
    sessions.active(
        "hostile",
        "SELECT pg_sleep(30), '<script>alert(1)</script>' AS \"<div hx-get='/admin/' hx-trigger='load'>\","
        " 'card=4111111111111111' /* token=abc */",
    )
    sessions.active("huge", "SELECT pg_sleep(30), '" + "x" * 1_000_000 + "'")
    sessions.wait_active(admin, 2)
    snap = pgactivity.snapshot(target)
    rows = {s.application_name: s for s in snap.sessions}
    hostile = rows["hostile"].query
    assert "alert(1)" not in hostile and "4111" not in hostile and "token" not in hostile
    assert hostile.startswith("SELECT pg_sleep($1), $2 AS ")
    assert rows["huge"].query == TRUNCATED


def test_invalid_utf8_in_pg_stat_activity_does_not_break_the_snapshot(target, sessions, admin):
    name = f"pb_test_ascii_{SUFFIX}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.execute(f"CREATE DATABASE \"{name}\" ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
    try:
        sessions.active("badbytes", b"SELECT pg_sleep(30), '\xff\xfe' AS \"col\xc3\"", dbname=name)

        def badbytes_running():
            rows = [s for s in pgactivity.snapshot(target).sessions if s.application_name == "badbytes"]
            return rows if rows and rows[0].state == "active" else None

        [row] = wait_until(badbytes_running, what="the badbytes query to run")
        assert row.query.startswith("SELECT pg_sleep($1), $2 AS")
        assert "\ufffd" in row.query
        assert row.datname == name
    finally:
        sessions.close()
        sessions.conns.clear()
        sessions.threads.clear()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_cancel_and_terminate_need_the_same_backend(target, sessions, admin):
    sleeper = sessions.active("victim")
    idler = sessions.idle("victim2")
    sessions.wait_active(admin, 1)
    pid = sleeper.info.backend_pid
    bs = admin.execute("SELECT backend_start FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]

    # a pid whose backend_start differs (reused pid) is left alone
    assert not pgactivity.signal_backend(target, None, pid, bs + timedelta(seconds=1), "cancel")
    assert pgactivity.signal_backend(target, None, pid, bs, "cancel")
    sessions.threads[0].join(timeout=5)
    state = admin.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]
    assert state == "idle"  # the query was cancelled, the session lives

    ipid = idler.info.backend_pid
    ibs = admin.execute("SELECT backend_start FROM pg_stat_activity WHERE pid = %s", (ipid,)).fetchone()[0]
    assert pgactivity.signal_backend(target, None, ipid, ibs, "terminate")
    wait_until(
        lambda: not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (ipid,)).fetchone(),
        timeout=2.5, what="the backend to be terminated",
    )
    with pytest.raises(ValueError, match="action must be 'cancel' or 'terminate'"):
        pgactivity.signal_backend(target, None, ipid, ibs, "drop")
    # A closed connection's backend leaves pg_stat_activity a moment after the client goes.
    wait_until(
        lambda: admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'poolboard-%%' AND datname = %s",
            (target.dbname,),
        ).fetchone()[0] == 0,
        timeout=3, what="poolboard's signalling sessions to leave",
    )


def test_connection_kwargs_carry_every_bound():
    kw = pgactivity.connection_kwargs(Target(host="h", user="u"), "pw", Limits())
    assert kw["connect_timeout"] == 5
    assert kw["application_name"] == "poolboard-monitor"
    assert "-c statement_timeout=5000" in kw["options"]
    assert "-c lock_timeout=1000" in kw["options"]
    assert "-c default_transaction_read_only=on" in kw["options"]
    with pytest.raises(ValueError, match="activity_view must be a plain"):
        pgactivity.snapshot(Target(host="h"), activity_view="x; DROP TABLE y")
