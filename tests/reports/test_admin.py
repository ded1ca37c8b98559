"""Staff subscribe a team address in the admin; stored reports cannot be edited there."""

from __future__ import annotations

import pytest
from django.utils import timezone

from poolboard.reports import build
from poolboard.reports.models import Subscription

from .test_build import WEEK

pytestmark = pytest.mark.django_db


def test_staff_subscribe_a_team_address(client, bob):
    client.force_login(bob)
    response = client.post("/admin/reports/subscription/add/", {
        "user": "", "email": "dba-team@example.org", "active": "on", "weekday": "0", "hour": "8",
        "time_zone": "Europe/Paris", "services": "[]", "databases": '["orders-db"]',
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    sub = Subscription.objects.get()
    assert sub.recipient == "dba-team@example.org" and sub.databases == ["orders-db"]
    assert sub.next_send_at > timezone.now()


def test_a_subscription_needs_a_recipient(client, bob):
    client.force_login(bob)
    response = client.post("/admin/reports/subscription/add/", {
        "user": "", "email": "", "active": "on", "weekday": "0", "hour": "8", "time_zone": "UTC",
        "services": "[]", "databases": "[]",
    })
    assert response.status_code == 200
    assert "Give a user or a team email address." in response.content.decode()


def test_stored_reports_are_read_only_in_the_admin(client, bob):
    report = build.build(WEEK, WEEK.end)
    client.force_login(bob)
    assert client.get(f"/admin/reports/report/{report.pk}/change/").status_code == 200
    client.post(f"/admin/reports/report/{report.pk}/change/", {"week": "2020-W01"})
    report.refresh_from_db()
    assert report.week == WEEK.key
    assert client.get("/admin/reports/report/add/").status_code == 403
