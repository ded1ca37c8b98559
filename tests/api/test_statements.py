"""/api/v1/statements/ and /api/v1/statements/<id>/: the slow-queries figures as JSON."""

from __future__ import annotations

import json

import pytest

from tests.dashboard.statement_factories import statement_fleet

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet(monitored, make_service, settings):
    return statement_fleet(monitored, make_service, settings)


def get(client, url, token):
    r = client.get(url, headers={"Authorization": f"Bearer {token}"})
    return r.status_code, json.loads(r.content)


def test_it_needs_a_token(client, db):
    for url in ["/api/v1/statements/", "/api/v1/statements/1/"]:
        assert client.get(url).status_code == 401, url


def test_it_lists_statements_with_the_pools_they_hold(client, fleet, token):
    status, data = get(client, "/api/v1/statements/", token)
    assert status == 200 and data["sort"] == "total" and data["range"] == "24h" and data["next_offset"] is None
    first, second, third = data["statements"]
    assert first["id"] == fleet["sleep"].pk and first["query"] == "SELECT pg_sleep($1)"
    assert first["calls"] == 6 and first["mean_ms"] == pytest.approx(40_000) and first["max_ms"] == 45_000
    assert first["server"] == "orders-db" and first["datname"] == "app" and first["queryid"] == 111
    assert first["episodes"] == 1 and first["trend_vs_last_week"] is None
    assert first["total_share"] == pytest.approx(240_000 / (240_000 + 6_000 + 1))
    assert first["services"] == [{"service": "reports", "peak_held": 3, "held_conn_s": 80.0, "pool_max": 5.0, "peak_share": 0.6}]
    assert second["id"] == fleet["orders"].pk and second["rows_per_call"] == 10
    assert third["services"] == []


def test_it_filters_sorts_and_pages(client, fleet, token):
    _, data = get(client, "/api/v1/statements/?sort=calls&limit=1", token)
    assert [s["id"] for s in data["statements"]] == [fleet["orders"].pk] and data["next_offset"] == 1
    _, data = get(client, "/api/v1/statements/?sort=calls&limit=1&offset=1", token)
    assert [s["id"] for s in data["statements"]] == [fleet["sleep"].pk]
    _, data = get(client, "/api/v1/statements/?service=checkout", token)
    assert [s["id"] for s in data["statements"]] == [fleet["orders"].pk]
    _, data = get(client, "/api/v1/statements/?database=orders-db/app&sort=held", token)
    assert [s["id"] for s in data["statements"]][:2] == [fleet["sleep"].pk, fleet["orders"].pk]
    _, data = get(client, "/api/v1/statements/?database=orders-db/other", token)
    assert data["statements"] == []


@pytest.mark.parametrize(("query", "message"), [
    ("sort=slowest", "unknown sort 'slowest'; use one of total, mean, calls, held"),
    ("database=nowhere", "no monitored server named 'nowhere' (database is server or server/datname)"),
    ("service=ghost", "no service named 'ghost'"),
    ("range=forever", "unknown range 'forever'; use one of 1h, 6h, 24h, 7d, 30d"),
    ("limit=many", "limit and offset must be whole numbers"),
])
def test_it_says_what_is_wrong_with_a_bad_parameter(client, fleet, token, query, message):
    status, data = get(client, f"/api/v1/statements/?{query}", token)
    assert status == 400 and data == {"error": message}


def test_it_gives_one_statement_with_its_history_and_services(client, fleet, token):
    status, data = get(client, f"/api/v1/statements/{fleet['sleep'].pk}/", token)
    assert status == 200
    assert data["query"] == "SELECT pg_sleep($1)" and data["fingerprint"] == fleet["sleep"].query.fingerprint
    assert [h["calls"] for h in data["history"]] == [2, 2, 2] and data["history"][0]["mean_ms"] == 40_000
    assert data["totals"]["calls"] == 6 and data["totals"]["services"][0]["peak_held"] == 3
    status, data = get(client, f"/api/v1/statements/{fleet['sleep'].pk}/?range=1y", token)
    assert status == 400 and "unknown range '1y'" in data["error"]
    status, data = get(client, "/api/v1/statements/999999/", token)
    assert status == 404 and data == {"error": "no statement with id 999999"}
