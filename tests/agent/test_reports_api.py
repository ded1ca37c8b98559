"""POST /api/v1/agent/reports: bearer token only, strict validation, upsert per stack, retention."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from poolboard.agent.protocol import MAX_GROUPS, MAX_STACK_CHARS
from poolboard.diagnosis.models import AgentReport

pytestmark = [pytest.mark.django_db]

URL = "/api/v1/agent/reports"
SENT_AT = "2026-12-01T22:00:00.000+00:00"


def report(n: int = 0, **fields) -> dict:
    return {
        "fingerprint": f"{n:040x}",
        "function": "billing.exports.leaky_invoice_export",
        "stack": '  File "/srv/billing/exports.py", line 12, in leaky_invoice_export\n',
        "count": 2,
        "oldest_hold_s": 74.5,
        **fields,
    }


def batch(reports=None, **fields) -> dict:
    return {"service": "billing", "instance": "web-1:41", "sent_at": SENT_AT, "reports": [report()] if reports is None else reports, **fields}


def post(client, body, token: str | None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(URL, data=data, content_type="application/json", headers=headers)


def test_it_stores_a_batch_linked_to_its_service(client, token, make_service) -> None:
    billing = make_service("billing")
    response = post(client, batch([report(1), report(2, count=1, oldest_hold_s=61.0)]), token)
    assert response.status_code == 200 and response.json() == {"stored": 2}
    rows = list(AgentReport.objects.order_by("fingerprint"))
    assert [(r.service_id, r.instance, r.count, r.oldest_hold_s) for r in rows] == [
        (billing.id, "web-1:41", 2, 74.5),
        (billing.id, "web-1:41", 1, 61.0),
    ]
    assert rows[0].reported_at.isoformat() == "2026-12-01T22:00:00+00:00"


def test_a_later_batch_updates_in_place_and_zeroes_stacks_it_no_longer_lists(client, token) -> None:
    post(client, batch([report(1), report(2)]), token)
    first = AgentReport.objects.get(fingerprint=report(1)["fingerprint"])
    post(client, batch([report(1, count=3, oldest_hold_s=90.0)], sent_at="2026-12-01T22:00:15+00:00"), token)
    # Another instance's stacks are its own truth, untouched.
    post(client, batch([report(2)], instance="web-2:7"), token)

    again = AgentReport.objects.get(pk=first.pk)
    assert (again.count, again.oldest_hold_s, again.first_reported_at) == (3, 90.0, first.first_reported_at)
    assert again.received_at >= first.received_at
    assert AgentReport.objects.count() == 3
    assert AgentReport.objects.get(instance="web-1:41", fingerprint=report(2)["fingerprint"]).count == 0
    assert AgentReport.objects.get(instance="web-2:7").count == 2

    # An empty batch is the all-clear for its instance.
    assert post(client, batch(reports=[], instance="web-2:7"), token).json() == {"stored": 0}
    assert AgentReport.objects.get(instance="web-2:7").count == 0


def test_current_for_lists_only_fresh_holding_stacks_and_prune_keeps_a_week(client, token, make_service) -> None:
    billing, search = make_service("billing"), make_service("search")
    post(client, batch([report(1, count=1), report(2, count=4)]), token)
    post(client, batch([report(3)], service="search"), token)
    now = timezone.now()
    current = AgentReport.objects.current_for([billing, search], now)
    assert [r["count"] for r in current[billing.id]] == [4, 1]  # most connections first
    assert set(current[billing.id][0]) == {"fingerprint", "stack", "function", "count", "oldest_hold_s", "instance", "reported_at"}
    assert AgentReport.objects.current_for([billing], now + timedelta(minutes=4)) == {}

    AgentReport.objects.filter(service_name="search").update(received_at=now - timedelta(days=8))
    assert AgentReport.objects.prune(now) == 1
    assert set(AgentReport.objects.values_list("service_name", flat=True)) == {"billing"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "request body is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ("[1, 2]", "the body must be a JSON object with service, instance, sent_at and reports"),
        ({"service": "billing", "reports": []}, "missing fields: instance, sent_at"),
        (batch(service=""), "service must not be empty"),
        (batch(instance=7), "instance must be a string"),
        (batch(sent_at="yesterday"), "sent_at must be an ISO 8601 time with its UTC offset, e.g. 2026-12-01T22:00:00+00:00"),
        (batch(sent_at="2026-12-01T22:00:00"), "sent_at must be an ISO 8601 time with its UTC offset, e.g. 2026-12-01T22:00:00+00:00"),
        (batch(reports="none"), "reports must be a list"),
        (batch([report(n) for n in range(MAX_GROUPS + 1)]), f"too many reports: {MAX_GROUPS + 1} (at most {MAX_GROUPS} per batch)"),
        (batch([report(), 5]), "reports[1] must be an object"),
        (batch([{"fingerprint": "ab" * 20}]), "reports[0]: missing fields: function, stack, count, oldest_hold_s"),
        (
            batch([report(stack="x" * (MAX_STACK_CHARS + 1))]),
            f"reports[0].stack is too long: {MAX_STACK_CHARS + 1} characters (at most {MAX_STACK_CHARS})",
        ),
        (batch([report(function="f" * 301)]), "reports[0].function is too long: 301 characters (at most 300)"),
        (batch([report(stack="a\x00b")]), "reports[0].stack contains a NUL character"),
        (batch([report(fingerprint="XYZ")]), "reports[0].fingerprint must be 40 lowercase hex digits (a sha1)"),
        (batch([report(count=0)]), "reports[0].count must be a whole number of connections, at least 1"),
        (batch([report(count=True)]), "reports[0].count must be a whole number of connections, at least 1"),
        (batch([report(count=1.5)]), "reports[0].count must be a whole number of connections, at least 1"),
        (batch([report(oldest_hold_s=-1)]), "reports[0].oldest_hold_s must be a number of seconds, 0 or more"),
        ('{"service": "b", "instance": "i", "sent_at": "2026-12-01T22:00:00+00:00", "reports": [{"fingerprint": "'
         + "0" * 40 + '", "function": "f", "stack": "s", "count": 1, "oldest_hold_s": NaN}]}',
         "reports[0].oldest_hold_s must be a number of seconds, 0 or more"),
        (batch([report(1), report(2), report(1)]), "reports[2].fingerprint repeats reports[0]: send one report per stack"),
        ("[" * 100_000 + "]" * 100_000, "request body is not valid JSON: nested too deeply"),
    ],
    ids=lambda value: value[:40] if isinstance(value, str) else None,
)
def test_it_refuses_a_bad_batch_whole_with_a_clear_400(client, token, body, message) -> None:
    post(client, batch([report(9)]), token)
    before = list(AgentReport.objects.values_list("fingerprint", "count", "received_at"))

    response = post(client, body, token)

    assert response.status_code == 400
    assert response.json() == {"error": message}
    assert list(AgentReport.objects.values_list("fingerprint", "count", "received_at")) == before  # nothing lost or half-stored


def test_it_refuses_a_body_over_the_upload_limit(client, token, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = post(client, batch([report(stack="x" * 2000)]), token)
    assert response.status_code == 400 and response.json() == {"error": "request body too large"}


def test_it_takes_only_bearer_tokens_and_needs_no_csrf_token(token, alice) -> None:
    browser = Client(enforce_csrf_checks=True)
    assert post(browser, batch(), token).status_code == 200

    browser.force_login(alice)  # a session cookie alone is not enough: that is what CSRF rides on
    response = post(browser, batch(), None)
    assert response.status_code == 401
    assert response.json() == {"error": "send Authorization: Bearer <token> (an API token from createapitoken)"}
    assert response["WWW-Authenticate"].startswith("Bearer")

    assert post(browser, batch(), "pb_not-a-real-token").json() == {"error": "invalid or revoked API token"}
    assert browser.get(URL, headers={"Authorization": f"Bearer {token}"}).status_code == 405


def test_createapitoken_replace_revokes_the_tokens_of_the_same_name(alice) -> None:
    from io import StringIO

    from django.core.management import call_command

    from poolboard.api.models import ApiToken

    for _ in range(2):
        call_command("createapitoken", "alice", "--name", "demo agent", "--replace", stdout=StringIO())
    call_command("createapitoken", "alice", "--name", "ci", stdout=StringIO())
    assert sorted(ApiToken.objects.values_list("name", flat=True)) == ["ci", "demo agent"]


def test_the_diagnosis_reads_the_stored_reports_as_its_agent_input(client, token, make_service) -> None:
    from poolboard.diagnosis import inputs

    billing = make_service("billing")
    post(client, batch([report(1, count=3, oldest_hold_s=95.0)]), token)
    [held] = inputs.agent_reports([billing], timezone.now())[billing.id]
    assert (held.function, held.count, held.oldest_hold_s, held.instance) == (
        "billing.exports.leaky_invoice_export", 3, 95.0, "web-1:41"
    )
    assert "in leaky_invoice_export" in held.stack


def test_the_daily_task_prunes_reports_older_than_a_week(client, token) -> None:
    from django.conf import settings

    from poolboard.diagnosis.tasks import prune_agent_reports

    post(client, batch([report(1), report(2)]), token)
    AgentReport.objects.filter(fingerprint=report(1)["fingerprint"]).update(received_at=timezone.now() - timedelta(days=8))
    assert prune_agent_reports() == 1
    assert AgentReport.objects.count() == 1
    assert settings.CELERY_BEAT_SCHEDULE["prune-agent-reports"]["task"] == prune_agent_reports.name
