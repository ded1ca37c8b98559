"""/api/v1/findings/: filters, paging and error messages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from poolboard.diagnosis.models import Finding
from tests.diagnosis.factories import verdict


@pytest.fixture
def billing(make_service):
    return make_service("billing", instances=1, max=10, in_use=9, idle=1)


def test_it_filters_findings_in_the_api(client, auth, billing, make_service):
    search = make_service("search")
    now = timezone.now()
    Finding.objects.record({billing.id: [verdict("leak", now - timedelta(minutes=5), leaked=4)], search.id: [verdict("saturation", now)]}, now)
    Finding.objects.record({billing.id: [verdict("leak", now - timedelta(minutes=5), leaked=4)], search.id: []}, now + timedelta(seconds=15))
    data = client.get("/api/v1/findings/?kind=leak&open=1", headers=auth).json()
    assert [(f["service"], f["kind"], f["open"], f["suspected_leaked"]) for f in data["findings"]] == [("billing", "leak", True, 4.0)]
    assert data["findings"][0]["evidence"][0]["text"] == "in use rose 3 → 9 of 10"
    closed = client.get("/api/v1/findings/?service=search&open=0", headers=auth).json()["findings"]
    assert [(f["kind"], f["closed_at"] is not None) for f in closed] == [("saturation", True)]
    bad = client.get("/api/v1/findings/?kind=nonsense", headers=auth)
    assert bad.status_code == 400 and "unknown kind 'nonsense'" in bad.json()["error"]
    missing = client.get("/api/v1/findings/?service=nope", headers=auth)
    assert missing.status_code == 404 and missing.json()["error"] == "no service named 'nope'"
    paged = client.get("/api/v1/findings/?limit=1", headers=auth).json()
    assert len(paged["findings"]) == 1 and paged["next_offset"] == 1


def test_it_explains_bad_filters(client, auth, billing):
    bad_open = client.get("/api/v1/findings/?open=maybe", headers=auth)
    assert bad_open.status_code == 400 and bad_open.json()["error"] == "open must be 1 or 0"
    bad_limit = client.get("/api/v1/findings/?limit=ten", headers=auth)
    assert bad_limit.status_code == 400 and bad_limit.json()["error"] == "limit and offset must be whole numbers"
