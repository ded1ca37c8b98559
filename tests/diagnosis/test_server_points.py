"""The diagnosis' server side: real sessions → a stored snapshot → one ServerPoint per service and snapshot."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from poolboard.databases.models import MonitoredServer
from poolboard.databases.snapshots import snapshot_server
from poolboard.diagnosis import inputs
from poolboard.lib.diagnosis import Thresholds
from tests.pg import HOST, PORT, SUPERUSER, Sessions, throwaway_database

pytestmark = pytest.mark.django_db

SERVICE = f"hoarder-t{os.getpid()}"


@pytest.fixture
def sessions():
    with throwaway_database(f"pb_test_serverpoints_{os.getpid()}") as dbname:
        s = Sessions(dbname)
        yield s
        s.close()


def test_it_counts_idle_past_each_services_leak_threshold_and_young_sessions(sessions, make_service):
    service = make_service(SERVICE)
    sessions.idle(SERVICE)
    sessions.idle(SERVICE)
    sessions.wait_seen({SERVICE: "idle"}, older_than=1.2)  # both past a 1 s threshold (opened ms apart)
    sessions.idle(SERVICE)  # idle, but not for long
    sessions.active(SERVICE, "SELECT pg_sleep(30)")
    database = MonitoredServer.objects.create(
        name="serverpoints-db", host=HOST, port=PORT, dbname=sessions.dbname, user=SUPERUSER
    )
    assert snapshot_server(database).status == "ok"
    now = timezone.now()

    def point(**overrides):
        points = inputs.server_points({service.id: Thresholds(**overrides)}, now - timedelta(minutes=1), now)
        (p,) = points[service.id]
        return p

    p = point(leak_s=1.0)
    assert (p.active, p.idle, p.idle_in_transaction, p.idle_over_threshold) == (1, 3, 0, 2)
    assert p.young_sessions == 4 and 0 <= p.longest_active_query_s < 5
    assert point(leak_s=60.0).idle_over_threshold == 0
    assert point(churn_lifetime_s=1.0).young_sessions == 2  # the two opened after the pause

    # The leak suspects page lists who holds them: idle groups past the threshold (counted,
    # not listed, by the snapshot) and idle-in-transaction sessions one by one.
    from poolboard.diagnosis.models import holder_sessions

    holders = holder_sessions([service], now, leak_s=1.0)[SERVICE]
    idle = [h for h in holders if h["state"] == "idle"]
    assert [(h["sessions"], h["application_name"], h["pid"]) for h in idle] == [(2, SERVICE, None)]
    assert idle[0]["idle_s"] > 1.0 and idle[0]["database"] == "serverpoints-db"
    assert holder_sessions([service], now, leak_s=60.0).get(SERVICE, []) == []


def test_it_gives_a_point_of_zeros_for_a_snapshot_without_the_services_sessions(sessions, make_service):
    """A restart or a pool that closed its connections is a zero on the server, not a gap."""
    service = make_service(SERVICE)
    database = MonitoredServer.objects.create(
        name="serverpoints-db", host=HOST, port=PORT, dbname=sessions.dbname, user=SUPERUSER
    )
    sessions.idle(SERVICE)
    assert snapshot_server(database).status == "ok"
    sessions.close()
    from poolboard.databases.models import Snapshot

    # The next slot's snapshot sees none of its sessions.
    snap = Snapshot.objects.get()
    Snapshot.objects.filter(pk=snap.pk).update(slot=snap.slot - 1, taken_at=snap.taken_at - timedelta(seconds=30))
    assert snapshot_server(database).status == "ok"
    now = timezone.now()
    points = inputs.server_points({service.id: Thresholds()}, now - timedelta(minutes=5), now)[service.id]
    assert [(p.idle, p.active) for p in points] == [(1, 0), (0, 0)]
