"""`manage.py discover`, the beat task and the admin action (fake answers; real ones in test_dialects)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from poolboard.fleet.collection import collect_source, current_slot
from poolboard.fleet.models import Pool, PrometheusSource, Service
from poolboard.fleet.tasks import discover_services
from tests.prom import free_port
from tests.sources.fakes import json_answer

pytestmark = pytest.mark.django_db


def answer(query: str):
    if query.startswith("count by (__name__"):
        result = [
            {"metric": {"__name__": "go_sql_in_use_connections", "job": "payments"}, "value": [1, "2"]},
            {"metric": {"__name__": "hikaricp_connections_active", "job": "search"}, "value": [1, "1"]},
            {"metric": {"__name__": "jdbc_connections_active", "job": "search"}, "value": [1, "1"]},
        ]
    elif "go_sql" in query:
        result = [
            {"metric": {"job": "payments", "instance": f"10.0.0.{i}:9100", "db_name": "payments"}, "value": [1, "3"]}
            for i in (1, 2)
        ]
    elif "hikaricp" in query:
        result = [{"metric": {"job": "search", "instance": "10.0.0.3:8080", "pool": "HikariPool-1"}, "value": [1, "5"]}]
    else:
        result = []
    return json_answer({"status": "success", "data": {"resultType": "vector", "result": result}})


@pytest.fixture
def prometheus(fake_prometheus):
    return fake_prometheus(answer)


def test_the_command_discovers_services_and_pools(prometheus) -> None:
    PrometheusSource.objects.create(name="main", url=prometheus.url)
    out = StringIO()

    call_command("discover", "main", stdout=out)

    assert out.getvalue() == "main: 2 services, 3 pools; presets: hikaricp, go_sql; new: payments, search\n"
    assert sorted(Service.objects.values_list("name", "preset")) == [("payments", "go_sql"), ("search", "hikaricp")]
    assert Pool.objects.count() == 3
    # Three queries: the markers, then one per preset found.
    assert len(prometheus.requests) == 3


def test_collection_uses_the_presets_discovery_found(prometheus) -> None:
    source = PrometheusSource.objects.create(name="main", url=prometheus.url, presets=[])

    # Never discovered: the first tick discovers first.
    result = collect_source(source, current_slot())

    assert result.status == "ok", result.error
    source.refresh_from_db()
    assert source.discovered_presets == ["hikaricp", "go_sql"]
    assert Pool.objects.get(instance="10.0.0.3:8080").in_use == 5


def test_the_command_names_an_unknown_source() -> None:
    with pytest.raises(CommandError, match="no Prometheus source named 'nope'"):
        call_command("discover", "nope")


def test_a_failed_discovery_is_reported_and_changes_nothing() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    PrometheusSource.objects.create(name="down", url=url, timeout_s=1)
    err = StringIO()
    with pytest.raises(SystemExit):
        call_command("discover", stdout=StringIO(), stderr=err)
    assert err.getvalue() == f"down: discovery FAILED: marker query: cannot connect to Prometheus at {url}\n"
    assert PrometheusSource.objects.get().last_error == f"marker query: cannot connect to Prometheus at {url}"
    assert Service.objects.count() == 0


def test_the_beat_task_discovers_every_enabled_source(prometheus) -> None:
    PrometheusSource.objects.create(name="main", url=prometheus.url)
    PrometheusSource.objects.create(name="off", url="http://127.0.0.1:9", enabled=False)

    results = discover_services()

    assert [(r["source"], r["status"], r["new_services"]) for r in results] == [("main", "ok", ["payments", "search"])]


def test_the_admin_action_discovers(prometheus, client, bob) -> None:
    source = PrometheusSource.objects.create(name="main", url=prometheus.url)
    client.force_login(bob)

    response = client.post(
        "/admin/fleet/prometheussource/", {"action": "discover_now", "_selected_action": [source.pk]}, follow=True
    )

    assert [str(m) for m in response.context["messages"]] == [
        "main: 2 services, 3 pools; presets: hikaricp, go_sql; new: payments, search"
    ]
