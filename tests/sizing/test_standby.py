"""A hot standby with max_connections below its primary's: recorded, linked or detected, and said
on the Sizing page, the server page, /api/v1/sizing/ and by checkdatabase.

A real standby is heavy to set up here: the standby is a monitored server recorded in recovery
(as a snapshot of a standby stores it), the values come from stored snapshots."""

from __future__ import annotations

import dataclasses
import html
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from poolboard.databases.models import MonitoredServer, Snapshot
from poolboard.databases.snapshots import snapshot_server, store_snapshot
from poolboard.sizing.recommend import fleet_sizing
from poolboard.sources import pgactivity

from .factories import server_with_snapshot

pytestmark = pytest.mark.django_db

ERROR = ("max_connections on replica orders-replica is 100, below its primary orders-db's 200: raise max_connections"
         " on replica orders-replica to at least 200 (its primary orders-db has 200), or recovery on orders-replica"
         " stops with 'insufficient parameter settings'.")


def in_recovery(server: MonitoredServer, **fields) -> MonitoredServer:
    server.in_recovery = True
    for name, value in fields.items():
        setattr(server, name, value)
    server.save()
    return server


@pytest.fixture
def pair():
    now = timezone.now()
    primary = server_with_snapshot("orders-db", now, max_connections=200)
    replica = server_with_snapshot("orders-replica", now, max_connections=100)
    return primary, in_recovery(replica, primary=primary)


def test_it_finds_a_linked_standby_below_its_primary(pair):
    primary, replica = pair
    fleet = fleet_sizing(timezone.now())
    assert fleet.server("orders-replica").standby_error == ERROR
    assert fleet.server("orders-db").standby_error is None
    assert replica.standby_error() == ERROR and primary.standby_error() is None


def test_a_standby_at_or_above_its_primary_or_promoted_is_fine(pair):
    primary, replica = pair
    replica.snapshots.update(max_connections=200)
    assert replica.standby_error() is None
    replica.snapshots.update(max_connections=100)
    replica.in_recovery = False  # promoted: no longer a standby
    replica.save()
    assert replica.standby_error() is None
    assert fleet_sizing(timezone.now()).server("orders-replica").standby_error is None


def test_it_reads_the_newest_snapshots_values(pair):
    primary, replica = pair
    newest = primary.snapshots.get()
    Snapshot.objects.create(server=primary, slot=newest.slot + 1, taken_at=timezone.now(), total=1,
                            max_connections=90, superuser_reserved_connections=3)
    assert replica.standby_error() is None  # the primary went down to 90


def test_it_detects_the_primary_from_the_wal_receivers_sender_when_none_is_set(pair):
    primary, replica = pair
    in_recovery(replica, primary=None, wal_sender_host=primary.host.upper(), wal_sender_port=primary.port)
    assert fleet_sizing(timezone.now()).server("orders-replica").standby_error == ERROR
    in_recovery(replica, wal_sender_host="elsewhere.invalid")  # streams from a server poolboard does not monitor
    assert replica.standby_error() is None
    in_recovery(replica, wal_sender_host="", wal_sender_port=None)  # the role may not read the receiver
    assert replica.standby_error() is None


def test_a_configured_primary_wins_over_the_detected_one(pair):
    primary, replica = pair
    other = server_with_snapshot("other-db", timezone.now(), max_connections=50)
    in_recovery(replica, wal_sender_host=other.host, wal_sender_port=other.port)
    assert replica.standby_error() == ERROR


def test_the_sizing_page_says_it_on_the_standbys_ledger(alice_client, pair):
    for headers in ({}, {"HX-Request": "true"}):
        page = alice_client.get("/sizing/", headers=headers).content.decode()
        assert page.count(html.escape(ERROR)) == 1
        section = page[page.index('id="server-orders-replica"'):]
        assert html.escape(ERROR) in section[:section.index("</section>")]


def test_the_server_page_says_it(alice_client, pair):
    page = alice_client.get("/servers/orders-replica/").content.decode()
    assert html.escape(ERROR) in page
    assert 'A hot standby (in recovery) of <a href="/servers/orders-db/">orders-db</a>' in page
    partial = alice_client.get("/servers/orders-replica/", headers={"HX-Request": "true"}).content.decode()
    assert html.escape(ERROR) in partial and "<html" not in partial
    assert html.escape(ERROR) not in alice_client.get("/servers/orders-db/").content.decode()


def test_the_api_gives_it_on_the_server_entry(client, auth, pair):
    body = client.get("/api/v1/sizing/", headers=auth).json()
    errors = {s["server"]: s["standby_error"] for s in body["servers"]}
    assert errors == {"orders-db": None, "orders-replica": ERROR}


def test_checkdatabase_says_it_and_fails(monitored, capsys):
    """The standby is the machine's real server (reachable), recorded in recovery."""
    now = timezone.now()
    primary = server_with_snapshot("big-primary", now, max_connections=100_000)
    Snapshot.objects.create(server=monitored, slot=1, taken_at=now, total=1, max_connections=100,
                            superuser_reserved_connections=3)
    in_recovery(monitored, primary=primary)
    with pytest.raises(CommandError) as e:
        call_command("checkdatabase", "orders-db")
    assert str(e.value) == (
        "orders-db: standby: max_connections on replica orders-db is 100, below its primary big-primary's 100000:"
        " raise max_connections on replica orders-db to at least 100000 (its primary big-primary has 100000),"
        " or recovery on orders-db stops with 'insufficient parameter settings'.")
    assert "OK, PostgreSQL" in capsys.readouterr().out  # the rest of the check still ran
    primary.snapshots.update(max_connections=100)
    call_command("checkdatabase", "orders-db")


def test_a_snapshot_of_the_machines_server_stores_it_is_not_in_recovery(monitored, fast_slots):
    monitored.in_recovery, monitored.wal_sender_host, monitored.wal_sender_port = True, "x", 1  # stale values
    monitored.save()
    assert snapshot_server(monitored).status == "ok"
    snap = monitored.snapshots.get()
    monitored.refresh_from_db()
    assert snap.in_recovery is False
    assert (monitored.in_recovery, monitored.wal_sender_host, monitored.wal_sender_port) == (False, "", None)


def test_a_standbys_snapshot_stores_recovery_and_its_sender(monitored, fast_slots):
    """What the store does with a standby's reading (the source's fields, from a real reading)."""
    taken = pgactivity.snapshot(monitored.target(), None, monitored.limits())
    assert taken.in_recovery is False and taken.sender_host is None
    standby = dataclasses.replace(taken, in_recovery=True, sender_host="db-primary.internal", sender_port=5433)
    assert store_snapshot(monitored, standby).status == "ok"
    monitored.refresh_from_db()
    assert monitored.snapshots.get().in_recovery is True
    assert (monitored.in_recovery, monitored.wal_sender_host, monitored.wal_sender_port) == (
        True, "db-primary.internal", 5433)


def test_the_admin_sets_the_primary_and_refuses_the_server_itself(client, bob, pair):
    primary, replica = pair
    client.force_login(bob)
    form = {
        "name": replica.name, "host": replica.host, "port": replica.port, "dbname": "postgres", "user": "u",
        "sslmode": "prefer", "idle_in_transaction_s": 60, "query_s": 30, "transaction_s": 300,
        "databases-TOTAL_FORMS": 0, "databases-INITIAL_FORMS": 0, "primary": replica.pk,
    }
    url = f"/admin/databases/monitoredserver/{replica.pk}/change/"
    r = client.post(url, form)
    assert r.status_code == 200 and "A server cannot be a standby of itself." in r.content.decode()
    r = client.post(url, {**form, "primary": ""})
    assert r.status_code == 302
    replica.refresh_from_db()
    assert replica.primary is None
    assert client.post(url, {**form, "primary": primary.pk}).status_code == 302
    replica.refresh_from_db()
    assert replica.primary == primary


INVENTORY = """\
version: 1
databases:
- name: orders-replica
  host: replica.internal
  primary: orders-main
- name: orders-main
  host: main.internal
"""


def test_the_inventory_file_names_the_primary_and_exports_it_only_when_set(tmp_path):
    path = tmp_path / "inventory.yml"
    path.write_text(INVENTORY)
    call_command("importinventory", str(path), stdout=StringIO())
    replica = MonitoredServer.objects.get(name="orders-replica")
    assert replica.primary.name == "orders-main"
    out = StringIO()
    call_command("exportinventory", stdout=out)
    assert out.getvalue().count("primary:") == 1 and "primary: orders-main" in out.getvalue()
    path.write_text(INVENTORY.replace("primary: orders-main", "primary: nowhere"))
    with pytest.raises(CommandError) as e:
        call_command("importinventory", str(path), stdout=StringIO())
    assert "no monitored server named 'nowhere'" in str(e.value)
    path.write_text(INVENTORY.replace("primary: orders-main", "primary: orders-replica"))
    with pytest.raises(CommandError) as e:
        call_command("importinventory", str(path), stdout=StringIO())
    assert "a server cannot be a standby of itself" in str(e.value)
    path.write_text(INVENTORY.replace("  primary: orders-main\n", ""))
    call_command("importinventory", str(path), stdout=StringIO())
    replica.refresh_from_db()
    assert replica.primary is None
