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
