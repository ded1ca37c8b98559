"""Real PostgreSQL sessions for tests: throwaway databases and sessions in chosen states.

Shared by the pg_stat_activity adapter tests and the databases app's tests (like
tests/prom.py for Prometheus). Connects as the local superuser (trust auth here).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

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
        for _ in range(100):
            got = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active'"
                " AND pid <> pg_backend_pid()",
                (self.dbname,),
            ).fetchone()[0]
            if got >= n:
                return
            time.sleep(0.05)
        raise AssertionError("sessions did not become active")

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
