"""Alertmanager grouping, pure: group keys, which alerts of a claimed group go into a request, backoff.

A channel's pending alert rows form groups by the channel's group_by labels. When a group is
due (group_wait after its first alert, then group_interval after each notification), every
pending row of the group is claimed at once and becomes ONE request (a batch), after:
- newest row per alert (fingerprint) wins: an older row of the same alert is superseded;
- a resolved alert the receiver never heard firing is not announced (Alertmanager: "If an alert
  is resolved before group_wait has elapsed, no notification will be sent for that alert");
- resolved alerts are left out when the channel has send_resolved off.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass


def group_key(group_labels: dict) -> str:
    """`{}:{alertname="x",service="y"}`: the shape of Alertmanager's groupKey (route path, then labels)."""
    inner = ",".join(f"{name}={json.dumps(str(value))}" for name, value in sorted(group_labels.items()))
    return "{}:{" + inner + "}"


def batch_key(member_keys: list[str]) -> str:
    """The idempotency key of a request: the alert's own key for one alert, else a hash of the members' keys.

    Set once, when the rows are claimed, so every retry and every re-send after an expired
    lease carries the same key.
    """
    if len(member_keys) == 1:
        return member_keys[0]
    digest = hashlib.sha256("\n".join(sorted(member_keys)).encode()).hexdigest()[:32]
    return f"batch:{digest}"


@dataclass(frozen=True)
class Row:
    id: int
    fingerprint: str
    status: str  # firing | resolved


@dataclass(frozen=True)
class Decision:
    send: list[int]
    drop: dict[int, str]  # row id -> why it is not sent


def reduce_group(rows: list[Row], heard_firing: set[str], send_resolved: bool) -> Decision:
    """Which of a group's claimed rows go into its request. `heard_firing`: fingerprints the receiver was told fire."""
    newest: dict[str, Row] = {}
    drop: dict[int, str] = {}
    for row in sorted(rows, key=lambda r: r.id):
        if row.fingerprint in newest:
            drop[newest[row.fingerprint].id] = "superseded by a newer transition of the same alert"
        newest[row.fingerprint] = row
    send = []
    for row in newest.values():
        if row.status == "resolved" and row.fingerprint not in heard_firing:
            drop[row.id] = "resolved before its firing was notified"
        elif row.status == "resolved" and not send_resolved:
            drop[row.id] = "resolved, and the channel does not send resolved alerts"
        else:
            send.append(row.id)
    return Decision(send=sorted(send), drop=drop)


def backoff_s(attempt: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Exponential backoff after the `attempt`-th failed try: 1, 2, 4, ... seconds, capped."""
    return min(cap, base * 2 ** max(0, attempt - 1))
