"""The sizing keys of a service in the inventory file: `database:` (server[/database]) and PgBouncer."""

import pytest

from poolboard.databases.models import MonitoredServer
from poolboard.fleet.models import Service
from poolboard.inventory.registry import export_inventory, import_inventory
from poolboard.lib.inventory import InventoryError

pytestmark = pytest.mark.django_db

FILE = """\
version: 1
sources:
- name: prod
  url: http://prometheus:9090
services:
- name: plain
  source: prod
  preset: db_pool
- name: search
  source: prod
  preset: db_pool
  workers_per_instance: 2
  database: main-pg/shop
  pool_overflow: 5
  replicas: 3
  replicas_max: 12
  pooler: pgb-main
  pooler_pool_size: 40
  pooler_max_db_connections: 0
  pooler_instances: 2
databases:
- name: main-pg
  host: db.internal
"""


def test_a_service_names_a_server_defined_in_the_same_file_and_round_trips():
    import_inventory(FILE)
    search = Service.objects.get(name="search")
    assert search.server == MonitoredServer.objects.get(name="main-pg") and search.datname == "shop"
    assert (search.pool_overflow, search.replicas, search.replicas_max) == (5, 3, 12)
    assert (search.pooler, search.pooler_pool_size, search.pooler_max_db_connections, search.pooler_instances) == (
        "pgb-main", 40, 0, 2)
    plain = Service.objects.get(name="plain")
    assert plain.server is None and plain.pool_overflow == 0
    first = export_inventory()
    # Only the keys that are set are written: a file without them exports as before.
    assert "- name: plain\n  source: prod\n  preset: db_pool\n  workers_per_instance: 1\n- name: search" in first
    assert "  database: main-pg/shop\n  pool_overflow: 5\n" in first
    import_inventory(first)
    assert export_inventory() == first
    # Leaving `database:` out of the file takes the server away again (the file is the truth).
    import_inventory(first.replace("  database: main-pg/shop\n", ""))
    assert Service.objects.get(name="search").server is None


def test_an_unknown_server_or_a_negative_overflow_is_refused_on_its_line():
    bad = FILE.replace("database: main-pg/shop", "database: nowhere").replace("pool_overflow: 5", "pool_overflow: -1")
    with pytest.raises(InventoryError) as caught:
        import_inventory(bad)
    text = str(caught.value)
    assert "line 13: services[1].database: no monitored server named 'nowhere' (give server or server/database)" in text
    assert "line 14: services[1].pool_overflow: Ensure this value is greater than or equal to 0." in text
    assert not Service.objects.exists()


def test_the_admin_edits_the_sizing_fields(admin_client, make_source):
    server = MonitoredServer.objects.create(name="main-pg", host="db.internal")
    svc = Service.objects.create(name="search", source=make_source(), preset="db_pool")
    page = admin_client.get(f"/admin/fleet/service/{svc.pk}/change/").content.decode()
    assert "PgBouncer in front" in page and 'name="replicas_max"' in page
    form = {"name": "search", "source": svc.source_id, "preset": "db_pool", "workers_per_instance": 2,
            "server": server.pk, "datname": "shop", "pool_overflow": 3, "replicas": "", "replicas_max": 10,
            "pooler": "", "pooler_pool_size": "", "pooler_max_db_connections": "", "pooler_instances": 1,
            "pools-TOTAL_FORMS": 0, "pools-INITIAL_FORMS": 0, "pools-MIN_NUM_FORMS": 0, "pools-MAX_NUM_FORMS": 0}
    response = admin_client.post(f"/admin/fleet/service/{svc.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    svc.refresh_from_db()
    assert (svc.server, svc.datname, svc.pool_overflow, svc.replicas_max) == (server, "shop", 3, 10)
    form["pooler_instances"] = 0
    refused = admin_client.post(f"/admin/fleet/service/{svc.pk}/change/", form).content.decode()
    assert "Ensure this value is greater than or equal to 1." in refused
