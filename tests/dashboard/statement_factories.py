"""Statement statistics as the collector and the snapshots store them, written directly:
statements with their intervals, and snapshots with the QueryHold rows that say which
service's sessions ran which statement."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from django.utils import timezone

from poolboard.databases.models import Episode, QueryFingerprint, QueryHold, Snapshot
from poolboard.lib import episodes as ep
from poolboard.statements.models import Statement, StatementInterval, StatementsStatus

INTERVAL = timedelta(minutes=5)


def fingerprint(text: str) -> QueryFingerprint:
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    now = datetime.now().astimezone()
    return QueryFingerprint.objects.get_or_create(fingerprint=digest, defaults={"text": text, "first_seen": now, "last_seen": now})[0]


def make_statement(server, text: str, queryid: int, *, now: datetime, calls: list[int], mean_ms: float,
                   datname: str = "app", rolname: str = "app", rows_per_call: int = 1, max_ms: float | None = None) -> Statement:
    """A statement with one 5-minute interval per entry of `calls`, the newest ending at `now`."""
    statement = Statement.objects.create(
        server=server, datname=datname, rolname=rolname, queryid=queryid, query=fingerprint(text),
        first_seen=now - INTERVAL * (len(calls) + 1), last_seen=now,
    )
    StatementInterval.objects.bulk_create(
        StatementInterval(
            statement=statement, start=now - INTERVAL * (len(calls) - i), end=now - INTERVAL * (len(calls) - i - 1),
            calls=n, total_exec_ms=n * mean_ms, rows=n * rows_per_call, shared_blks_hit=n, shared_blks_read=0,
            max_exec_ms=max_ms,
        )
        for i, n in enumerate(calls)
    )
    return statement


def snapshot_with_holds(server, taken_at: datetime, holds: list[tuple]) -> Snapshot:
    """One snapshot; holds: (statement, service or None, application_name, sessions running it)."""
    snap = Snapshot.objects.create(
        server=server, slot=int(taken_at.timestamp()) // 10, taken_at=taken_at, total=sum(h[3] for h in holds),
        max_connections=100, superuser_reserved_connections=3,
    )
    QueryHold.objects.bulk_create(
        QueryHold(snapshot=snap, datname=st.datname, query_id=st.queryid, service=service, application_name=app, count=n)
        for st, service, app, n in holds
    )
    return snap


SLEEP = "SELECT pg_sleep($1)"
ORDERS = "SELECT id, amount_cents FROM orders WHERE customer_id = $1"
HOSTILE = "SELECT $1 AS \"<script>alert('x')</script>\""


def statement_fleet(monitored, make_service, settings) -> dict:
    """reports (one pool of 5) runs 40 s pg_sleeps, 3 at once at peak; checkout (two pools of 10)
    runs a 2 ms lookup 3 000 times; nobody was seen running the hostile-named one."""
    settings.DATABASE_SNAPSHOT_INTERVAL = 10  # each snapshot's sessions count 10 s of held connection
    now = timezone.now()
    reports = make_service("reports", instances=1, max=5, in_use=3)
    checkout = make_service("checkout", instances=2, max=10, in_use=1)
    StatementsStatus.objects.create(server=monitored, state="ok", checked_at=now)
    sleep = make_statement(monitored, SLEEP, 111, now=now, calls=[2, 2, 2], mean_ms=40_000, max_ms=45_000)
    orders = make_statement(monitored, ORDERS, 222, now=now, calls=[1000, 1000, 1000], mean_ms=2, rows_per_call=10)
    hostile = make_statement(monitored, HOSTILE, 333, now=now, calls=[1], mean_ms=1)
    for minutes, held in ((3, 2), (2, 3), (1, 3)):
        snapshot_with_holds(monitored, now - timedelta(minutes=minutes), [
            (sleep, reports, "reports", held),
            *([(orders, checkout, "checkout", 1)] if minutes == 1 else []),
        ])
    Episode.objects.create(
        server=monitored, kind=ep.LONG_QUERY, pid=4242, started=now - timedelta(minutes=2), first_seen=now - timedelta(minutes=2),
        last_seen=now - timedelta(minutes=1), peak_age_s=41.0, application_name="reports", usename="app", datname="app",
        service=reports, query=sleep.query,
    )
    return {"server": monitored, "reports": reports, "checkout": checkout, "sleep": sleep, "orders": orders, "hostile": hostile}
