"""Alertmanager grouping per channel: group_wait, group_interval, repeat_interval, send_resolved."""

from __future__ import annotations

from datetime import timedelta

import pytest

from poolboard.notify.dispatch import dispatch_due
from poolboard.notify.models import AlertGroup, Notification
from poolboard.notify.outbox import enqueue
from tests.notify.factories import T0, alert, channel

pytestmark = pytest.mark.django_db

A, B, C = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"


def at(n: float):
    return T0 + timedelta(seconds=n)


def test_it_waits_group_wait_then_sends_the_group_as_one_request_then_waits_group_interval(receiver):
    hook = receiver()
    ch = channel(url=hook.url, group_wait_s=30, group_interval_s=300)
    for fp in (A, B):
        enqueue(ch, f"{fp}:1", "alert", alert(fp, service=fp[:3]), T0)
    enqueue(ch, f"{C}:1", "alert", alert(C, service="ccc"), at(20))
    assert dispatch_due(now=at(29)) == 0
    assert dispatch_due(now=at(30)) == 1
    (body,) = [r["json"] for r in hook.requests]
    assert [a["fingerprint"] for a in body["alerts"]] == [A, B, C]
    assert [a["idempotencyKey"] for a in body["alerts"]] == [f"{A}:1", f"{B}:1", f"{C}:1"]
    assert body["idempotencyKey"].startswith("batch:") and hook.keys() == [body["idempotencyKey"]]
    assert body["groupLabels"] == {"alertname": "PoolSaturated"}
    assert body["commonLabels"] == {"alertname": "PoolSaturated", "severity": "critical"}

    enqueue(ch, f"{A}:2", "alert", alert(A, status="resolved", service="aaa"), at(40))
    assert dispatch_due(now=at(329)) == 0  # group_interval counts from the last send
    assert dispatch_due(now=at(330)) == 1
    assert hook.requests[1]["json"]["status"] == "resolved" and hook.keys()[1] == f"{A}:2"
    assert set(AlertGroup.objects.get().firing) == {B, C}


def test_groups_follow_the_channels_group_by(receiver):
    hook = receiver()
    ch = channel(url=hook.url, group_by=["alertname", "service"])
    enqueue(ch, f"{A}:1", "alert", alert(A, service="billing"), T0)
    enqueue(ch, f"{B}:1", "alert", alert(B, service="search"), T0)
    assert dispatch_due(now=T0) == 2
    assert sorted(r["json"]["groupKey"] for r in hook.requests) == [
        '{}:{alertname="PoolSaturated",service="billing"}', '{}:{alertname="PoolSaturated",service="search"}'
    ]


def test_an_alert_resolved_within_group_wait_is_never_sent(receiver):
    hook = receiver()
    ch = channel(url=hook.url, group_wait_s=30)
    enqueue(ch, f"{A}:1", "alert", alert(A), T0)
    enqueue(ch, f"{A}:2", "alert", alert(A, status="resolved"), at(10))
    dispatch_due(now=at(60))
    assert hook.requests == []
    states = dict(Notification.objects.values_list("idempotency_key", "last_error"))
    assert states == {f"{A}:1": "superseded by a newer transition of the same alert",
                      f"{A}:2": "resolved before its firing was notified"}


def test_without_send_resolved_a_resolved_alert_is_dropped_and_forgotten(receiver):
    hook = receiver()
    ch = channel(url=hook.url, send_resolved=False, repeat_interval_s=600)
    enqueue(ch, f"{A}:1", "alert", alert(A), T0)
    dispatch_due(now=T0)
    enqueue(ch, f"{A}:2", "alert", alert(A, status="resolved"), at(5))
    dispatch_due(now=at(5))
    dispatch_due(now=at(5000))  # no repeat either: nothing fires any more
    assert hook.keys() == [f"{A}:1"]
    assert Notification.objects.get(idempotency_key=f"{A}:2").state == "dropped"
    assert AlertGroup.objects.get().firing == {}


def test_a_group_still_firing_is_sent_again_after_repeat_interval(receiver):
    hook = receiver()
    ch = channel(url=hook.url, repeat_interval_s=3600, group_interval_s=300)
    enqueue(ch, f"{A}:1", "alert", alert(A), T0)
    dispatch_due(now=T0)
    assert dispatch_due(now=at(3599)) == 0
    assert dispatch_due(now=at(3600)) == 1
    stamp = int(T0.timestamp())
    assert hook.keys() == [f"{A}:1", f"{A}:1:repeat:{stamp}"]
    assert dispatch_due(now=at(3601)) == 0  # the next repeat counts from this one
    assert dispatch_due(now=at(7200)) == 1
    assert len(hook.requests) == 3


def test_a_resolution_waits_for_the_firing_batch_still_being_retried(receiver):
    hook = receiver(500, 200)
    ch = channel(url=hook.url)
    enqueue(ch, f"{A}:1", "alert", alert(A), T0)
    dispatch_due(now=at(0))  # 500: retried at 1 s
    enqueue(ch, f"{A}:2", "alert", alert(A, status="resolved"), at(0.5))
    assert dispatch_due(now=at(0.5)) == 0  # the group has a batch out: the resolution waits for it
    assert dispatch_due(now=at(1)) == 2
    assert hook.keys() == [f"{A}:1", f"{A}:1", f"{A}:2"]
    assert AlertGroup.objects.get().firing == {}
