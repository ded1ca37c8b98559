"""Migration 0008: rows that pointed at the same server are merged, their data kept."""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta, timezone

import pytest
from django.apps import apps
from django.db import connection

from poolboard.databases.models import (
    AttributionRule,
    Episode,
    MonitoredServer,
    ServerDatabase,
    SessionCount,
    Snapshot,
)
from poolboard.lib import episodes as ep

pytestmark = pytest.mark.django_db

merge = importlib.import_module("poolboard.databases.migrations.0008_merge_same_server")
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def snapshot(server, slot, total):
    snap = Snapshot.objects.create(
        server=server, slot=slot, taken_at=T0 + timedelta(seconds=10 * slot), total=total, max_connections=100,
        superuser_reserved_connections=3,
    )
    SessionCount.objects.create(snapshot=snap, application_name="billing", state="idle", count=total)
    return snap


def episode(server, pid, peak, last_seen):
    return Episode.objects.create(
        server=server, kind=ep.IDLE_IN_TRANSACTION, pid=pid, backend_start=T0, started=T0, first_seen=T0,
        last_seen=last_seen, peak_age_s=peak,
    )


def test_it_merges_two_rows_of_one_server_into_the_oldest_keeping_their_data(make_service):
    # Two rows on one server, as the model allowed before 0009's constraint (dropped here,
    # inside the test's transaction, which rolls it back).
    with connection.cursor() as cur:
        cur.execute(f"ALTER TABLE {MonitoredServer._meta.db_table} DROP CONSTRAINT monitoredserver_host_port")
    orders = MonitoredServer.objects.create(name="orders-db", host="db.internal", dbname="orders", created=T0)
    billing = MonitoredServer.objects.create(
        name="billing-db", host="DB.internal", dbname="billing", created=T0 + timedelta(days=1)
    )
    elsewhere = MonitoredServer.objects.create(name="other", host="db.internal", port=5433, dbname="postgres")
    snapshot(orders, 1, 5)
    snapshot(billing, 1, 7)  # the same instant recorded twice: dropped
    snapshot(billing, 2, 9)  # moved
    kept = episode(orders, 100, 40.0, T0 + timedelta(seconds=40))
    episode(billing, 100, 50.0, T0 + timedelta(seconds=50))  # the same episode: merged into `kept`
    episode(billing, 200, 70.0, T0 + timedelta(seconds=70))  # moved
    rule = AttributionRule.objects.create(service=make_service("billing"), server=billing, application_name="b*")

    merge.merge_same_server(apps, connection.schema_editor())

    assert list(MonitoredServer.objects.order_by("name").values_list("name", flat=True)) == ["orders-db", "other"]
    assert sorted(Snapshot.objects.filter(server=orders).values_list("slot", "total")) == [(1, 5), (2, 9)]
    assert sorted(SessionCount.objects.filter(snapshot__server=orders).values_list("count", flat=True)) == [5, 9]
    assert not SessionCount.objects.filter(snapshot__isnull=True).exists()
    episodes = {e.pid: e for e in Episode.objects.filter(server=orders)}
    assert sorted(episodes) == [100, 200] and episodes[100].pk == kept.pk
    assert episodes[100].peak_age_s == 50.0 and episodes[100].last_seen == T0 + timedelta(seconds=50)
    rule.refresh_from_db()
    assert rule.server == orders
    assert sorted(ServerDatabase.objects.filter(server=orders).values_list("datname", flat=True)) == ["billing", "orders"]
    assert list(ServerDatabase.objects.filter(server=elsewhere).values_list("datname", flat=True)) == ["postgres"]
