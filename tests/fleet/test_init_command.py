"""`manage.py init URL`: from nothing to services on the overview, against a real Prometheus."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from poolboard.fleet.models import PrometheusSource, Service
from tests.prom import exposition

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.prometheus, pytest.mark.slow]


def test_it_sets_up_a_source_with_discovered_presets_and_collects(prometheus_with):
    prom = prometheus_with({"orders": exposition("db_pool"), "payments": exposition("hikaricp")})
    prom.wait_for("db_pool_in_use_connections")
    prom.wait_for("hikaricp_connections_active")
    out = StringIO()

    call_command("init", prom.url, "--rate-window", "10s", stdout=out)

    text = out.getvalue()
    source = PrometheusSource.objects.get(name="main")
    assert source.presets == [] and set(source.discovered_presets) >= {"db_pool", "hikaricp"}
    assert set(Service.objects.values_list("name", flat=True)) == {"orders", "payments"}
    assert "presets: db_pool, hikaricp" in text
    assert "Done: 2 services on the overview" in text
    assert Service.objects.get(name="orders").pools.get().in_use == 9


def test_it_says_what_to_check_when_prometheus_does_not_answer():
    with pytest.raises(CommandError) as exc:
        call_command("init", "http://127.0.0.1:9", stdout=StringIO())
    assert "discovery FAILED" in str(exc.value)
    assert "Check the URL (the base URL, without /api/v1)" in str(exc.value)


def test_it_refuses_a_url_with_credentials():
    with pytest.raises(CommandError) as exc:
        call_command("init", "http://user:secret@127.0.0.1:9", stdout=StringIO())
    assert "Remove the user:password@ part" in str(exc.value) and "secret" not in str(exc.value)
