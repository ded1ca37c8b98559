"""Four evaluators race on the same transition (reliability.md R2.1, F10).

Real threads, each on its own PostgreSQL connection, released together by a barrier, 200 trials.
The compare-and-set must give exactly one transition and one outbox row per channel in every
trial. The same race run with the naive read-then-write (transitions.READ_THEN_WRITE) must show
duplicates: that is what proves this test can fail.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection

from poolboard.alerts import transitions
from poolboard.alerts.models import AlertInstance, AlertTransition
from poolboard.lib import alerting
from poolboard.notify.models import Notification

from .factories import T0, channel, only_these_rules, rule

THREADS, TRIALS = 4, 200


def race(strategy: str) -> Counter:
    """{(transitions, outbox rows per channel): trials}."""
    only_these_rules()
    hooks = [channel("hook-a"), channel("hook-b")]
    saturated = rule(for_s=300, channels=hooks)
    instances = AlertInstance.objects.bulk_create(
        AlertInstance(rule=saturated, fingerprint=f"{trial:016x}", labels={"alertname": saturated.name, "service": f"s{trial}"},
                      state=alerting.PENDING, version=1, active_since=T0)
        for trial in range(TRIALS)
    )
    at = T0 + timedelta(minutes=5)
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def evaluator() -> None:
        try:
            for instance in instances:
                prev = instance.lib_state()
                new = alerting.step(prev, True, 100.0, at, for_s=300).state
                change = transitions.Change(
                    instance_id=instance.pk, fingerprint=instance.fingerprint, labels=instance.labels,
                    expected_state=alerting.PENDING, expected_version=1, new=new, at=at,
                )
                barrier.wait(timeout=30)
                transitions.apply(change, saturated, hooks, strategy=strategy)
        except BaseException as exc:  # surfaced by the main thread
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    workers = [threading.Thread(target=evaluator) for _ in range(THREADS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors
    made = Counter(AlertTransition.objects.values_list("instance_id", flat=True))
    per_channel = Counter(Notification.objects.values_list("fingerprint", "channel_id"))
    outcomes = Counter()
    for instance in instances:
        rows = {per_channel[(instance.fingerprint, h.pk)] for h in hooks}
        outcomes[(made[instance.pk], max(rows))] += 1
    return outcomes


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_makes_exactly_one_transition_and_one_notification_per_channel() -> None:
    outcomes = race(transitions.CAS)
    assert outcomes == Counter({(1, 1): TRIALS})
    assert AlertInstance.objects.filter(state=alerting.FIRING, version=2).count() == TRIALS


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_same_race_with_read_then_write_sends_duplicates() -> None:
    outcomes = race(transitions.READ_THEN_WRITE)
    duplicated = sum(n for (made, sent), n in outcomes.items() if made > 1 or sent > 1)
    print(f"read-then-write: {dict(outcomes)}")
    assert duplicated > 0, outcomes
