"""The README's sample inventory file imports as it is."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from poolboard.databases.models import MonitoredServer
from poolboard.fleet.models import PrometheusSource, Service

EXAMPLE = Path(__file__).resolve().parent.parent / "inventory.example.yaml"


@pytest.mark.django_db
def test_it_imports_the_sample_inventory_file():
    call_command("importinventory", str(EXAMPLE), stdout=StringIO())
    source = PrometheusSource.objects.get(name="prod")
    assert (source.url, source.presets, source.bearer_token_env) == ("http://prometheus.monitoring:9090", [], "PROMETHEUS_TOKEN")
    assert dict(Service.objects.values_list("name", "workers_per_instance")) == {"billing": 1, "search": 4}
    db = MonitoredServer.objects.get(name="orders-primary")
    assert (db.user, db.password_env) == ("poolboard_mon", "ORDERS_MON_PASSWORD")
    search = Service.objects.get(name="search")
    assert (search.server, search.datname, search.replicas_max) == (db, "orders", 12)
