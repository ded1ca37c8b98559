"""Fixtures for the database side: a throwaway target database with real sessions."""

from __future__ import annotations

import os

import psycopg
import pytest

from tests.pg import HOST, PORT, SUPERUSER, Sessions, admin_conn, throwaway_database


@pytest.fixture(scope="session")
def target_dbname():
    with throwaway_database(f"pb_test_dbside_{os.getpid()}") as name:
        yield name


@pytest.fixture
def sessions(target_dbname):
    s = Sessions(target_dbname)
    yield s
    s.close()


@pytest.fixture
def fast_slots(settings):
    # One snapshot slot per second, so a test can take several snapshots.
    settings.DATABASE_SNAPSHOT_INTERVAL = 1
    return settings


@pytest.fixture
def monitored(db, target_dbname):
    from poolboard.databases.models import MonitoredDatabase

    return MonitoredDatabase.objects.create(
        name="orders-db", host=HOST, port=PORT, dbname=target_dbname, user=SUPERUSER,
        idle_in_transaction_s=1, query_s=1, transaction_s=3600,
    )


def copy_newest_snapshot(monitored, name: str):
    """Another monitored database whose newest snapshot (and live sessions) are a copy of `monitored`'s."""
    from poolboard.databases.models import MonitoredDatabase

    other = MonitoredDatabase.objects.create(
        name=name, host="127.0.0.1", dbname="postgres", user="root", last_sessions=monitored.last_sessions
    )
    snap = monitored.snapshots.order_by("-slot").first()
    counts = list(snap.counts.all())
    snap.pk, snap.database = None, other
    snap.save()
    for count in counts:
        count.pk, count.snapshot = None, snap
        count.save()
    return other


def monitor_sessions() -> int:
    """poolboard-monitor sessions on this run's target database (the server is shared)."""
    import time

    with admin_conn() as a:
        for _ in range(60):  # a closed connection's backend exits a moment later
            n = a.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'poolboard-monitor' AND datname = %s",
                (f"pb_test_dbside_{os.getpid()}",),
            ).fetchone()[0]
            if n == 0:
                break
            time.sleep(0.05)
        return n


__all__ = ["HOST", "PORT", "SUPERUSER", "psycopg", "copy_newest_snapshot", "monitor_sessions"]
