from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.django_db


def get(client, url, token):
    r = client.get(url, headers={"Authorization": f"Bearer {token}"})
    return r.status_code, json.loads(r.content)


def test_it_needs_a_token(client, db):
    for url in ["/api/v1/servers/", "/api/v1/databases/x/sessions/", "/api/v1/episodes/", "/api/v1/queries/slow/"]:
        r = client.get(url)
        assert r.status_code == 401, url
    r = client.get("/api/v1/servers/", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


def test_it_gives_databases_with_budgets_and_their_sessions(client, snapped, token):
    status, data = get(client, "/api/v1/servers/", token)
    assert status == 200
    (db,) = data["servers"]
    assert db["name"] == "orders-db" and not db["stale"]
    budget = db["budget"]
    assert budget["total"] == sum(s["connections"] for s in budget["by_service"])
    assert budget["usable"] == budget["max_connections"] - budget["reserved"]
    assert "password" not in json.dumps(data).lower()

    status, data = get(client, "/api/v1/servers/orders-db/sessions/", token)
    assert status == 200
    assert data["total"] == sum(c["count"] for c in data["counts"])
    assert any(c["service"] == "hostile-svc" and c["state"] == "active" for c in data["counts"])
    assert get(client, "/api/v1/servers/nope/sessions/", token)[0] == 404


def test_it_filters_episodes_and_refuses_bad_filters(client, snapped, token):
    status, data = get(client, "/api/v1/episodes/?kind=long_query&service=hostile-svc&open=1", token)
    assert status == 200
    (e,) = data["episodes"]
    assert e["open"] and e["service"] == "hostile-svc" and e["query"].startswith("SELECT pg_sleep($1)")
    assert "4111" not in json.dumps(data)
    status, data = get(client, "/api/v1/episodes/?kind=bogus", token)
    assert status == 400 and "unknown kind" in data["error"]
    status, data = get(client, "/api/v1/episodes/?limit=x", token)
    assert status == 400


def test_it_lists_slow_queries(client, snapped, token):
    status, data = get(client, "/api/v1/queries/slow/?server=orders-db", token)
    assert status == 200
    q = [q for q in data["queries"] if "hostile-svc" in q["services"]][0]
    assert q["episodes"] == 1 and q["max_s"] > 0 and q["p95_s"] == q["max_s"] and q["open"] == 1
    assert get(client, "/api/v1/queries/slow/?days=x", token)[0] == 400
