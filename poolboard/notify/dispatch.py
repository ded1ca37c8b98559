"""Delivering the outbox: claim, send, record. At least once, each request under its idempotency key.

A dispatcher (any number may run at once) loops:
1. claim(), one transaction: the oldest due row is taken with SELECT ... FOR UPDATE SKIP LOCKED,
   so two dispatchers never take the same row. If it is an alert, its whole group is taken
   (a transaction-scoped advisory lock on (channel, group key) keeps a group to one dispatcher),
   silenced alerts are set aside (state "suppressed" until the silence ends), superseded or
   never-announced ones dropped (poolboard.lib.alertgroups.reduce_group), and the rest become
   one batch: the rows get a batch key, a claim token and a lease (lease_until).
2. send(), no transaction open: one request (one per alert for PagerDuty), bounded by
   NOTIFY_TIMEOUT, carrying the batch key in the Idempotency-Key header and in the payload.
3. record(), one transaction: only rows still holding this claim's token are updated. Delivered:
   "sent", and the group's state (last send, which alerts fire) for grouping and repeats.
   Retryable (5xx, 429, timeout, connection error): due again after an exponential backoff, the
   same batch and key, until the row's deadline. Anything else (4xx, refused address, bad
   secret) or past the deadline: "failed". The channel keeps its last error and last success.

A dispatcher killed between 1 and 3 leaves rows leased; when the lease ends another claims
the same batch (batch_key is kept) and sends it again under the same key: the receiver sees
the key once or twice, never zero times, and can drop the second.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import DurationField, ExpressionWrapper, F, Q

from poolboard.lib import alertgroups
from poolboard.notify import channels
from poolboard.notify.models import AlertGroup, Channel, Notification
from poolboard.notify.silences import active_silences, silenced_by
from poolboard.sources.http import Outcome

log = logging.getLogger(__name__)


def lease_s(requests: int = 1) -> float:
    """Long enough for a batch's `requests` (PagerDuty sends one per alert), each up to the timeout and its redirects."""
    timeout = float(getattr(settings, "NOTIFY_TIMEOUT", 10))
    redirects = int(getattr(settings, "NOTIFY_MAX_REDIRECTS", 3))
    return float(getattr(settings, "NOTIFY_LEASE", max(60.0, 2 * timeout * (redirects + 1) * requests)))


def db_now() -> datetime:
    """The database's clock, the one every poolboard process shares (not this worker's)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


@dataclass
class Claim:
    token: uuid.UUID
    channel: Channel
    kind: str
    batch_key: str
    rows: list[Notification] = field(default_factory=list)
    group_key: str = ""

    def requests(self) -> int:
        return len(self.rows) if self.channel.kind == Channel.PAGERDUTY else 1


def _lock_group(channel_id: int, group_key: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", [channel_id, group_key])
        return cursor.fetchone()[0]


def _slack_busy(channel_id: int, now: datetime) -> bool:
    """Slack takes about one message a second per webhook: one request at a time, a second apart.

    The channel-wide advisory lock (negative key: apart from the group locks) makes the check
    and the claim one step for all dispatchers.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, 0)", [-channel_id])
        if not cursor.fetchone()[0]:
            return True
    recent = Q(sent_at__gt=now - timedelta(seconds=1)) | Q(state=Notification.PENDING, lease_until__gt=now)
    return Notification.objects.filter(channel_id=channel_id).filter(recent).exists()


def claim(now: datetime, skip: int = 20) -> Claim | None:
    """Take the next due batch (see the module docstring); None when nothing is due."""
    passed_groups: set[tuple[int, str]] = set()
    passed_channels: set[int] = set()
    with transaction.atomic():
        for _ in range(skip):
            candidates = Notification.objects.due(now)
            for channel_id, group_key in passed_groups:  # groups locked by another dispatcher, or BUSY
                candidates = candidates.exclude(channel_id=channel_id, group_key=group_key, batch_key="")
            if passed_channels:
                candidates = candidates.exclude(channel_id__in=passed_channels)
            leader = (
                candidates.order_by("next_attempt_at", "id")
                .select_for_update(skip_locked=True, of=("self",)).select_related("channel").first()
            )
            if leader is None:
                return None
            token = uuid.uuid4()
            if leader.channel.kind == Channel.SLACK and _slack_busy(leader.channel_id, now):
                passed_channels.add(leader.channel_id)
                continue
            if leader.batch_key:
                rows = list(
                    Notification.objects.due(now).filter(channel_id=leader.channel_id, batch_key=leader.batch_key)
                    .select_for_update(skip_locked=True, of=("self",)).order_by("id")
                )
                found = Claim(token, leader.channel, leader.kind, leader.batch_key, rows, leader.group_key)
            elif leader.kind != Notification.ALERT:
                found = Claim(token, leader.channel, leader.kind, leader.idempotency_key, [leader])
            else:
                if not _lock_group(leader.channel_id, leader.group_key):
                    passed_groups.add((leader.channel_id, leader.group_key))
                    continue
                found = _claim_group(leader, token, now)
                if found is BUSY:
                    passed_groups.add((leader.channel_id, leader.group_key))
                    continue
                if found is None:
                    continue  # everything due in the group was silenced or dropped: look again
            Notification.objects.filter(id__in=[row.id for row in found.rows]).update(
                batch_key=found.batch_key, claim_token=token, lease_until=now + timedelta(seconds=lease_s(found.requests())),
                attempts=F("attempts") + 1,
            )
            return found
    return None


# A group with a batch still out (being sent, or waiting to be retried) sends nothing newer
# until that batch is done: a resolution must not overtake the firing it resolves.
BUSY = object()


def _claim_group(leader: Notification, token: uuid.UUID, now: datetime):
    """The group's due rows, less the silenced and the dropped, as one batch; None if none is left to send, or BUSY."""
    channel = leader.channel
    waiting = list(
        Notification.objects.waiting()
        .filter(channel=channel, group_key=leader.group_key)
        .select_for_update(skip_locked=True, of=("self",)).order_by("id")
    )
    if any(row.batch_key for row in waiting):
        return BUSY
    # Pending rows all go (Alertmanager flushes the whole group); suppressed ones when their silence ends.
    due = [r for r in waiting if r.state == Notification.PENDING or r.next_attempt_at <= now]
    due_ids = {r.id for r in due}
    held = [r for r in waiting if r.id not in due_ids]
    group = AlertGroup.objects.filter(channel=channel, group_key=leader.group_key).first() or AlertGroup(
        channel=channel, group_key=leader.group_key, group_labels=channel.group_labels(leader.payload.get("labels") or {})
    )
    heard_before = dict(group.firing)
    silences = active_silences(now)
    unsilenced = []
    for row in due:
        silence = silenced_by(row.payload.get("labels") or {}, now, silences)
        if silence is None:
            unsilenced.append(row)
            continue
        Notification.objects.filter(id=row.id).update(
            state=Notification.SUPPRESSED, suppressed_by=silence, next_attempt_at=silence.ends_at,
            last_error=f"silenced until {silence.ends_at:%Y-%m-%d %H:%M:%S} UTC by {silence.created_by}",
        )
    decision = alertgroups.reduce_group(
        [alertgroups.Row(r.id, r.fingerprint, r.payload.get("status", "firing")) for r in unsilenced],
        heard_firing=set(group.firing), send_resolved=channel.send_resolved,
    )
    by_id = {row.id: row for row in unsilenced}
    newest: dict[str, int] = {}
    for row in unsilenced:
        newest[row.fingerprint] = max(row.id, newest.get(row.fingerprint, 0))
    # An older transition of the same alert still held back by a silence is superseded too.
    drop = dict(decision.drop) | {
        r.id: "superseded by a newer transition of the same alert" for r in held if r.id < newest.get(r.fingerprint, 0)
    }
    for reason in set(drop.values()):
        Notification.objects.filter(id__in=[i for i, why in drop.items() if why == reason]).update(
            state=Notification.DROPPED, last_error=reason, lease_until=None
        )
    for row_id in decision.drop:
        row = by_id[row_id]
        if row.payload.get("status") == "resolved":
            group.firing.pop(row.fingerprint, None)  # send_resolved off: the receiver is not told, but it no longer fires
    if group.pk is None:
        group.save()
    elif group.firing != heard_before:
        group.save(update_fields=["firing"])
    if not decision.send:
        return None
    members = [by_id[i] for i in decision.send]
    key = alertgroups.batch_key([row.idempotency_key for row in members])
    return Claim(token, channel, Notification.ALERT, key, members, leader.group_key)


def send(found: Claim) -> Outcome:
    try:
        return channels.send(found)
    except Exception as exc:  # a bug or bad data in one batch must not stop the dispatcher
        log.exception("sending notification batch %s failed", found.batch_key)
        return Outcome(delivered=False, retryable=False, error=f"could not build or send the notification: {type(exc).__name__}: {exc}")


def record(found: Claim, outcome: Outcome, now: datetime) -> str:
    """Write the outcome on the rows still held by this claim; the state they end in."""
    ids = [row.id for row in found.rows]
    channel = found.channel
    with transaction.atomic():
        mine = Notification.objects.filter(id__in=ids, claim_token=found.token)
        if outcome.delivered:
            if not mine.update(state=Notification.SENT, sent_at=now, lease_until=None, last_error=""):
                return "lost"  # the lease ran out and another dispatcher took the batch over
            # Not every success: four dispatchers would queue on the channel's row lock.
            Channel.objects.filter(id=channel.id).exclude(last_ok_at__gte=now - timedelta(seconds=1)).update(last_ok_at=now)
            if found.kind == Notification.ALERT:
                _remember_group(found, now)
            return Notification.SENT
        held = list(mine.select_for_update().values_list("id", "attempts", "deadline_at"))
        if not held:
            return "lost"
        error = outcome.error or "not delivered"
        Channel.objects.filter(id=channel.id).update(last_error=error, last_error_at=now)
        attempts = max(a for _, a, _ in held)
        deadline = min(d for _, _, d in held)
        retry_at = now + timedelta(seconds=alertgroups.backoff_s(attempts, cap=float(getattr(settings, "NOTIFY_BACKOFF_CAP", 300))))
        if outcome.retryable and found.kind != Notification.TEST and retry_at <= deadline:
            mine.update(next_attempt_at=retry_at, lease_until=None, last_error=f"attempt {attempts}: {error}")
            return Notification.PENDING
        if outcome.retryable and found.kind != Notification.TEST:
            error = f"gave up at the retry deadline after {attempts} attempts: {error}"
        mine.update(state=Notification.FAILED, lease_until=None, last_error=error)
        return Notification.FAILED


def _remember_group(found: Claim, now: datetime) -> None:
    """What the receiver now knows of the group; its other pending rows wait for the group interval."""
    channel = found.channel
    resolved = [row.fingerprint for row in found.rows if row.payload.get("status") == "resolved"]
    firing = {row.fingerprint: {"key": row.idempotency_key, "alert": row.payload}
              for row in found.rows if row.payload.get("status") != "resolved"}
    with connection.cursor() as cursor:  # one statement: jsonb minus the resolved, plus the firing
        cursor.execute(
            f"UPDATE {AlertGroup._meta.db_table} SET last_sent_at = %s, firing = (firing - %s::text[]) || %s::jsonb "
            "WHERE channel_id = %s AND group_key = %s",
            [now, resolved, json.dumps(firing, allow_nan=False), channel.id, found.group_key],
        )
    next_flush = now + timedelta(seconds=channel.group_interval_s)
    Notification.objects.filter(
        channel=channel, group_key=found.group_key, state=Notification.PENDING, batch_key="", next_attempt_at__lt=next_flush
    ).update(next_attempt_at=next_flush)


def enqueue_repeats(now: datetime) -> int:
    """Groups still firing and not notified for repeat_interval are notified again, every alert still firing."""
    from poolboard.notify.outbox import enqueue

    added = 0
    repeat_at = F("last_sent_at") + ExpressionWrapper(F("channel__repeat_interval_s") * timedelta(seconds=1), output_field=DurationField())
    groups = (
        AlertGroup.objects.select_related("channel").filter(channel__enabled=True, last_sent_at__isnull=False)
        .exclude(firing={}).alias(repeat_at=repeat_at).filter(repeat_at__lte=now)
    )
    for group in groups:
        channel = group.channel
        if Notification.objects.waiting().filter(channel=channel, group_key=group.group_key).exists():
            continue  # a notification of this group is on its way anyway
        stamp = int(group.last_sent_at.timestamp())
        with transaction.atomic():
            for _fingerprint, known in sorted(group.firing.items()):
                row = enqueue(channel, f"{known['key']}:repeat:{stamp}", Notification.ALERT, known["alert"], now)
                if row is not None:
                    # Due at once: the repeat interval has passed, no group_wait.
                    Notification.objects.filter(id=row.id).update(next_attempt_at=now)
                    added += 1
    return added


def dispatch_due(now: datetime | None = None, limit: int = 200) -> int:
    """Send due batches until none is left (or `limit`); the number of batches handled.

    `now` fixed by a test, else the database's clock read before each batch.
    """
    enqueue_repeats(now or db_now())
    handled = 0
    while handled < limit:
        at = now or db_now()
        started = time.monotonic()
        found = claim(at)
        if found is None:
            break
        outcome = send(found)
        # The database's clock plus what this took: a duration from this worker, never its wall clock.
        record(found, outcome, now or at + timedelta(seconds=time.monotonic() - started))
        handled += 1
    return handled


def send_test(channel: Channel, requested_by: str, now: datetime) -> tuple[str, str]:
    """The admin's "send test notification": enqueued, then sent at once, never retried. (state, error)."""
    from poolboard.notify.outbox import enqueue

    token = uuid.uuid4()
    with transaction.atomic():
        # Leased before it is visible to any dispatcher: only this request sends it.
        row = enqueue(channel, f"test:{uuid.uuid4()}", Notification.TEST, {"requested_by": requested_by}, now)
        Notification.objects.filter(id=row.id).update(
            batch_key=row.idempotency_key, claim_token=token, lease_until=now + timedelta(seconds=lease_s()), attempts=1
        )
    found = Claim(token, channel, Notification.TEST, row.idempotency_key, [row])
    state = record(found, send(found), now)
    row.refresh_from_db()
    return state, row.last_error


def prune(now: datetime) -> int:
    """Forget what no longer matters: finished outbox rows after NOTIFY_KEEP_DAYS, silences 120 h after they end."""
    from poolboard.notify.models import Silence

    keep = timedelta(days=int(getattr(settings, "NOTIFY_KEEP_DAYS", 30)))
    done = [Notification.SENT, Notification.FAILED, Notification.DROPPED]
    rows, _ = Notification.objects.filter(state__in=done, created__lt=now - keep).delete()
    silences, _ = Silence.objects.filter(ends_at__lt=now - timedelta(hours=120)).delete()
    groups, _ = AlertGroup.objects.filter(firing={}, last_sent_at__lt=now - keep).delete()
    return rows + silences + groups
