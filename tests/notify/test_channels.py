"""What each channel kind sends, and what a channel refuses to be saved with."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from poolboard.notify.dispatch import dispatch_due
from poolboard.notify.models import Channel, Notification
from poolboard.notify.outbox import enqueue
from tests.notify.factories import T0, alert, channel

pytestmark = pytest.mark.django_db

SCHEMA = json.loads((Path(__file__).parent / "alertmanager_v4.schema.json").read_text())
A, B = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"


def test_the_webhook_body_is_a_valid_alertmanager_v4_payload(receiver):
    hook = receiver()
    ch = channel(url=hook.url)
    enqueue(ch, f"{B}:1", "alert", alert(B, service="search"), T0)
    dispatch_due(now=T0)  # the receiver hears B firing first: a resolved alert it never heard of is not sent
    enqueue(ch, f"{A}:1", "alert", alert(A, service="billing"), T0)
    enqueue(ch, f"{B}:2", "alert", alert(B, status="resolved", service="search"), T0)
    dispatch_due(now=T0)
    body = hook.requests[1]["json"]
    jsonschema.validate(body, SCHEMA)
    firing, resolved = body["alerts"]
    assert firing["endsAt"] == "0001-01-01T00:00:00Z" and resolved["endsAt"] == "2026-12-01T12:10:00+00:00"
    assert firing["generatorURL"] == "https://poolboard.example.org/alerts/rules/1/"
    assert body["externalURL"] == "https://poolboard.example.org" and body["receiver"] == "hook"
    assert body["status"] == "firing"  # any alert firing
    assert [a["idempotencyKey"] for a in body["alerts"]] == [f"{A}:1", f"{B}:2"]
    assert hook.requests[1]["headers"]["Content-Type"] == "application/json"


def test_the_schema_catches_what_alertmanager_would_not_send():
    good = {
        "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing", "receiver": "r", "groupLabels": {},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://x",
        "alerts": [{"status": "firing", "labels": {"alertname": "a"}, "annotations": {}, "startsAt": "2026-12-01T12:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": A}],
    }
    jsonschema.validate(good, SCHEMA)
    for broken in (
        {**good, "version": 4},
        {**good, "alerts": [{**good["alerts"][0], "endsAt": "2026-12-01T13:00:00Z"}]},  # firing with an end
        {**good, "alerts": [{**good["alerts"][0], "fingerprint": "xyz"}]},
        {**good, "commonLabels": {"n": 1}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SCHEMA)


def test_a_webhook_sends_its_bearer_token_from_the_environment(receiver, monkeypatch):
    monkeypatch.setenv("POOLBOARD_TEST_HOOK_TOKEN", "s3cret-token")
    hook = receiver()
    ch = channel(url=hook.url, secret_env="POOLBOARD_TEST_HOOK_TOKEN")
    enqueue(ch, f"{A}:1", "alert", alert(A), T0)
    dispatch_due(now=T0)
    assert hook.requests[0]["headers"]["Authorization"] == "Bearer s3cret-token"
    assert "s3cret-token" not in json.dumps(list(Channel.objects.values()), default=str)


def test_a_missing_secret_fails_the_send_with_where_it_was_looked_for(receiver):
    hook = receiver()
    ch = channel(url=hook.url, secret_env="POOLBOARD_TEST_UNSET_VARIABLE")
    row = enqueue(ch, f"{A}:1", "alert", alert(A), T0)
    dispatch_due(now=T0)
    row.refresh_from_db()
    assert row.state == "failed" and hook.requests == []
    assert row.last_error == "channel hook secret: environment variable POOLBOARD_TEST_UNSET_VARIABLE is not set"


def test_email_is_one_html_and_text_message_per_batch_with_the_key():
    ch = channel("email", name="mail", settings={"to": ["oncall@example.org", "dba@example.org"]})
    enqueue(ch, f"{A}:1", "alert", alert(A, service="billing"), T0)
    enqueue(ch, f"{B}:1", "alert", alert(B, service="search"), T0)
    dispatch_due(now=T0)
    (message,) = mail.outbox
    key = Notification.objects.first().batch_key
    assert message.to == ["oncall@example.org", "dba@example.org"]
    assert message.subject == "[FIRING:2] 2 alerts: PoolSaturated on billing, PoolSaturated on search"
    assert message.extra_headers["Idempotency-Key"] == key and key in message.body
    assert "FIRING PoolSaturated: PoolSaturated on billing" in message.body
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html" and "<td>PoolSaturated on search" in html


def test_a_report_email_carries_the_reports_own_subject_text_and_html():
    ch = channel("email", name="mail")
    enqueue(ch, "report:2026-W48", "report",
            {"subject": "Weekly capacity", "text": "all fine", "html": "<p>all <b>fine</b></p>", "to": ["boss@example.org"]}, T0)
    dispatch_due(now=T0)
    (message,) = mail.outbox
    assert (message.subject, message.body, message.to) == ("Weekly capacity", "all fine", ["boss@example.org"])
    assert message.alternatives[0][0] == "<p>all <b>fine</b></p>"
    assert message.extra_headers["Idempotency-Key"] == "report:2026-W48"


def test_slack_posts_to_the_url_in_its_secret_file(receiver, tmp_path):
    hook = receiver()
    secret = tmp_path / "slack-url"
    secret.write_text(hook.url + "\n")
    ch = channel("slack", name="slack", secret_file=str(secret))
    enqueue(ch, f"{A}:1", "alert", alert(A, service="billing"), T0)
    dispatch_due(now=T0)
    body = hook.requests[0]["json"]
    assert body["text"].startswith('*[FIRING:1]* {}:{alertname="PoolSaturated"}\n:red_circle: <https://poolboard.example.org/alerts/rules/1/|')
    assert body["blocks"][1]["elements"][0]["text"] == f"idempotency key: {A}:1"
    assert hook.keys() == [f"{A}:1"]


def test_pagerduty_gets_one_event_per_alert_with_the_fingerprint_as_dedup_key(receiver, monkeypatch):
    monkeypatch.setenv("POOLBOARD_TEST_PD_KEY", "R0UTINGKEY0000000000000000000000")
    hook = receiver(202)
    ch = channel("pagerduty", name="pd", url=hook.url, secret_env="POOLBOARD_TEST_PD_KEY")
    enqueue(ch, f"{B}:1", "alert", alert(B, service="search"), T0)
    dispatch_due(now=T0)
    enqueue(ch, f"{A}:1", "alert", alert(A, service="billing"), T0)
    enqueue(ch, f"{B}:2", "alert", alert(B, status="resolved", service="search"), T0)
    dispatch_due(now=T0)
    events = [r["json"] for r in hook.requests[1:]]
    assert [(e["event_action"], e["dedup_key"]) for e in events] == [("trigger", A), ("resolve", B)]
    assert {e["routing_key"] for e in events} == {"R0UTINGKEY0000000000000000000000"}
    assert events[0]["payload"] | {"custom_details": None} == {
        "summary": "PoolSaturated on billing", "source": "billing", "severity": "critical", "custom_details": None}
    assert events[0]["payload"]["custom_details"]["idempotency_key"] == f"{A}:1"
    assert hook.keys() == [f"{B}:1", f"{A}:1", f"{B}:2"]


@pytest.mark.parametrize(("url", "message"), [
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata.google.internal is a cloud metadata host"),
    ("http://100.100.100.200/latest/meta-data/", "100.100.100.200 is a cloud metadata address"),
    ("http://[fe80::1]/hook", "fe80::1 is link-local"),
    ("http://10.1.2.3/hook", "10.1.2.3 is a private address"),
    ("http://user:pw@example.org/hook", "the URL carries a user:password"),
    ("ftp://example.org/hook", "only http:// and https:// URLs are sent to"),
])
def test_a_webhook_url_to_an_internal_or_metadata_address_is_refused_at_save_time(url, message):
    ch = Channel(name="bad", kind="webhook", settings={"url": url})
    with pytest.raises(ValidationError) as caught:
        ch.full_clean()
    assert message in " ".join(caught.value.message_dict["settings"])


def test_an_allow_listed_network_may_be_sent_to(settings):
    settings.NOTIFY_ALLOW_NETWORKS = ["10.0.0.0/8"]
    Channel(name="internal", kind="webhook", settings={"url": "http://10.1.2.3/hook"}).full_clean()
    settings.NOTIFY_ALLOW_NETWORKS = []
    with pytest.raises(ValidationError, match="127.0.0.1 is loopback"):
        Channel(name="local", kind="webhook", settings={"url": "http://127.0.0.1:9/hook"}).full_clean()


def test_each_kind_says_what_it_lacks():
    cases = [
        ("email", {"to": ["not-an-address"]}, "settings", "'not-an-address' is not an email address."),
        ("email", {"to": "oncall@example.org"}, "settings", 'An email channel needs {"to": ["someone@example.org", ...]}.'),
        ("webhook", {}, "settings", 'A webhook channel needs {"url": "https://..."}.'),
        ("slack", {}, "secret_env", "A Slack channel needs its incoming-webhook URL as a secret"),
        ("pagerduty", {}, "secret_env", "A PagerDuty channel needs its routing key as a secret"),
    ]
    for kind, config, field, message in cases:
        with pytest.raises(ValidationError) as caught:
            Channel(name=f"c-{kind}", kind=kind, settings=config).full_clean()
        assert any(m.startswith(message) for m in caught.value.message_dict[field]), (kind, caught.value.message_dict)


def test_an_alert_payload_without_fingerprint_or_labels_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="an alert payload needs a fingerprint and a labels object"):
        enqueue(channel(), "k:1", "alert", {"status": "firing", "labels": {"alertname": "x"}}, T0)


def test_a_webhook_with_max_alerts_counts_the_rest_in_truncated_alerts(receiver):
    hook = receiver()
    ch = channel(url=hook.url, settings={"url": hook.url, "max_alerts": 2})
    for n in range(5):
        enqueue(ch, f"{n:016x}:1", "alert", alert(f"{n:016x}", pool=f"p{n}"), T0)
    dispatch_due(now=T0)
    body = hook.requests[0]["json"]
    jsonschema.validate(body, SCHEMA)
    assert (len(body["alerts"]), body["truncatedAlerts"]) == (2, 3)


def test_a_pagerduty_batch_is_leased_long_enough_for_one_request_per_alert(receiver, monkeypatch, settings):
    from poolboard.notify import dispatch

    monkeypatch.setenv("POOLBOARD_TEST_PD_KEY", "k")
    settings.NOTIFY_TIMEOUT = 10
    ch = channel("pagerduty", name="pd", url=receiver().url, secret_env="POOLBOARD_TEST_PD_KEY")
    for n in range(30):
        enqueue(ch, f"{n:016x}:1", "alert", alert(f"{n:016x}", pool=f"p{n}"), T0)
    found = dispatch.claim(T0)
    assert len(found.rows) == 30
    lease = Notification.objects.filter(claim_token=found.token).values_list("lease_until", flat=True).first()
    assert (lease - T0).total_seconds() >= 30 * 10


def test_slack_gets_at_most_one_message_a_second_per_channel(receiver, tmp_path):
    from datetime import timedelta

    hook = receiver()
    secret = tmp_path / "slack-url"
    secret.write_text(hook.url)
    ch = channel("slack", name="slack", secret_file=str(secret), group_by=["alertname", "service"])
    for n in range(3):
        enqueue(ch, f"{n:016x}:1", "alert", alert(f"{n:016x}", service=f"s{n}"), T0)
    assert dispatch_due(now=T0) == 1
    assert dispatch_due(now=T0 + timedelta(seconds=0.5)) == 0
    assert dispatch_due(now=T0 + timedelta(seconds=1)) == 1
    assert dispatch_due(now=T0 + timedelta(seconds=2)) == 1
    assert len(hook.requests) == 3


def test_a_report_email_carries_its_headers_inline_images_and_attachments():
    import base64

    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")
    ch = channel("email", name="mail")
    payload = {
        "subject": "Weekly capacity", "text": "see the chart", "html": '<img src="cid:chart-1@poolboard">', "to": ["a@example.org"],
        "headers": {"List-Unsubscribe": "<https://poolboard.example.org/u/x>", "Idempotency-Key": "forged"},
        "inline_images": [{"cid": "chart-1@poolboard", "filename": "chart-1.png", "mimetype": "image/png",
                           "content_b64": base64.b64encode(png).decode()}],
        "attachments": [{"filename": "report.pdf", "mimetype": "application/pdf", "content_b64": base64.b64encode(b"%PDF-1.7 x").decode()}],
    }
    enqueue(ch, "report:2026-W48:subscription:1", "report", payload, T0)
    dispatch_due(now=T0)
    (message,) = mail.outbox
    raw = message.message().as_string()
    assert "multipart/related" in raw and "Content-ID: <chart-1@poolboard>" in raw
    assert [a for a in message.attachments if isinstance(a, tuple)] == [("report.pdf", b"%PDF-1.7 x", "application/pdf")]
    assert message.extra_headers == {"List-Unsubscribe": "<https://poolboard.example.org/u/x>",
                                     "Idempotency-Key": "report:2026-W48:subscription:1"}  # the outbox's key wins
