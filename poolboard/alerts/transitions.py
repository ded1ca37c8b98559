"""One alert state change: a compare-and-set UPDATE, its history row and its outbox rows, in one transaction.

    UPDATE alerts_alertinstance SET state = <new>, version = version + 1, ...
     WHERE id = <id> AND state = <expected> AND version = <n> RETURNING version

Under READ COMMITTED a second evaluator blocked on the same row re-checks the WHERE against
the committed row, finds version n+1, and updates nothing: it then writes no transition and no
notification. The transition row is unique per (instance, version) and the outbox row per
(channel, "<fingerprint>:<version>") — the backstop should the compare-and-set ever be wrong
(reliability.md R2.1).

`strategy="read_then_write"` is the naive version (read the state, then update the row by id,
bumping the version): it exists only so the race test can show that it sends duplicates
(tests/alerts/test_race.py), i.e. that the test can tell.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from poolboard.lib import alerting

from .models import AlertInstance, AlertTransition

CAS, READ_THEN_WRITE = "cas", "read_then_write"

_SET = (
    "state = %s, version = version + 1, active_since = %s, fired_at = %s, resolved_at = %s, "
    "keep_firing_since = %s, value = %s, last_evaluated_at = %s, summary = %s"
)


@dataclass
class Change:
    """What the evaluation decided for one instance."""

    instance_id: int
    fingerprint: str
    labels: dict
    expected_state: str
    expected_version: int
    new: alerting.InstanceState
    at: datetime
    summary: str = ""
    description: str = ""
    reason: str = ""
    generator_url: str = ""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def alert_payload(change: Change) -> dict:
    """One Alertmanager alert (poolboard.notify.outbox's payload for kind="alert")."""
    before, after = change.expected_state, change.new.state
    firing = after == alerting.FIRING
    return {
        "status": "firing" if firing else "resolved",
        "fingerprint": change.fingerprint,
        "labels": dict(change.labels),
        "annotations": {k: v for k, v in (("summary", change.summary), ("description", change.description)) if v},
        # Prometheus sends StartsAt = FiredAt; a resolved alert ends at its ResolvedAt.
        "startsAt": _iso(change.new.fired_at if firing else change.new.fired_at or change.new.active_since or change.at),
        "endsAt": None if firing else _iso(change.at),
        "generatorURL": change.generator_url,
        "value": _finite(change.new.value),
        "transition": f"{before}->{after}",
    }


def apply(change: Change, rule, channels, *, strategy: str = CAS) -> int | None:
    """Make the change if the instance is still as read; the new version, or None if another evaluator got there first."""
    from poolboard.notify.outbox import enqueue

    new = change.new
    params = [new.state, new.active_since, new.fired_at, new.resolved_at, new.keep_firing_since,
              _finite(new.value), change.at, change.summary[:500]]
    table = AlertInstance._meta.db_table
    with transaction.atomic():
        with connection.cursor() as cursor:
            if strategy == CAS:
                cursor.execute(
                    f"UPDATE {table} SET {_SET} WHERE id = %s AND state = %s AND version = %s RETURNING version",
                    [*params, change.instance_id, change.expected_state, change.expected_version],
                )
            elif strategy == READ_THEN_WRITE:
                cursor.execute(f"SELECT state FROM {table} WHERE id = %s", [change.instance_id])
                row = cursor.fetchone()
                if row is None or row[0] != change.expected_state:
                    return None
                cursor.execute(f"UPDATE {table} SET {_SET} WHERE id = %s RETURNING version", [*params, change.instance_id])
            else:
                raise ValueError(f"unknown strategy {strategy!r}")
            row = cursor.fetchone()
        if row is None:
            return None
        seq = row[0]
        AlertTransition.objects.create(
            instance_id=change.instance_id, rule_id=rule.pk, seq=seq, at=change.at,
            from_state=change.expected_state, to_state=new.state, value=_finite(new.value), reason=change.reason,
        )
        if alerting.Step(new, (change.expected_state, new.state)).notifies:
            payload = alert_payload(change)
            for channel in channels:
                enqueue(channel, f"{change.fingerprint}:{seq}", "alert", payload, change.at)
    return seq


def _finite(value: float | None) -> float | None:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return value
