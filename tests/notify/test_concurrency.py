"""Four dispatchers on their own connections share an outbox: every row is delivered, none twice."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection

from poolboard.notify.dispatch import dispatch_due
from poolboard.notify.models import Notification
from poolboard.notify.outbox import enqueue
from tests.notify.factories import T0, alert, channel

pytestmark = pytest.mark.django_db(transaction=True)


def test_four_dispatchers_deliver_200_rows_exactly_once_each(receiver):
    hook = receiver()
    ch = channel(url=hook.url, group_by=["alertname", "service"])
    keys = [f"{n:016x}:1" for n in range(200)]
    for n, key in enumerate(keys):
        enqueue(ch, key, "alert", alert(f"{n:016x}", service=f"svc{n}"), T0)
    barrier = threading.Barrier(4)
    handled: list[int] = []

    def dispatcher():
        try:
            barrier.wait()
            handled.append(dispatch_due(now=T0 + timedelta(seconds=1), limit=1000))
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(handled) == 200
    assert Counter(hook.keys()) == Counter(keys)  # each key once: no row claimed by two dispatchers
    assert Notification.objects.filter(state="sent", attempts=1).count() == 200
