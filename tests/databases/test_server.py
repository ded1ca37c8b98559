"""The monitored target is a server: two databases on one server are shown apart, with
their episodes recorded once; active sessions' statements are kept as query holds."""

from __future__ import annotations

import json
import os

import psycopg
import pytest
from django.core.exceptions import ValidationError

from poolboard.databases.models import Episode, MonitoredServer, QueryHold, ServerDatabase, SessionCount
from poolboard.databases.snapshots import snapshot_server
from poolboard.lib import episodes as ep
from tests.pg import HOST, PORT, SUPERUSER, Sessions, throwaway_database, wait_for_next_slot

pytestmark = pytest.mark.django_db

SFX = f"-t{os.getpid()}"
ORDERS_APP = "orders-app" + SFX
BILLING_APP = "billing-app" + SFX


@pytest.fixture
def second_dbname():
    """Another database on the same server as `monitored`'s (CREATE DATABASE, dropped after)."""
    with throwaway_database(f"pb_test_second_{os.getpid()}") as name:
        yield name


@pytest.fixture
def two_databases(monitored, sessions, second_dbname, make_service, fast_slots):
    """One monitored server (connecting to the first database) with sessions in two databases:
    orders-app idle in transaction in the first; billing-app idle in transaction and running
    pg_sleep in the second. Every threshold 0: each is in its episodes at once. Two snapshots."""
    monitored.idle_in_transaction_s = monitored.query_s = monitored.transaction_s = 0
    monitored.save()
    make_service(BILLING_APP)
    second = Sessions(second_dbname)
    try:
        sessions.idle_in_transaction(ORDERS_APP)
        second.idle_in_transaction(BILLING_APP)
        second.active(BILLING_APP, "SELECT pg_sleep(30)")
        second.wait_seen([(BILLING_APP, "idle in transaction"), (BILLING_APP, "active")])
        sessions.wait_seen({ORDERS_APP: "idle in transaction"})
        assert snapshot_server(monitored).status == "ok"
        wait_for_next_slot(monitored.snapshots.latest("taken_at").taken_at, 1)
        assert snapshot_server(monitored).status == "ok"
        monitored.refresh_from_db()
        yield monitored, sessions.dbname, second_dbname
    finally:
        second.close()


def test_it_keeps_each_sessions_database_and_the_servers_databases(two_databases):
    server, first, second = two_databases
    listed = set(ServerDatabase.objects.filter(server=server).values_list("datname", flat=True))
    assert {first, second} <= listed
    newest = server.latest_snapshot()
    apps = {(c.application_name, c.datname, c.state) for c in SessionCount.objects.filter(snapshot=newest)}
    assert (ORDERS_APP, first, "idle in transaction") in apps
    assert {(BILLING_APP, second, "idle in transaction"), (BILLING_APP, second, "active")} <= apps
    assert not any(app in (ORDERS_APP, BILLING_APP) and db not in (first, second) for app, db, _ in apps)
    live = {(s["application_name"], s["datname"]) for s in server.last_sessions}
    assert {(ORDERS_APP, first), (BILLING_APP, second)} <= live


def test_it_records_each_episode_once_and_one_transaction_as_one_problem(two_databases):
    server, first, second = two_databases
    billing = Episode.objects.filter(server=server, application_name=BILLING_APP)
    keys = list(billing.values_list("pid", "kind"))
    assert len(keys) == len(set(keys)) == 4  # after two snapshots: updated, never recorded again
    assert set(billing.values_list("datname", flat=True)) == {second}
    assert {k for _, k in keys} == {ep.IDLE_IN_TRANSACTION, ep.LONG_TRANSACTION, ep.LONG_QUERY}
    # The idle-in-transaction session's two episodes (idle in transaction, long transaction)
    # are one problem; the pg_sleep's two (long query, long transaction) another.
    assert billing.filter(ended=None).problem_count() == 2
    orders = Episode.objects.filter(server=server, application_name=ORDERS_APP)
    assert orders.count() == 2 and orders.problem_count() == 1 and set(orders.values_list("datname", flat=True)) == {first}


def test_it_refuses_a_second_row_for_the_same_server(two_databases):
    server, _, second = two_databases
    with pytest.raises(ValidationError, match="already exists"):
        MonitoredServer(name="same-server", host=server.host, port=server.port, dbname=second).full_clean()


def test_it_keeps_how_many_connections_each_active_statement_holds(two_databases):
    server, _, second = two_databases
    [hold] = QueryHold.objects.filter(snapshot=server.latest_snapshot(), application_name=BILLING_APP)
    assert (hold.datname, hold.count, hold.service.name) == (second, 1, BILLING_APP)
    # This server does not compute query ids (compute_query_id = auto, no pg_stat_statements):
    # kept as NULL, nothing fails. test_it_keeps_the_query_id_where_the_server_computes_it covers the rest.
    with psycopg.connect(host=HOST, port=PORT, user=SUPERUSER, dbname="postgres") as conn:
        computed = conn.execute(
            "SELECT query_id FROM pg_stat_activity WHERE application_name = %s AND state = 'active'", (BILLING_APP,)
        ).fetchone()[0]
    assert hold.query_id == computed


def sessions_table(html: str) -> str:
    return html.split('<table class="sessions">', 1)[1].split("</table>", 1)[0]


def test_the_server_page_shows_the_database_column_and_filters_by_database(alice_client, two_databases):
    server, first, second = two_databases
    url = f"/servers/{server.name}/"
    html = alice_client.get(url).content.decode()
    table = sessions_table(html)
    assert "<th>Database</th>" in table and ORDERS_APP in table and BILLING_APP in table
    assert f'<td class="dbname">{second}</td>' in table and f'<td class="dbname">{first}</td>' in table
    html = alice_client.get(url, {"database": second}).content.decode()
    assert "<html" in html and BILLING_APP in sessions_table(html) and ORDERS_APP not in sessions_table(html)
    assert "idle in transaction + long transaction" in html  # one problem, both its episodes
    # The budget stays the server's: one max_connections for every database.
    assert "Connection budget" in html and "the whole server" in html
    r = alice_client.get(url, {"database": first}, headers={"HX-Request": "true"})
    html = r.content.decode()
    assert "<html" not in html and 'id="db-live"' in html
    assert ORDERS_APP in sessions_table(html) and BILLING_APP not in sessions_table(html)
    html = alice_client.get(url, {"database": "no-such-db"}).content.decode()
    assert "matches these filters" in html
    # The list: the server once, with both its databases.
    html = alice_client.get("/databases/").content.decode()
    assert html.count(f">{server.name}</a>") == 1 and f">{first}</a>" in html and f">{second}</a>" in html


def test_the_api_shows_and_filters_by_database(client, two_databases, token):
    server, first, second = two_databases
    auth = {"Authorization": f"Bearer {token}"}
    data = json.loads(client.get("/api/v1/servers/", headers=auth).content)
    [row] = [s for s in data["servers"] if s["name"] == server.name]
    assert {first, second} <= {d["name"] for d in row["databases"]}
    data = json.loads(client.get(f"/api/v1/episodes/?server={server.name}&database={second}", headers=auth).content)
    assert data["episodes"] and {e["database"] for e in data["episodes"]} == {second}
    assert {e["application_name"] for e in data["episodes"]} == {BILLING_APP}
    data = json.loads(client.get(f"/api/v1/servers/{server.name}/sessions/?database={first}", headers=auth).content)
    assert data["counts"] and {c["database"] for c in data["counts"]} == {first}


def test_it_keeps_the_query_id_where_the_server_computes_it(pg_cluster, db, fast_slots):
    """A cluster with compute_query_id on: each hold carries the statement's query_id, the
    same as pg_stat_activity's (and pg_stat_statements' queryid)."""
    server = MonitoredServer.objects.create(
        name="with-query-ids", host=pg_cluster.host, port=pg_cluster.port, dbname="postgres", user="root",
    )
    app = "held" + SFX
    conns = [psycopg.connect(host=pg_cluster.host, port=pg_cluster.port, user="root", dbname="postgres",
                             application_name=app, autocommit=True) for _ in range(2)]
    try:
        for conn in conns:
            conn.pgconn.send_query(b"SELECT pg_sleep(20)")
        with psycopg.connect(host=pg_cluster.host, port=pg_cluster.port, user="root", dbname="postgres") as admin:
            from tests.wait import wait_until

            def ids():
                return admin.execute(
                    "SELECT array_agg(DISTINCT query_id) FROM pg_stat_activity WHERE application_name = %s"
                    " AND state = 'active'", (app,)
                ).fetchone()[0] or []

            wait_until(lambda: len(ids()) == 1 and ids()[0] is not None, timeout=5, what="two sessions in pg_sleep")
            [query_id] = ids()
        assert snapshot_server(server).status == "ok"
        [hold] = QueryHold.objects.filter(snapshot__server=server, application_name=app)
        assert (hold.query_id, hold.count, hold.datname) == (query_id, 2, "postgres")
    finally:
        for conn in conns:
            conn.cancel_safe(timeout=2)
            conn.close()
