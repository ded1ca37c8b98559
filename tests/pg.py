"""Real PostgreSQL sessions for tests: throwaway databases and sessions in chosen states.

Shared by the pg_stat_activity adapter tests and the databases app's tests (like
tests/prom.py for Prometheus). Connects as the local superuser (trust auth here).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import psycopg

from tests.wait import wait_until

HOST = os.environ.get("POOLBOARD_TEST_PGHOST", "127.0.0.1")
PORT = int(os.environ.get("POOLBOARD_TEST_PGPORT", "5432"))
SUPERUSER = os.environ.get("POOLBOARD_TEST_PGUSER", "root")


def admin_conn(dbname="postgres"):
    return psycopg.connect(host=HOST, port=PORT, user=SUPERUSER, dbname=dbname, autocommit=True)


@contextmanager
def throwaway_database(name: str) -> Iterator[str]:
    """Create database `name` (dropping a leftover first) and drop it afterwards."""
    with admin_conn() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin_conn() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Sessions:
    """Open real sessions in states a monitor should see; close them all on teardown."""

    def __init__(self, dbname):
        self.dbname = dbname
        self.conns: list[psycopg.Connection] = []
        self.threads: list[threading.Thread] = []

    def open(self, app, user=SUPERUSER, dbname=None, autocommit=True):
        conn = psycopg.connect(
            host=HOST, port=PORT, user=user, dbname=dbname or self.dbname,
            application_name=app, autocommit=autocommit,
        )
        self.conns.append(conn)
        return conn

    def idle(self, app):
        conn = self.open(app)
        conn.execute("SELECT 1")
        return conn

    def idle_in_transaction(self, app, sql="SELECT 1"):
        conn = self.open(app, autocommit=False)
        conn.execute(sql)
        return conn

    def active(self, app, sql="SELECT pg_sleep(30)", dbname=None):
        conn = self.open(app, dbname=dbname)
        started = threading.Event()

        def run():
            started.set()
            try:
                conn.execute(sql)
            except Exception:
                pass

        t = threading.Thread(target=run, daemon=True)
        t.start()
        started.wait()
        self.threads.append(t)
        return conn

    def wait_active(self, admin, n):
        wait_until(
            lambda: admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active'"
                " AND pid <> pg_backend_pid()",
                (self.dbname,),
            ).fetchone()[0] >= n,
            timeout=5, what=f"{n} active sessions",
        )

    def wait_seen(self, states, older_than: float = 0.0, timeout: float = 10) -> None:
        """Until pg_stat_activity shows a session of each application in its state ({"billing":
        "idle in transaction"}, or (application, state) pairs), in it for at least `older_than`
        seconds by the server's clock: the age a monitor compares with its thresholds."""
        wanted = list(states.items()) if isinstance(states, dict) else list(states)

        def seen() -> bool:
            with admin_conn() as admin:
                rows = admin.execute(
                    "SELECT application_name, state, extract(epoch FROM clock_timestamp() - state_change)"
                    " FROM pg_stat_activity WHERE datname = %s",
                    (self.dbname,),
                ).fetchall()
            oldest: dict[tuple[str, str], float] = {}
            for app, state, age in rows:
                if age is not None:
                    oldest[(app, state)] = max(float(age), oldest.get((app, state), 0.0))
            return all(oldest.get(key, -1.0) >= older_than for key in wanted)

        wait_until(seen, timeout=timeout, what=f"{wanted} for {older_than} s")

    def close(self):
        for conn in self.conns:
            try:
                conn.cancel_safe(timeout=2)
            except Exception:
                pass
        for t in self.threads:
            t.join(timeout=5)
        for conn in self.conns:
            conn.close()


def server_now() -> datetime:
    """The PostgreSQL server's clock, which snapshot times and slots come from."""
    with admin_conn() as admin:
        return admin.execute("SELECT clock_timestamp()").fetchone()[0]


def wait_for_next_slot(taken_at: datetime, interval_s: float) -> None:
    """Until the server's clock is in a later snapshot slot than a snapshot taken at `taken_at`."""
    slot = taken_at.timestamp() // interval_s
    wait_until(lambda: server_now().timestamp() // interval_s > slot, timeout=interval_s + 5, what="the next slot")


def monitor_sessions(dbname: str) -> int:
    """poolboard-monitor sessions on `dbname` once closed ones are gone (a backend exits a moment
    after its client closes the connection), or as many as are left after 3 s."""

    def count() -> int:
        with admin_conn() as admin:
            return admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'poolboard-monitor' AND datname = %s",
                (dbname,),
            ).fetchone()[0]

    try:
        wait_until(lambda: count() == 0, timeout=3)
    except AssertionError:
        pass
    return count()
