"""Statement statistics as the collector and the snapshots store them, written directly:
statements with their intervals, and snapshots with the QueryHold rows that say which
service's sessions ran which statement."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from poolboard.databases.models import QueryFingerprint, QueryHold, Snapshot
from poolboard.statements.models import Statement, StatementInterval

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
