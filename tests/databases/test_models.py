"""Model and QuerySet methods of the database side, on stored snapshots of a real server."""

from __future__ import annotations

import os

import pytest

from poolboard.databases.models import AttributionRule, MonitoredServer, Snapshot
from poolboard.databases.snapshots import snapshot_server
from tests.databases.factories import copy_newest_snapshot

pytestmark = pytest.mark.django_db

SFX = f"-m{os.getpid()}"  # the target server is shared
BILLING = "billing" + SFX


@pytest.fixture
def stored(monitored, sessions, make_service, fast_slots):
    billing = make_service(BILLING)
    sessions.idle(BILLING)
    sessions.idle(BILLING)
    sessions.idle_in_transaction(BILLING)
    sessions.active(BILLING, "SELECT pg_sleep(30)")
    # Past the 1 s thresholds: the idle-in-transaction session is an open episode.
    sessions.wait_seen([(BILLING, "idle"), (BILLING, "active"), (BILLING, "idle in transaction")], older_than=1)
    assert snapshot_server(monitored).status == "ok"
    monitored.refresh_from_db()
    return monitored, billing


def test_it_budgets_by_the_attribution_stored_with_the_snapshot(stored, make_service, django_assert_num_queries):
    monitored, billing = stored
    # A rule added after the snapshot moves nothing: the budget reads what was attributed then.
    AttributionRule.objects.create(service=make_service("other" + SFX), application_name=BILLING)
    snap = monitored.latest_snapshot()
    with django_assert_num_queries(0):  # counts and their services came with the snapshot
        budget = snap.budget()
    assert dict((s.label, s.count) for s in budget.slices)[BILLING] == 4
    assert "other" + SFX not in {s.label for s in budget.slices}
    assert sum(s.count for s in budget.slices) == budget.total == snap.total


def test_it_gives_a_services_database_side_as_plain_data(stored, make_service):
    monitored, billing = stored
    side = Snapshot.objects.service_side(billing)
    [row] = side["rows"]
    assert row["server"] == monitored.name and row["taken_at"] == monitored.last_snapshot_at
    states = row["states"]
    assert (states.total, states.active, states.idle, states.idle_in_tx) == (4, 1, 2, 1)
    assert row["oldest_xact_s"] >= 1
    assert side["open_episodes"] >= 1
    assert (side["pool_in_use"], side["pool_max"]) == (None, None)  # no pool collected: absent, not 0
    assert Snapshot.objects.service_side(make_service("nobody" + SFX))["rows"] == []


def test_it_reads_a_services_database_side_in_five_queries_whatever_the_databases(stored, django_assert_num_queries):
    monitored, billing = stored
    with django_assert_num_queries(5):
        Snapshot.objects.service_side(billing)
    for name in ("second-db", "third-db"):
        copy_newest_snapshot(monitored, name)
    with django_assert_num_queries(5):
        side = Snapshot.objects.service_side(billing)
    assert [r["server"] for r in side["rows"]] == [monitored.name, "second-db", "third-db"]


def test_it_finds_every_databases_snapshots_in_a_window_by_index(db):
    """The diagnosis reads many services' server side over a window: the window, not the history."""
    from datetime import datetime, timedelta, timezone

    from django.db import connection

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    dbs = [MonitoredServer.objects.create(name=f"hist-{i}", host="127.0.0.1", port=6000 + i) for i in range(4)]
    Snapshot.objects.bulk_create(
        Snapshot(server=d, slot=i, taken_at=t0 + timedelta(seconds=30 * i), total=1, max_connections=100,
                 superuser_reserved_connections=3)
        for d in dbs for i in range(3000)  # 25 hours of 30 s snapshots each
    )
    with connection.cursor() as cur:
        cur.execute(f"ANALYZE {Snapshot._meta.db_table}")
    window = Snapshot.objects.filter(taken_at__gt=t0 + timedelta(hours=20), taken_at__lte=t0 + timedelta(hours=20, minutes=30))
    assert window.count() == 4 * 60
    assert "snapshot_taken_at" in window.explain()


def test_an_episodes_duration_is_bounded_by_the_snapshots():
    from datetime import datetime, timedelta, timezone

    from poolboard.dashboard.templatetags.db_extras import duration_bounds
    from poolboard.databases.models import Episode

    t0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
    e = Episode(kind="long_query", pid=1, started=t0, first_seen=t0, last_seen=t0 + timedelta(seconds=41.3),
                peak_age_s=41.3)
    assert (e.duration_s, e.duration_max_s) == (41.3, None)
    assert duration_bounds(e) == "≥ 41 s, ongoing"
    e.ended = t0 + timedelta(seconds=51.2)  # the first snapshot that no longer saw it
    assert e.duration_max_s == pytest.approx(51.2)
    assert duration_bounds(e) == "≥ 41 s, ≤ 52 s"  # rounded outwards: still bounds
