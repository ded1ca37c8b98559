"""The admin: a test notification on demand, each channel's last error, silences from matcher lines, secrets never shown."""

from __future__ import annotations

import pytest

from poolboard.notify.models import Notification, Silence
from tests.notify.factories import channel

pytestmark = pytest.mark.django_db


def test_the_send_test_action_delivers_once_and_says_so(client, bob, receiver):
    hook = receiver()
    ch = channel(url=hook.url)
    client.force_login(bob)
    r = client.post("/admin/notify/channel/", {"action": "send_test_notification", "_selected_action": [ch.pk]}, follow=True)
    assert "Hook: test notification delivered." in r.content.decode()
    (request,) = hook.requests
    assert request["json"]["alerts"][0]["annotations"]["summary"] == "Test notification from poolboard, asked for by bob"
    assert request["headers"]["Idempotency-Key"].startswith("test:")
    assert Notification.objects.get().state == "sent"


def test_a_failed_test_shows_the_error_and_the_channel_list_keeps_it(client, bob, receiver):
    hook = receiver(404)
    ch = channel(url=hook.url)
    client.force_login(bob)
    r = client.post("/admin/notify/channel/", {"action": "send_test_notification", "_selected_action": [ch.pk]}, follow=True)
    html = r.content.decode()
    assert "Hook: test notification not delivered: HTTP 404" in html
    assert html.count("HTTP 404") >= 2  # the message and the channel's last error column
    assert "HTTP 404" in client.get(f"/admin/notify/channel/{ch.pk}/change/").content.decode()


def test_the_channel_form_shows_where_the_secret_is_never_what_it_is(client, bob, monkeypatch):
    monkeypatch.setenv("POOLBOARD_TEST_SLACK_URL", "https://hooks.slack.com/services/T000/B000/XXXXSECRET")
    ch = channel("slack", name="slack", secret_env="POOLBOARD_TEST_SLACK_URL")
    client.force_login(bob)
    html = client.get(f"/admin/notify/channel/{ch.pk}/change/").content.decode()
    assert "POOLBOARD_TEST_SLACK_URL" in html and "readable" in html
    assert "XXXXSECRET" not in html and 'type="password"' not in html


def test_a_silence_is_made_from_matcher_lines_by_the_logged_in_user(client, bob):
    client.force_login(bob)
    form = {"matchers_text": 'service="billing"\nseverity=~"crit.*"', "starts_at_0": "2026-12-01", "starts_at_1": "12:00:00",
            "ends_at_0": "2026-12-01", "ends_at_1": "13:00:00", "comment": "deploy"}
    r = client.post("/admin/notify/silence/add/", form)
    assert r.status_code == 302, r.content.decode()[:2000]
    silence = Silence.objects.get()
    assert silence.created_by == "bob"
    assert silence.matchers == [{"name": "service", "value": "billing", "isRegex": False, "isEqual": True},
                                {"name": "severity", "value": "crit.*", "isRegex": True, "isEqual": True}]
    assert 'service="billing"' in client.get(f"/admin/notify/silence/{silence.pk}/change/").content.decode()
    listed = client.get("/admin/notify/silence/").content.decode()
    assert 'service=&quot;billing&quot;, severity=~&quot;crit.*&quot;' in listed and "expired" in listed  # ended 2026-12-01 13:00


def test_a_bad_matcher_line_is_refused_with_the_reason(client, bob):
    client.force_login(bob)
    form = {"matchers_text": "service billing", "starts_at_0": "2026-12-01", "starts_at_1": "12:00:00",
            "ends_at_0": "2026-12-01", "ends_at_1": "11:00:00", "comment": "x"}
    html = client.post("/admin/notify/silence/add/", form).content.decode()
    assert "expected name=value, name!=value, name=~regex or name!~regex" in html
    assert not Silence.objects.exists()


def test_a_silence_that_ends_before_it_starts_is_refused(client, bob):
    client.force_login(bob)
    form = {"matchers_text": "service=billing", "starts_at_0": "2026-12-01", "starts_at_1": "12:00:00",
            "ends_at_0": "2026-12-01", "ends_at_1": "11:00:00", "comment": "x"}
    html = client.post("/admin/notify/silence/add/", form).content.decode()
    assert "A silence must end after it starts." in html
    assert not Silence.objects.exists()


def test_the_outbox_list_shows_rows_and_their_errors(client, bob):
    from poolboard.notify.outbox import enqueue
    from tests.notify.factories import T0, alert

    ch = channel()
    row = enqueue(ch, "0123456789abcdef:7", "alert", alert(), T0)
    Notification.objects.filter(pk=row.pk).update(state="failed", last_error="HTTP 410: gone")
    client.force_login(bob)
    html = client.get("/admin/notify/notification/").content.decode()
    assert "0123456789abcdef:7" in html and "HTTP 410: gone" in html


def test_deleting_silences_from_the_list_releases_what_they_held(client, bob, receiver):
    from datetime import timedelta

    from poolboard.notify.dispatch import dispatch_due
    from poolboard.notify.outbox import enqueue
    from tests.notify.factories import T0, alert

    hook = receiver()
    ch = channel(url=hook.url)
    silence = Silence.objects.create(matchers=[{"name": "service", "value": "billing", "isRegex": False, "isEqual": True}],
                                     starts_at=T0, ends_at=T0 + timedelta(days=1), created_by="bob", comment="c")
    enqueue(ch, "0123456789abcdef:1", "alert", alert(service="billing"), T0)
    dispatch_due(now=T0)
    assert hook.requests == []
    client.force_login(bob)
    client.post("/admin/notify/silence/", {"action": "delete_selected", "_selected_action": [silence.pk], "post": "yes"})
    assert not Silence.objects.exists()
    dispatch_due(now=T0 + timedelta(seconds=1))
    assert hook.keys() == ["0123456789abcdef:1"]
