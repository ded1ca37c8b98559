"""store_snapshot() on synthetic snapshots: exactly what is written, row by row.

The hot path is hand-written SQL (pipelines, unnest(), ON CONFLICT), so these
pin its results against what lib.episodes decides, and check that a failure
anywhere leaves nothing behind, inside a test transaction (savepoint) and
outside one (a real COMMIT).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from poolboard.databases.models import (
    AttributionRule,
    Episode,
    MonitoredServer,
    QueryFingerprint,
    SessionCount,
    Snapshot,
)
from poolboard.databases.snapshots import store_snapshot
from poolboard.lib import episodes as ep
from poolboard.lib.budget import ServerSettings
from poolboard.lib.budget import SessionCount as Count
from poolboard.sources import pgactivity

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
BS = T0 - timedelta(hours=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def session(pid, state, start, fp, query="SELECT $1", app="billing", addr="10.0.0.1", wait="ClientRead"):
    return ep.Session(
        pid=pid, backend_start=BS, xact_start=start, query_start=start, state_change=start, state=state,
        wait_event_type="Client", wait_event=wait, application_name=app, usename="app", client_addr=addr,
        datname="orders", query=query, fingerprint=fp,
    )


def snapshot(taken_at, sessions, counts=()):
    counts = list(counts) or [Count("billing", "app", "10.0.0.1", "idle in transaction", "Client", 3),
                              Count("cron", "app", "", "active", "", 2)]
    return pgactivity.Snapshot(
        taken_at=taken_at, settings=ServerSettings(max_connections=100, server_version_num=150004), counts=counts,
        total=sum(c.count for c in counts), sessions=sessions, sessions_truncated_after=None,
    )


@pytest.fixture
def orders(db):
    # Defaults: idle in transaction 60 s, query 30 s, transaction 300 s; 30 s slots.
    return MonitoredServer.objects.create(name="orders-synthetic", host="127.0.0.1")


A = "a" * 16  # idle in transaction from T0
B = "b" * 16  # a long query from T0+10 s, gone by the second snapshot
C = "c" * 16  # a long query from T0+350 s
D = "d" * 16  # a long query from T0+20 s whose text is hidden (no fingerprint) in the first snapshot


def test_store_writes_what_the_episode_tracker_decides(orders, make_service):
    billing = make_service("billing")
    AttributionRule.objects.create(service=billing, client_addr="10.0.0.0/8")
    a = session(1, "idle in transaction", T0, A, query="UPDATE t SET x = $1")
    b = session(2, "active", at(10), B, query="SELECT pg_sleep($1)", app="cron", addr="")
    d = session(4, "active", at(20), "", query="<insufficient privilege>", app="cron", addr="")

    first = store_snapshot(orders, snapshot(at(100), [a, b, d]))
    assert (first.status, first.opened, first.updated, first.closed) == ("ok", 3, 0, 0)

    a_later = session(1, "idle in transaction (aborted)", T0, A, query="(a different text, same fingerprint)", wait="")
    c = session(3, "active", at(350), C, app="cron", addr="")
    d_later = session(4, "active", at(20), D, query="SELECT count(*) FROM t", app="cron", addr="", wait="DataFileRead")
    second = store_snapshot(orders, snapshot(at(400), [a_later, c, d_later]))
    # A: idle in transaction updated, long transaction (400 s >= 300 s) opened; B closed; C opened;
    # D: long query updated (and now has a query), long transaction (380 s) opened.
    assert (second.status, second.opened, second.updated, second.closed) == ("ok", 3, 2, 1)

    episodes = {(e.pid, e.kind): e for e in Episode.objects.filter(server=orders).select_related("query")}
    assert set(episodes) == {
        (1, ep.IDLE_IN_TRANSACTION), (1, ep.LONG_TRANSACTION), (2, ep.LONG_QUERY), (3, ep.LONG_QUERY),
        (4, ep.LONG_QUERY), (4, ep.LONG_TRANSACTION)}
    iit = episodes[1, ep.IDLE_IN_TRANSACTION]
    assert (iit.first_seen, iit.last_seen, iit.peak_age_s, iit.ended) == (at(100), at(400), 400.0, None)
    assert (iit.started, iit.backend_start, iit.service_id, iit.query.fingerprint) == (T0, BS, billing.id, A)
    assert (iit.state, iit.wait_event, iit.application_name, iit.client_addr, iit.datname) == (
        "idle in transaction (aborted)", "", "billing", "10.0.0.1", "orders")
    hidden = episodes[4, ep.LONG_QUERY]
    assert (hidden.first_seen, hidden.last_seen, hidden.peak_age_s, hidden.query.fingerprint) == (
        at(100), at(400), 380.0, D)
    assert (hidden.state, hidden.wait_event) == ("active", "DataFileRead")
    long_tx = episodes[1, ep.LONG_TRANSACTION]
    assert (long_tx.first_seen, long_tx.last_seen, long_tx.peak_age_s, long_tx.query.fingerprint) == (
        at(400), at(400), 400.0, A)
    gone = episodes[2, ep.LONG_QUERY]
    assert (gone.first_seen, gone.last_seen, gone.peak_age_s, gone.ended) == (at(100), at(100), 90.0, at(400))
    assert gone.service_id is None and gone.query.fingerprint == B
    assert (gone.state, gone.wait_event) == ("active", "ClientRead")
    new = episodes[3, ep.LONG_QUERY]
    assert (new.first_seen, new.peak_age_s, new.ended, new.query.fingerprint) == (at(400), 50.0, None, C)

    # A fingerprint keeps its first text and first_seen; last_seen moves to the newest sighting.
    fps = {f.fingerprint: f for f in QueryFingerprint.objects.all()}
    assert (fps[A].text, fps[A].first_seen, fps[A].last_seen) == ("UPDATE t SET x = $1", at(100), at(400))
    assert (fps[B].first_seen, fps[B].last_seen) == (at(100), at(100))

    snaps = list(Snapshot.objects.filter(server=orders).order_by("slot"))
    assert [(s.taken_at, s.total, s.max_connections, s.sessions_listed) for s in snaps] == [
        (at(100), 5, 100, 3), (at(400), 5, 100, 3)]
    counts = sorted(SessionCount.objects.filter(snapshot=snaps[1]).values_list(
        "application_name", "usename", "client_addr", "state", "wait_event_type", "count", "service_id"))
    assert counts == [("billing", "app", "10.0.0.1", "idle in transaction", "Client", 3, billing.id),
                      ("cron", "app", "", "active", "", 2, None)]

    orders.refresh_from_db()
    assert (orders.last_snapshot_at, orders.server_version, orders.last_sessions_truncated) == (at(400), "15.4", False)
    assert orders.last_sessions[:2] == [
        {
            "pid": 1, "backend_start": BS.isoformat(), "xact_start": T0.isoformat(), "query_start": T0.isoformat(),
            "state_change": T0.isoformat(), "age_s": 400.0, "state": "idle in transaction (aborted)",
            "wait_event_type": "Client", "wait_event": "", "application_name": "billing", "usename": "app",
            "client_addr": "10.0.0.1", "datname": "orders", "query": "(a different text, same fingerprint)",
            "fingerprint": A, "service": "billing",
        },
        {
            "pid": 3, "backend_start": BS.isoformat(), "xact_start": at(350).isoformat(),
            "query_start": at(350).isoformat(), "state_change": at(350).isoformat(), "age_s": 50.0,
            "state": "active", "wait_event_type": "Client", "wait_event": "ClientRead", "application_name": "cron",
            "usename": "app", "client_addr": "", "datname": "orders", "query": "SELECT $1", "fingerprint": C,
            "service": None,
        },
    ]
    assert [s["pid"] for s in orders.last_sessions] == [1, 3, 4]


def test_fingerprint_last_seen_never_moves_back(orders, db):
    other = MonitoredServer.objects.create(name="other-synthetic", host="127.0.0.1", port=5433)
    store_snapshot(orders, snapshot(at(400), [session(1, "idle in transaction", T0, A)]))
    store_snapshot(other, snapshot(at(100), [session(1, "idle in transaction", T0, A)]))  # an older snapshot
    fp = QueryFingerprint.objects.get(fingerprint=A)
    assert (fp.first_seen, fp.last_seen) == (at(400), at(400))
    assert Episode.objects.filter(query=fp).count() == 3  # two kinds at 400 s, one at 100 s


def _conflicting_store(orders):
    # A closed episode with the identity the snapshot would open: the insert fails.
    Episode.objects.create(
        server=orders, kind=ep.IDLE_IN_TRANSACTION, pid=1, backend_start=BS, started=T0, first_seen=T0,
        last_seen=T0, ended=T0, peak_age_s=0,
    )
    return store_snapshot(orders, snapshot(at(100), [session(1, "idle in transaction", T0, A)]))


def _assert_nothing_stored(orders):
    assert not Snapshot.objects.filter(server=orders).exists()
    assert not SessionCount.objects.filter(snapshot__server=orders).exists()
    assert not QueryFingerprint.objects.filter(fingerprint=A).exists()
    assert Episode.objects.filter(server=orders).count() == 1
    orders.refresh_from_db()
    assert orders.last_sessions == [] and orders.last_snapshot_at is None


def test_a_failing_statement_leaves_nothing_behind(orders):
    assert _conflicting_store(orders).status == "skipped"
    _assert_nothing_stored(orders)
    # The connection is usable afterwards, and the next snapshot stores normally.
    assert store_snapshot(orders, snapshot(at(200), [])).status == "ok"


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_it_commits_or_rolls_back_as_a_whole(orders):
    from django.db import connection

    assert not connection.in_atomic_block
    assert _conflicting_store(orders).status == "skipped"
    _assert_nothing_stored(orders)

    snap = snapshot(at(200), [session(1, "idle in transaction", at(150), A)])
    assert store_snapshot(orders, snap).status == "ok"
    # Committed (the COMMIT goes in the store's pipeline): another connection sees it.
    import psycopg

    with psycopg.connect(**connection.get_connection_params()) as other:
        assert other.execute(
            "SELECT count(*) FROM databases_snapshot WHERE server_id = %s", [orders.pk]
        ).fetchone()[0] == 1
    assert store_snapshot(orders, snap).status == "skipped"  # a redelivered slot
    assert Snapshot.objects.filter(server=orders).count() == 1
    assert SessionCount.objects.filter(snapshot__server=orders).count() == 2
    assert not connection.in_atomic_block and connection.get_autocommit()


def test_old_snapshots_go_with_their_counts_and_holds_and_the_rest_stay(orders):
    from django.utils import timezone

    from poolboard.databases.models import QueryHold
    from poolboard.databases.tasks import prune_snapshots

    now = timezone.now()
    snaps = [
        Snapshot.objects.create(server=orders, slot=i, taken_at=now - timedelta(days=days), total=2,
                                max_connections=100, superuser_reserved_connections=3)
        for i, days in enumerate((30, 20, 1))
    ]
    for snap in snaps:
        SessionCount.objects.create(snapshot=snap, state="active", count=2)
        QueryHold.objects.create(snapshot=snap, query_id=7, count=2)
    assert Snapshot.objects.prune(now - timedelta(days=25), batch=1) == 1
    assert prune_snapshots() == 1  # RAW_RETENTION_DAYS (14): the 20-day-old one
    kept = snaps[-1].pk
    assert list(Snapshot.objects.values_list("pk", flat=True)) == [kept]
    assert list(SessionCount.objects.values_list("snapshot_id", flat=True)) == [kept]
    assert list(QueryHold.objects.values_list("snapshot_id", flat=True)) == [kept]
