from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction

from poolboard.notify.models import AlertGroup, Notification
from poolboard.notify.outbox import enqueue
from tests.notify.factories import T0, alert, channel

pytestmark = pytest.mark.django_db


def test_it_writes_one_row_per_key_and_channel_and_says_none_for_a_duplicate():
    hook = channel()
    other = channel(name="other")
    first = enqueue(hook, "0123456789abcdef:1", "alert", alert(), T0)
    assert first is not None and first.state == "pending"
    with transaction.atomic():
        assert enqueue(hook, "0123456789abcdef:1", "alert", alert(), T0) is None
        # The caller's transaction survives the duplicate and can go on writing.
        assert enqueue(other, "0123456789abcdef:1", "alert", alert(), T0) is not None
    assert Notification.objects.filter(channel=hook).count() == 1
    assert Notification.objects.count() == 2


def test_it_holds_a_new_group_for_group_wait_and_a_known_one_until_its_group_interval():
    hook = channel(group_wait_s=30, group_interval_s=300)
    row = enqueue(hook, "a:1", "alert", alert("aaaaaaaaaaaaaaaa"), T0)
    assert row.next_attempt_at == T0 + timedelta(seconds=30)
    assert row.group_key == '{}:{alertname="PoolSaturated"}'
    AlertGroup.objects.create(channel=hook, group_key=row.group_key, last_sent_at=T0 + timedelta(seconds=30),
                              firing={"aaaaaaaaaaaaaaaa": {"key": "a:1", "alert": alert("aaaaaaaaaaaaaaaa")}})
    later = enqueue(hook, "b:1", "alert", alert("bbbbbbbbbbbbbbbb"), T0 + timedelta(seconds=60))
    assert later.next_attempt_at == T0 + timedelta(seconds=330)


def test_it_sends_reports_at_once_and_refuses_an_unknown_kind():
    mail = channel("email", name="mail", group_wait_s=600)
    row = enqueue(mail, "report:2026-W48", "report", {"subject": "s", "text": "t", "html": "<p>t</p>"}, T0)
    assert row.next_attempt_at == T0 and row.group_key == ""
    with pytest.raises(ValueError, match="unknown notification kind 'page'"):
        enqueue(mail, "x", "page", {}, T0)
