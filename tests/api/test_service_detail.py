"""/api/v1/services/<name>/ and /api/v1/services/<name>/series/."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import time_machine

from poolboard.fleet.models import Pool, PrometheusSource, Service
from tests.fleet.factories import write_samples

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 12, 0, 7, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def search(db):
    source = PrometheusSource.objects.create(name="main", url="http://127.0.0.1:9", presets=["hikaricp"])
    service = Service.objects.create(name="search", source=source, preset="hikaricp", last_seen_at=NOW)
    for i in range(2):
        pool = Pool.objects.create(service=service, instance=f"10.0.0.{i}:8080", name="HikariPool-1",
                                   sampled_at=NOW - timedelta(seconds=3), max=10, min=10, in_use=10, idle=0,
                                   pending=7, timeouts=2, acquire_s=0.4, hold_s=0.2)
        write_samples([(pool.id, NOW.timestamp() - 600 + 15 * k, {"in_use": 5.0 + i, "max": 10.0}) for k in range(41)
                       if not 300 <= 15 * k < 420])
    return service


def test_it_gives_pools_current_values_and_preset(client, auth, search) -> None:
    response = client.get("/api/v1/services/search/", headers=auth)
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "search" and body["source"] == "main"
    assert body["preset"]["name"] == "hikaricp"
    assert "conns_closed" in body["preset"]["missing_fields"] and "in_use" in body["preset"]["fields"]
    assert body["preset"]["notes"]["conns_closed"] == "HikariCP does not export closed connections"
    assert body["status"] == "crit"
    pools = body["pools"]
    assert [p["instance"] for p in pools] == ["10.0.0.0:8080", "10.0.0.1:8080"]
    assert pools[0]["in_use"] == 10 and pools[0]["pending"] == 7 and pools[0]["conns_closed"] is None
    assert pools[0]["timestamp"] == (NOW - timedelta(seconds=3)).isoformat()


def test_series_adds_pools_up_and_leaves_gaps_null(client, auth, search) -> None:
    response = client.get("/api/v1/services/search/series/?field=in_use&range=1h", headers=auth)
    assert response.status_code == 200
    body = response.json()
    assert (body["field"], body["range"], body["step_seconds"], body["source"]) == ("in_use", "1h", 30, "raw")
    assert body["available"] is True
    points = body["points"]
    assert len(points) == 120
    values = [v for _, v in points]
    assert values[-1] == 11.0  # 5 + 6
    assert values[0] is None and None in values[-20:]  # before the samples, and the 2-minute hole
    assert 0 not in values
    assert points[1][0] - points[0][0] == 30


def test_series_from_rollups_for_long_ranges(client, auth, search) -> None:
    body = client.get("/api/v1/services/search/series/?field=in_use&range=30d", headers=auth).json()
    assert body["source"] == "1h" and body["step_seconds"] == 3600 and len(body["points"]) == 720
    body = client.get("/api/v1/services/search/series/?field=timeouts&range=7d", headers=auth).json()
    assert body["source"] == "5m" and len(body["points"]) == 672


def test_series_of_a_field_the_preset_lacks_says_so(client, auth, search, monkeypatch) -> None:
    from poolboard.lib import presets

    lean = presets.Preset(name="lean", title="Lean", marker="x", queries={"in_use": "x"}, notes={"pending": "Lean has no queue"})
    monkeypatch.setitem(presets.BUILTIN_PRESETS, "lean", lean)
    Service.objects.filter(pk=search.pk).update(preset="lean")
    body = client.get("/api/v1/services/search/series/?field=pending&range=1h", headers=auth).json()
    assert body["available"] is False and body["message"] == "Lean has no queue"
    assert {v for _, v in body["points"]} == {None}
    body = client.get("/api/v1/services/search/series/?field=hold_s&range=1h", headers=auth).json()
    assert body["message"] == "The lean preset gives no hold time (s)"


@pytest.mark.parametrize(
    ("query", "message"),
    [("field=bogus&range=1h", "unknown field 'bogus': use one of in_use, idle"),
     ("range=1h", "unknown field ''"),
     ("field=in_use&range=5y", "unknown range '5y': use one of 1h, 6h, 24h, 7d, 30d")],
)
def test_bad_field_or_range_is_a_400_with_a_clear_message(client, auth, search, query, message) -> None:
    response = client.get(f"/api/v1/services/search/series/?{query}", headers=auth)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert message in response.json()["error"]


@pytest.mark.parametrize("url", ["/api/v1/services/nope/", "/api/v1/services/nope/series/?field=in_use&range=1h"])
def test_unknown_service_is_a_json_404(client, auth, db, url) -> None:
    response = client.get(url, headers=auth)
    assert response.status_code == 404
    assert response.json() == {"error": "no service named 'nope'"}


def test_it_needs_a_token_or_a_session(client, search, alice) -> None:
    assert client.get("/api/v1/services/search/").status_code == 401
    client.force_login(alice)
    body = client.get("/api/v1/services/search/series/?field=max&range=6h").json()
    assert (body["field"], body["range"]) == ("max", "6h") and body["points"][-1][1] == 20.0
