"""One snapshot of one monitored database: take (sources), track (lib), store.

Like fleet.collection, a run is idempotent: the Snapshot row is unique per
(database, slot), inserted first in the same transaction as everything else,
so a redelivered task stores nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from poolboard.fleet.models import Service
from poolboard.lib import episodes as ep
from poolboard.lib.attribution import Attributor, is_own
from poolboard.sources import pgactivity

from .models import (
    Episode,
    MonitoredDatabase,
    QueryFingerprint,
    SecretError,
    SessionCount,
    Snapshot,
    attributor_for,
    query_text_mode,
    snapshot_interval,
)

log = logging.getLogger(__name__)


@dataclass
class SnapshotResult:
    database: str
    status: str  # ok | failed | skipped
    total: int = 0
    opened: int = 0
    updated: int = 0
    closed: int = 0
    elapsed_ms: float = 0.0
    error: str = ""


def snapshot_database(db: MonitoredDatabase) -> SnapshotResult:
    """1. Read the password reference. 2. Take the snapshot (bounded, see sources).
    3. Store it, or record the sanitised error on the database row."""

    try:
        snap = pgactivity.snapshot(db.target(), db.password(), db.limits(), query_mode=query_text_mode())
    except (pgactivity.MonitorError, SecretError) as exc:
        kind = getattr(exc, "kind", "config")
        message = str(getattr(exc, "message", exc))
        MonitoredDatabase.objects.filter(pk=db.pk).update(
            last_error_at=timezone.now(), last_error=message, last_error_kind=kind
        )
        log.warning("snapshot of %s failed: %s: %s", db.name, kind, message)
        return SnapshotResult(db.name, "failed", error=f"{kind}: {message}")
    return store_snapshot(db, snap)


def store_snapshot(db: MonitoredDatabase, snap: pgactivity.Snapshot, attribute: Attributor | None = None) -> SnapshotResult:
    """Store counts, track episodes and keep the live session list, in one transaction.

    1. Insert the Snapshot row for (database, slot); if it exists, another
       worker stored this slot: do nothing.
    2. Bulk-insert the aggregated counts, each attributed to a service.
    3. Compare the session rows with the database's open episodes (lib.episodes)
       and open, update and close episodes; poolboard's own sessions are left out.
    4. Keep the newest session rows (already normalised) on the database row.
    """

    attribute = attribute or attributor_for(db)
    services = dict(Service.objects.values_list("name", "id"))
    slot = int(snap.taken_at.timestamp() // snapshot_interval())
    try:
        with transaction.atomic():
            row = Snapshot.objects.create(
                database=db,
                slot=slot,
                taken_at=snap.taken_at,
                total=snap.total,
                max_connections=snap.settings.max_connections,
                superuser_reserved_connections=snap.settings.superuser_reserved_connections,
                reserved_connections=snap.settings.reserved_connections,
                elapsed_ms=snap.elapsed_ms,
                sessions_listed=len(snap.sessions),
            )
            SessionCount.objects.bulk_create(
                [
                    SessionCount(
                        snapshot=row,
                        application_name=c.application_name[:200],
                        usename=c.usename[:200],
                        client_addr=c.client_addr[:100],
                        state=c.state[:50],
                        wait_event_type=c.wait_event_type[:50],
                        count=c.count,
                        service_id=services.get(attribute(c.application_name, c.usename, c.client_addr or None)),
                    )
                    for c in snap.counts
                ]
            )
            sessions = [s for s in snap.sessions if not is_own(s.application_name)]
            changes = _track(db, sessions, snap, attribute, services)
            db.last_snapshot_at = snap.taken_at
            db.server_version = _version(snap.settings.server_version_num)
            db.last_sessions = [_session_json(s, snap.taken_at, attribute) for s in sessions]
            db.last_sessions_truncated = snap.sessions_truncated_after is not None
            db.last_error_kind = ""
            MonitoredDatabase.objects.filter(pk=db.pk).update(
                last_snapshot_at=db.last_snapshot_at,
                server_version=db.server_version,
                last_sessions=db.last_sessions,
                last_sessions_truncated=db.last_sessions_truncated,
                last_error_kind="",
            )
    except IntegrityError:
        return SnapshotResult(db.name, "skipped", total=snap.total)
    return SnapshotResult(
        db.name, "ok", total=snap.total, opened=len(changes.opened), updated=len(changes.updated),
        closed=len(changes.closed), elapsed_ms=snap.elapsed_ms,
    )


def _track(db, sessions, snap, attribute, services) -> ep.Changes:
    # Plain tuples, not model instances: a busy server has hundreds of open episodes.
    open_rows = {
        ep.EpisodeKey(kind, pid, backend_start, started): (pk, peak)
        for pk, kind, pid, backend_start, started, peak in Episode.objects.open()
        .filter(database=db)
        .values_list("pk", "kind", "pid", "backend_start", "started", "peak_age_s")
    }
    changes = ep.track(
        [ep.OpenEpisode(k, peak) for k, (_, peak) in open_rows.items()],
        sessions,
        db.thresholds(),
        snap.taken_at,
        snap.sessions_truncated_after,
    )
    now = snap.taken_at
    fingerprints = _fingerprints([o.session for o in changes.opened + changes.updated], now)

    new = []
    for o in changes.opened:
        s = o.session
        new.append(
            Episode(
                database=db, kind=o.key.kind, pid=o.key.pid, backend_start=o.key.backend_start,
                started=o.key.started, first_seen=now, last_seen=now, peak_age_s=o.peak_age_s,
                application_name=s.application_name[:200], usename=s.usename[:200],
                client_addr=s.client_addr[:100], datname=s.datname[:200], state=s.state[:50],
                wait_event=s.wait_event[:100],
                service_id=services.get(attribute(s.application_name, s.usename, s.client_addr or None)),
                query_id=fingerprints.get(s.fingerprint),
            )
        )
    Episode.objects.bulk_create(new)

    _update_seen(now, changes.updated, open_rows, fingerprints)

    ended = [open_rows[c.key][0] for c in changes.closed]
    if ended:
        Episode.objects.filter(pk__in=ended).update(ended=now)
    return changes


def _update_seen(now, updated, open_rows, fingerprints) -> None:
    """Move last_seen/peak of every ongoing episode in one UPDATE ... FROM unnest().

    (bulk_update builds a CASE per row and field: 20x slower for a few hundred rows.)
    An idle-in-transaction episode keeps its first query: an idle session's query is
    the one it ran before going idle, which is the interesting one.
    """

    if not updated:
        return
    ids, peaks, states, waits, qids = [], [], [], [], []
    for o in updated:
        ids.append(open_rows[o.key][0])
        peaks.append(o.peak_age_s)
        states.append(o.session.state[:50])
        waits.append(o.session.wait_event[:100])
        qids.append(None if o.key.kind == ep.IDLE_IN_TRANSACTION else fingerprints.get(o.session.fingerprint))
    table = connection.ops.quote_name(Episode._meta.db_table)
    with connection.cursor() as cur:
        cur.execute(
            f"""UPDATE {table} AS e
                SET last_seen = %s, peak_age_s = v.peak, state = v.state, wait_event = v.wait,
                    query_id = COALESCE(e.query_id, v.qid)
                FROM unnest(%s::bigint[], %s::float8[], %s::text[], %s::text[], %s::bigint[])
                     AS v(id, peak, state, wait, qid)
                WHERE e.id = v.id""",
            [now, ids, peaks, states, waits, qids],
        )


def _fingerprints(sessions, now) -> dict[str, int]:
    """Upsert the fingerprints of these sessions; return fingerprint -> id."""

    texts = {s.fingerprint: s.query for s in sessions if s.fingerprint}
    if not texts:
        return {}
    QueryFingerprint.objects.bulk_create(
        [QueryFingerprint(fingerprint=f, text=t, first_seen=now, last_seen=now) for f, t in texts.items()],
        ignore_conflicts=True,
    )
    QueryFingerprint.objects.filter(fingerprint__in=texts, last_seen__lt=now).update(last_seen=now)
    return dict(QueryFingerprint.objects.filter(fingerprint__in=texts).values_list("fingerprint", "id"))


def _session_json(s: ep.Session, now, attribute) -> dict:
    def iso(d):
        return d.isoformat() if d else None

    return {
        "pid": s.pid,
        "backend_start": iso(s.backend_start),
        "xact_start": iso(s.xact_start),
        "query_start": iso(s.query_start),
        "state_change": iso(s.state_change),
        "age_s": s.age_s(now),
        "state": s.state,
        "wait_event_type": s.wait_event_type,
        "wait_event": s.wait_event,
        "application_name": s.application_name,
        "usename": s.usename,
        "client_addr": s.client_addr,
        "datname": s.datname,
        "query": s.query,
        "fingerprint": s.fingerprint,
        "service": attribute(s.application_name, s.usename, s.client_addr or None),
    }


def _version(num: int) -> str:
    if not num:
        return ""
    major = num // 10000
    return f"{major}.{num % 10000}" if major >= 10 else f"{major}.{num // 100 % 100}.{num % 100}"


def snapshot_all() -> list[SnapshotResult]:
    return [snapshot_database(db) for db in MonitoredDatabase.objects.enabled()]
