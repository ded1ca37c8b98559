"""Delivery: retries, 4xx, timeouts, redirects, leases, address checks — against a local receiver."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from poolboard.notify import dispatch
from poolboard.notify.dispatch import dispatch_due
from poolboard.notify.models import Channel, Notification
from poolboard.notify.outbox import enqueue
from tests.notify.factories import T0, alert, channel

pytestmark = pytest.mark.django_db


def seconds(n: float):
    return T0 + timedelta(seconds=n)


def test_it_retries_500_500_200_three_times_under_one_key(receiver):
    hook = receiver(500, 500, 200)
    ch = channel(url=hook.url)
    row = enqueue(ch, "0123456789abcdef:1", "alert", alert(), T0)
    assert dispatch_due(now=seconds(0)) == 1
    row.refresh_from_db()
    assert row.state == "pending" and row.attempts == 1 and row.next_attempt_at == seconds(1)
    assert "HTTP 500" in row.last_error
    assert dispatch_due(now=seconds(0.5)) == 0  # backing off
    assert dispatch_due(now=seconds(1)) == 1
    row.refresh_from_db()
    assert row.next_attempt_at == seconds(3)  # 1 s, then 2 s: exponential
    assert dispatch_due(now=seconds(3)) == 1
    row.refresh_from_db()
    ch.refresh_from_db()
    assert row.state == "sent" and row.attempts == 3 and row.sent_at == seconds(3)
    assert hook.keys() == ["0123456789abcdef:1"] * 3
    assert [r["json"]["idempotencyKey"] for r in hook.requests] == ["0123456789abcdef:1"] * 3
    assert ch.last_ok_at == seconds(3) and "HTTP 500" in ch.last_error
    assert dispatch_due(now=seconds(100)) == 0 and len(hook.requests) == 3


def test_it_records_a_400_once_and_never_retries_it(receiver):
    hook = receiver(400)
    ch = channel(url=hook.url)
    row = enqueue(ch, "0123456789abcdef:1", "alert", alert(), T0)
    dispatch_due(now=seconds(0))
    dispatch_due(now=seconds(600))
    row.refresh_from_db()
    ch.refresh_from_db()
    assert len(hook.requests) == 1
    assert row.state == "failed" and row.attempts == 1
    assert row.last_error.startswith("HTTP 400") and "scripted failure" in row.last_error
    assert ch.last_error == row.last_error and ch.last_error_at == seconds(0)


def test_it_cuts_a_hanging_receiver_at_the_timeout_and_retries_later(receiver, settings):
    settings.NOTIFY_TIMEOUT = 0.3
    hook = receiver("hang", 200)
    ch = channel(url=hook.url)
    row = enqueue(ch, "k:1", "alert", alert(), T0)
    started = time.monotonic()
    dispatch_due(now=seconds(0))
    assert time.monotonic() - started < 5  # not the receiver's 60 s
    row.refresh_from_db()
    assert row.state == "pending" and "timeout" in row.last_error
    dispatch_due(now=seconds(1))
    row.refresh_from_db()
    assert row.state == "sent" and hook.keys() == ["k:1", "k:1"]


def test_it_gives_up_at_the_retry_deadline(receiver, settings):
    settings.NOTIFY_RETRY_DEADLINE = 5
    hook = receiver(503)
    ch = channel(url=hook.url)
    row = enqueue(ch, "k:1", "alert", alert(), T0)
    for at in (0, 1, 3, 7):
        dispatch_due(now=seconds(at))
    row.refresh_from_db()
    assert row.state == "failed" and "retry deadline after 3 attempts" in row.last_error
    assert len(hook.requests) == 3


def test_it_follows_at_most_three_redirects(receiver):
    hook = receiver()
    hook.script = [("redirect", hook.url)]
    ch = channel(url=hook.url)
    row = enqueue(ch, "k:1", "alert", alert(), T0)
    dispatch_due(now=seconds(0))
    row.refresh_from_db()
    assert row.state == "failed" and row.last_error == "more than 3 redirects"
    assert len(hook.requests) == 4


def test_it_refuses_a_redirect_to_the_metadata_address(receiver):
    hook = receiver(("redirect", "http://169.254.169.254/latest/meta-data/"))
    ch = channel(url=hook.url)
    row = enqueue(ch, "k:1", "alert", alert(), T0)
    dispatch_due(now=seconds(0))
    row.refresh_from_db()
    assert row.state == "failed"
    assert row.last_error.startswith("refused redirect target: 169.254.169.254 is a cloud metadata address")
    assert len(hook.requests) == 1


def test_it_checks_the_address_again_at_send_time(receiver, settings):
    hook = receiver(200)
    ch = channel(url=hook.url)
    enqueue(ch, "k:1", "alert", alert(), T0)
    settings.NOTIFY_ALLOW_NETWORKS = []  # loopback no longer allowed (as if DNS now pointed inside)
    dispatch_due(now=seconds(0))
    ch.refresh_from_db()
    assert hook.requests == []
    assert ch.last_error == "refused 127.0.0.1 is loopback (allow it with NOTIFY_ALLOW_NETWORKS)"


def test_a_dispatcher_killed_after_the_claim_is_replaced_after_the_lease_with_the_same_key(receiver, settings):
    settings.NOTIFY_LEASE = 60
    hook = receiver(200)
    ch = channel(url=hook.url)
    row = enqueue(ch, "0123456789abcdef:1", "alert", alert(), T0)
    dead = dispatch.claim(seconds(0))  # claimed, then the dispatcher "dies": nothing sent, nothing recorded
    assert dead is not None and dead.batch_key == "0123456789abcdef:1"
    assert dispatch_due(now=seconds(59)) == 0  # leased: nobody else takes it
    assert hook.requests == []
    assert dispatch_due(now=seconds(61)) == 1
    assert hook.keys() == ["0123456789abcdef:1"]
    row.refresh_from_db()
    assert row.state == "sent" and row.attempts == 2
    # The dead dispatcher's late outcome changes nothing: its claim token is gone.
    assert dispatch.record(dead, dispatch.send(dead), seconds(62)) == "lost"
    assert dispatch_due(now=seconds(3600)) == 0
    assert hook.keys() == ["0123456789abcdef:1"] * 2  # its late send is the second, same key: at most twice


def test_a_dispatcher_killed_after_sending_is_resent_once_after_the_lease(receiver, settings):
    settings.NOTIFY_LEASE = 60
    hook = receiver(200)
    ch = channel(url=hook.url)
    enqueue(ch, "a:1", "alert", alert("aaaaaaaaaaaaaaaa"), T0)
    enqueue(ch, "b:1", "alert", alert("bbbbbbbbbbbbbbbb"), T0)
    dead = dispatch.claim(seconds(0))
    dispatch.send(dead)  # sent, then killed before recording
    enqueue(ch, "c:1", "alert", alert("cccccccccccccccc"), seconds(10))  # joins the group meanwhile
    assert dispatch_due(now=seconds(61)) == 2  # the dead batch again, then the newcomer in its own batch
    assert dispatch_due(now=seconds(400)) == 0
    batch = dead.batch_key
    assert batch.startswith("batch:")
    assert [k for k in hook.keys()] == [batch, batch, "c:1"]
    assert hook.requests[0]["json"] == hook.requests[1]["json"]
    assert Notification.objects.filter(state="sent").count() == 3


def test_a_test_notification_is_sent_once_and_not_retried(receiver):
    hook = receiver(500)
    ch = channel(url=hook.url)
    state, error = dispatch.send_test(ch, "bob", T0)
    assert state == "failed" and error.startswith("HTTP 500")
    dispatch_due(now=seconds(600))
    assert len(hook.requests) == 1
    assert hook.requests[0]["json"]["alerts"][0]["labels"]["alertname"] == "PoolboardTestNotification"


def test_a_disabled_channel_keeps_its_rows_until_enabled(receiver):
    hook = receiver(200)
    ch = channel(url=hook.url, enabled=False)
    enqueue(ch, "k:1", "alert", alert(), T0)
    assert dispatch_due(now=seconds(0)) == 0
    Channel.objects.filter(pk=ch.pk).update(enabled=True)
    assert dispatch_due(now=seconds(1)) == 1 and hook.keys() == ["k:1"]
