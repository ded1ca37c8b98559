"""Silences: matchers honoured by the dispatcher; a silenced alert still firing is sent when the silence ends."""

from __future__ import annotations

from datetime import timedelta

import pytest

from poolboard.notify.dispatch import dispatch_due
from poolboard.notify.models import Notification, Silence
from poolboard.notify.outbox import enqueue
from poolboard.notify.silences import active_silences, silenced_by
from tests.notify.factories import T0, alert, channel

pytestmark = pytest.mark.django_db

BILLING, SEARCH = "b111111111111111", "5222222222222222"


def at(n: float):
    return T0 + timedelta(seconds=n)


def silence(*matchers, start=0, end=3600) -> Silence:
    from poolboard.lib.matchers import parse

    return Silence.objects.create(matchers=[parse(m) for m in matchers], starts_at=at(start), ends_at=at(end),
                                  created_by="bob", comment="deploying billing")


def test_silenced_by_matches_every_matcher_inside_its_window():
    s = silence('service="billing"', 'severity=~"crit.*"', 'alertname!="Test"')
    assert silenced_by({"service": "billing", "severity": "critical", "alertname": "X"}, at(10)) == s
    assert silenced_by({"service": "billing", "severity": "warning", "alertname": "X"}, at(10)) is None
    assert silenced_by({"service": "billing", "severity": "critical", "alertname": "Test"}, at(10)) is None
    assert silenced_by({"service": "billing", "severity": "critical"}, at(3600)) is None  # ended
    assert silenced_by({"service": "billing", "severity": "critical"}, at(-1)) is None  # not started


def test_the_bulk_form_asks_the_database_once(django_assert_num_queries):
    silence('service="billing"')
    with django_assert_num_queries(1):
        found = active_silences(at(10))
        hits = [silenced_by({"service": s}, at(10), found) for s in ("billing", "search", "billing")]
    assert [h is not None for h in hits] == [True, False, True]


def test_a_silenced_alert_is_held_back_then_sent_when_the_silence_ends(receiver):
    hook = receiver()
    ch = channel(url=hook.url, group_by=["alertname", "service"])
    silence('service="billing"')
    enqueue(ch, f"{BILLING}:1", "alert", alert(BILLING, service="billing"), T0)
    enqueue(ch, f"{SEARCH}:1", "alert", alert(SEARCH, service="search"), T0)
    dispatch_due(now=at(1))
    assert hook.keys() == [f"{SEARCH}:1"]
    held = Notification.objects.get(idempotency_key=f"{BILLING}:1")
    assert held.state == "suppressed" and held.next_attempt_at == at(3600) and held.suppressed_by is not None
    assert dispatch_due(now=at(3599)) == 0
    dispatch_due(now=at(3600))
    assert hook.keys() == [f"{SEARCH}:1", f"{BILLING}:1"]


def test_an_alert_that_resolves_while_silenced_is_never_sent(receiver):
    hook = receiver()
    ch = channel(url=hook.url)
    silence('service="billing"')
    enqueue(ch, f"{BILLING}:1", "alert", alert(BILLING, service="billing"), T0)
    dispatch_due(now=at(1))
    enqueue(ch, f"{BILLING}:2", "alert", alert(BILLING, status="resolved", service="billing"), at(100))
    dispatch_due(now=at(101))
    dispatch_due(now=at(4000))
    assert hook.requests == []
    assert set(Notification.objects.values_list("state", flat=True)) == {"dropped"}


def test_deleting_a_silence_releases_what_it_held(receiver):
    hook = receiver()
    ch = channel(url=hook.url)
    s = silence('service="billing"', end=10**6)
    enqueue(ch, f"{BILLING}:1", "alert", alert(BILLING, service="billing"), T0)
    dispatch_due(now=at(1))
    s.delete()
    dispatch_due(now=at(2))
    assert hook.keys() == [f"{BILLING}:1"]
