from __future__ import annotations

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from poolboard.fleet.models import CollectionRun
from tests.fleet import factories
from tests.prom import free_port

pytestmark = pytest.mark.django_db


def test_healthz_is_200_when_database_redis_and_prometheus_answer(client, prometheus_with) -> None:
    prom = prometheus_with({})
    factories.source(url=prom.url)
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok" and body["database"] == {"ok": True} and body["redis"] == {"ok": True}
    assert body["prometheus"]["main"]["ok"] is True and body["prometheus"]["main"]["version"].startswith("2.")


def test_healthz_is_503_and_says_which_part_is_down(client, settings) -> None:
    factories.source(url=f"http://127.0.0.1:{free_port()}")
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "degraded"
    assert body["database"] == {"ok": True}
    assert body["redis"] == {"ok": False, "error": "ConnectionError"}
    assert body["prometheus"]["main"] == {"ok": False, "error": "unreachable"}


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
