"""End to end on a throwaway cluster: a service's sessions run a statement of known duration; the
snapshots record how many of its connections the statement held (databases.QueryHold), the
statement readings its calls and mean; Statement.objects.top() puts the two together."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from poolboard.databases.models import MonitoredServer, QueryHold
from poolboard.databases.snapshots import snapshot_server
from poolboard.statements import collection
from poolboard.statements.models import Statement, StatementSample
from tests.wait import wait_until

SLEEP_S = 1.5


def running(pg_cluster, dbname, app, sql, n) -> list[threading.Thread]:
    """n sessions of `app` running `sql` now (each in a thread), once the server shows them active."""
    conns = [pg_cluster.connect(dbname, application_name=app) for _ in range(n)]

    def run(conn):
        with conn:
            conn.execute(sql)

    threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in conns]
    for t in threads:
        t.start()
    with pg_cluster.connect(dbname) as admin:
        wait_until(
            lambda: admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = 'active'"
                " AND query_id IS NOT NULL", (app,)
            ).fetchone()[0] == n,
            timeout=5, what=f"{n} active {app} sessions",
        )
    return threads


def test_it_shows_which_service_ran_a_statement_and_how_many_connections_it_held(
    db, pg_cluster, cluster_db, make_service, settings
) -> None:
    settings.DATABASE_SNAPSHOT_INTERVAL = 1
    settings.STATEMENTS_INTERVAL = 1
    server = MonitoredServer.objects.create(
        name="cluster", host=pg_cluster.host, port=pg_cluster.port, dbname=cluster_db, user="root",
        query_s=3600, transaction_s=3600, idle_in_transaction_s=3600,
    )
    reports = make_service("reports", instances=2, max=4, in_use=2)
    assert collection.collect_server(server).status == "ok"  # the baseline
    since = StatementSample.objects.get(server=server).taken_at

    threads = running(pg_cluster, cluster_db, "reports", f"SELECT pg_sleep({SLEEP_S})", 2)
    assert snapshot_server(server).status == "ok"
    holds = list(QueryHold.objects.filter(snapshot__server=server, application_name="reports"))
    assert [(h.count, h.service_id, h.datname) for h in holds] == [(2, reports.pk, cluster_db)]
    for t in threads:
        t.join(timeout=10)

    result = collection.collect_server(server)
    assert result.status == "ok", result
    until = StatementSample.objects.filter(server=server).order_by("-slot").first().taken_at + timedelta(seconds=1)
    (row,) = [r for r in Statement.objects.top(since, until) if r["text"] == "SELECT pg_sleep($1)"]
    assert row["queryid"] == holds[0].query_id  # pg_stat_activity.query_id is pg_stat_statements.queryid
    assert row["calls"] == 2
    assert row["mean_ms"] == pytest.approx(SLEEP_S * 1000, rel=0.10)
    assert row["services"] == [
        {"id": reports.pk, "name": "reports", "held_conn_s": 2.0, "peak_held": 2, "pool_max": 8}
    ]
    assert (row["held_conn_s"], row["peak_held"]) == (2.0, 2)
    assert [r["id"] for r in Statement.objects.top(since, until, service=reports)] == [row["id"]]
