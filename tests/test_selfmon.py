from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from poolboard.fleet.models import CollectionRun
from tests.fleet import factories
from tests.prom import free_port
from tests.sources.fakes import FakePrometheus, json_answer, vector

pytestmark = pytest.mark.django_db


def test_healthz_is_200_and_ok_when_database_redis_and_collection_are_fine(client) -> None:
    factories.source(last_success_at=timezone.now())
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok" and body["database"] == {"ok": True} and body["redis"] == {"ok": True}
    assert body["sources"]["main"]["ok"] is True and body["sources"]["main"]["stale_since"] is None


def test_healthz_stays_200_when_every_source_and_redis_are_down(client, settings) -> None:
    # A load balancer must not pull the dashboard out during the incident it is for.
    now = timezone.now()
    factories.source("prod", url=f"http://127.0.0.1:{free_port()}", last_success_at=now - timedelta(minutes=20),
                     last_error_at=now - timedelta(seconds=10))
    factories.source("never", last_success_at=None)
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    response = client.get("/healthz")

    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "degraded"
    assert body["database"] == {"ok": True}
    assert body["redis"] == {"ok": False, "error": "ConnectionError"}
    assert body["sources"]["prod"] == {
        "ok": False,
        "last_success": (now - timedelta(minutes=20)).isoformat(),
        "last_error": (now - timedelta(seconds=10)).isoformat(),
        "stale_since": (now - timedelta(minutes=20)).isoformat(),
    }
    assert body["sources"]["never"] == {"ok": False, "last_success": None, "last_error": None, "stale_since": None}


def test_healthz_sends_no_request_to_any_source(client) -> None:
    # An anonymous caller must not be able to make poolboard call every Prometheus it watches.
    prometheus = FakePrometheus(lambda query: json_answer(vector(1)))
    try:
        factories.source(url=prometheus.url)
        for _ in range(3):
            assert client.get("/healthz").json()["sources"]["main"]["ok"] is True
    finally:
        prometheus.close()
    assert prometheus.requests == []


def test_healthz_is_503_when_its_own_database_does_not_answer(client, settings) -> None:
    from django.db import connection

    connection.close()
    real = connection.settings_dict["PORT"]
    connection.settings_dict["PORT"] = str(free_port())
    try:
        response = client.get("/healthz")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = real
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "down"
    assert body["database"] == {"ok": False, "error": "OperationalError"}
    assert body["sources"] == {}


def test_metrics_exports_collection_health(client) -> None:
    src = factories.source()
    CollectionRun.objects.create(source=src, slot=1, status="ok", duration_s=0.25, samples=12, finished=timezone.now())
    CollectionRun.objects.create(source=src, slot=2, status="failed", duration_s=2.0, error="boom", finished=timezone.now())

    response = client.get("/metrics")

    assert response.status_code == 200
    samples = {
        (s.name, s.labels.get("source")): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }
    assert samples[("poolboard_collection_errors_total", "main")] == 1
    assert samples[("poolboard_collection_runs_total", "main")] == 2
    assert samples[("poolboard_collection_samples", "main")] == 12
    assert ("poolboard_collection_duration_seconds", "main") in samples
    assert samples[("poolboard_collection_last_success_timestamp_seconds", "main")] == pytest.approx(
        src.last_success_at.timestamp()
    )


def test_metrics_say_which_source_is_stale(client) -> None:
    now = timezone.now()
    factories.source("fresh", last_success_at=now)
    factories.source("stale", last_success_at=now - timedelta(minutes=20), last_error_at=now - timedelta(seconds=5))

    samples = {
        (s.name, s.labels.get("source")): s.value
        for family in text_string_to_metric_families(client.get("/metrics").content.decode())
        for s in family.samples
    }

    assert samples[("poolboard_source_fresh", "fresh")] == 1
    assert samples[("poolboard_source_fresh", "stale")] == 0
    assert samples[("poolboard_collection_last_error_timestamp_seconds", "stale")] == pytest.approx(
        (now - timedelta(seconds=5)).timestamp()
    )
    assert ("poolboard_collection_last_error_timestamp_seconds", "fresh") not in samples
