"""/api/v1/alerts/: the alerts the Alerts page shows, as JSON."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from poolboard.notify.models import Silence
from tests.dashboard.alert_factories import alert_fleet

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet(make_service):
    return alert_fleet(make_service)


def test_it_lists_firing_then_pending_alerts(client, auth, fleet):
    now = timezone.now()
    Silence.objects.create(matchers=[{"name": "service", "value": "billing", "isRegex": False, "isEqual": True}],
                           starts_at=now, ends_at=now + timedelta(hours=1), created_by="bob", comment="known")
    body = client.get("/api/v1/alerts/", headers=auth).json()
    assert [(a["rule"]["name"], a["service"], a["state"]) for a in body["alerts"]] == [
        ("PoolSaturated", "search", "firing"), ("PoolWaiting", "billing", "pending")]
    search, billing = body["alerts"]
    assert search["value"] == 100.0 and search["labels"]["alertname"] == "PoolSaturated"
    assert search["fired_at"] == fleet["firing"].fired_at.isoformat() and search["silenced_until"] is None
    assert billing["silenced_until"] is not None
    assert body["next_offset"] is None


def test_it_filters_by_state_rule_and_service(client, auth, fleet):
    get = lambda query: client.get("/api/v1/alerts/" + query, headers=auth)  # noqa: E731
    assert [a["service"] for a in get("?state=inactive").json()["alerts"]] == ["checkout"]
    assert [a["service"] for a in get(f"?rule={fleet['waiting'].pk}").json()["alerts"]] == ["billing"]
    assert [a["rule"]["name"] for a in get("?service=search").json()["alerts"]] == ["PoolSaturated"]
    page = get("?limit=1").json()
    assert len(page["alerts"]) == 1 and page["next_offset"] == 1
    assert get("?limit=1&offset=1").json()["alerts"][0]["service"] == "billing"


@pytest.mark.parametrize(("query", "status", "message"), [
    ("?state=burning", 400, "unknown state 'burning'"),
    ("?rule=abc", 400, "rule must be a rule id"),
    ("?service=nope", 404, "no service named 'nope'"),
    ("?limit=lots", 400, "limit and offset must be whole numbers"),
])
def test_it_says_what_is_wrong_with_a_bad_filter(client, auth, fleet, query, status, message):
    response = client.get("/api/v1/alerts/" + query, headers=auth)
    assert response.status_code == status and message in response.json()["error"]


def test_it_needs_a_login_or_a_token(client):
    response = client.get("/api/v1/alerts/")
    assert response.status_code == 401 and "authentication required" in response.json()["error"]


def test_it_backtests_a_rule_as_json(client, auth, make_service, settings):
    """The admin page's replay as an API: 10 minutes of callers waiting, for 2 m: one firing."""
    from tests.dashboard.alert_factories import rule
    from tests.fleet.factories import write_samples

    settings.COLLECT_INTERVAL = 15
    search = make_service("search", instances=1, max=10, in_use=5, pending=0)
    start = (int(timezone.now().timestamp()) // 15) * 15 - 119 * 15
    write_samples([(search.pools.get().pk, start + i * 15, {"max": 10.0, "in_use": 5.0, "pending": 2.0 if 40 <= i < 80 else 0.0})
                   for i in range(120)])
    waiting = rule("PoolWaiting", signal="waiting", threshold=0, for_s=120, severity="warning")
    body = client.get(f"/api/v1/alerts/rules/{waiting.pk}/backtest/?range=6h", headers=auth).json()
    assert (body["fired"], body["notifications"], body["firing_s"]) == (1, 2, 480.0)
    assert body["services"] == {"matched": 1, "replayed": 1} and body["condition"]["edited"] == []
    [episode] = body["episodes"]
    assert episode["service"] == "search" and episode["firing_s"] == 480.0 and episode["peak"] == 2.0
    assert {s["for_s"]: s["fired"] for s in body["for_sweep"]}[900] == 0
    edited = client.get(f"/api/v1/alerts/rules/{waiting.pk}/backtest/?range=6h&for_s=15m", headers=auth).json()
    assert edited["fired"] == 0 and edited["condition"]["edited"] == ["for_s"]
    bad = client.get(f"/api/v1/alerts/rules/{waiting.pk}/backtest/?threshold=lots", headers=auth)
    assert bad.status_code == 400 and bad.json()["error"] == "threshold: 'lots' is not a number"
    budget = rule("DatabaseBudget", signal="budget", threshold=80, for_s=300)
    assert client.get(f"/api/v1/alerts/rules/{budget.pk}/backtest/", headers=auth).status_code == 422
    assert client.get("/api/v1/alerts/rules/999999/backtest/", headers=auth).status_code == 404
