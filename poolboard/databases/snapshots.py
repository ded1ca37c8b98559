"""One snapshot of one monitored server: take (sources), track (lib), store.

Like fleet.collection, a run is idempotent: the Snapshot row is unique per
(server, slot), inserted first in the same transaction as everything else,
so a redelivered task stores nothing twice.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass

import psycopg
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from poolboard.fleet.models import Service
from poolboard.lib import episodes as ep
from poolboard.lib.attribution import Attributor, Rule, is_own
from poolboard.sources import pgactivity

from .models import (
    AttributionRule,
    Episode,
    MonitoredServer,
    QueryFingerprint,
    QueryHold,
    SecretError,
    ServerDatabase,
    SessionCount,
    Snapshot,
    query_text_mode,
    snapshot_interval,
)

log = logging.getLogger(__name__)


@dataclass
class SnapshotResult:
    server: str
    status: str  # ok | failed | skipped
    total: int = 0
    opened: int = 0
    updated: int = 0
    closed: int = 0
    elapsed_ms: float = 0.0
    error: str = ""


def snapshot_server(db: MonitoredServer) -> SnapshotResult:
    """1. Read the password reference. 2. Take the snapshot (bounded, see sources).
    3. Store it, or record the sanitised error on the server row."""

    try:
        snap = pgactivity.snapshot(db.target(), db.password(), db.limits(), query_mode=query_text_mode())
    except (pgactivity.MonitorError, SecretError) as exc:
        kind = getattr(exc, "kind", "config")
        message = str(getattr(exc, "message", exc))
        MonitoredServer.objects.filter(pk=db.pk).update(
            last_error_at=timezone.now(), last_error=message, last_error_kind=kind
        )
        log.warning("snapshot of %s failed: %s: %s", db.name, kind, message)
        return SnapshotResult(db.name, "failed", error=f"{kind}: {message}")
    return store_snapshot(db, snap)


def store_snapshot(db: MonitoredServer, snap: pgactivity.Snapshot, attribute: Attributor | None = None) -> SnapshotResult:
    """Store counts, track episodes and keep the live session list, in one transaction.

    1. Insert the Snapshot row for (server, slot); if it exists, another
       worker stored this slot: do nothing. Read the services, the attribution
       rules and the server's open episodes.
    2. Compare the session rows with the open episodes (lib.episodes);
       poolboard's own sessions are left out.
    3. Write the rest: the live session rows (already normalised) on the
       server row, the aggregated counts (each attributed to a service), the
       query fingerprints, and the episodes opened, updated and closed.

    Why raw psycopg cursors rather than the ORM (measured with bench/bench_snapshot.py,
    whose snapshot_ratio bar is 2): two round trips to poolboard's database, the
    statements of step 1, then those of step 3 and the COMMIT (each batch sent as one
    pipeline; inside a caller's transaction the COMMIT is the caller's). Reading the services and rules through the ORM instead adds two round
    trips, and on a loaded 2-core machine each costs a scheduling delay: the store
    went from 59-78 ms to 82-106 ms and the ratio over the bar. So the reads are
    defined by QuerySets (one definition of "the rules for this server") and their
    SQL runs in the pipeline. Each statement handles all its rows at once (arrays and
    unnest()); Python work that needs no answer is done while the server runs the
    statements already sent. The cursors are server-side-binding cursors of Django's
    connection, inside Django's transaction, so parameters (arrays included) and the
    open episodes travel in binary: Django's client-side binding quotes every array
    element and parses every timestamp in Python, which cost more than the SQL itself.
    """

    slot = int(snap.taken_at.timestamp() // snapshot_interval())
    now = snap.taken_at
    sessions = [s for s in snap.sessions if not is_own(s.application_name)]
    # Whether this store's transaction is the outermost one (not inside a caller's atomic
    # block, as in a test): then its COMMIT is sent at the end of the pipeline, with the
    # writes, and the atomic block's own commit finds nothing left to do.
    outermost = not connection.in_atomic_block
    try:
        with transaction.atomic(), connection.wrap_database_errors:
            conn = connection.connection
            # One cursor per result of step 1.
            cur, services_cur, rules_cur, open_cur = (psycopg.Cursor(conn) for _ in range(4))
            with cur, services_cur, rules_cur, open_cur, conn.pipeline() as pipeline:
                # A snapshot is a sample retaken every few seconds: if poolboard's own
                # server crashed in the next ~0.6 s, losing this commit costs one sample
                # (episodes resume from the next snapshot), never consistency. Not
                # waiting for the WAL flush saves ~5 ms of a ~17 ms store.
                cur.execute("SET LOCAL synchronous_commit = off")
                services_cur.execute(*_services_sql())
                if attribute is None:
                    rules_cur.execute(*_rules_sql(db.pk))
                _select_open_episodes(open_cur, db)
                _insert_snapshot(cur, db, slot, snap)
                live = [_session_json(s, now) for s in sessions]  # while the server works; attributed below
                pipeline.sync()
                row = cur.fetchone()
                if row is None:  # another worker stored this slot
                    return SnapshotResult(db.name, "skipped", total=snap.total)
                snapshot_id = row[0]
                services = dict(services_cur.fetchall())
                if attribute is None:
                    attribute = Attributor([Rule(*r) for r in rules_cur.fetchall()], services)

                # What needs no episode tracking first: the server works on it while Python tracks.
                for item, s in zip(live, sessions):
                    item["service"] = attribute(s.application_name, s.usename, s.client_addr or None)
                _update_server_row(cur, db, now, live, snap)
                _insert_counts(cur, snapshot_id, snap.counts, snap.ages, attribute, services)
                _insert_holds(cur, snapshot_id, snap.holds, attribute, services)
                _upsert_databases(cur, db, now, snap)
                # Plain tuples, not model instances: a busy server has hundreds of open episodes.
                open_rows = {ep.EpisodeKey(*row[1:5]): row for row in open_cur.fetchall()}
                previous = [ep.OpenEpisode(key, row[5]) for key, row in open_rows.items()]
                changes = ep.track(previous, sessions, db.thresholds(), now, snap.sessions_truncated_after)
                _upsert_fingerprints(cur, [o.session for o in changes.opened + changes.updated], now)
                _insert_episodes(cur, db, now, changes.opened, attribute, services)
                _update_seen(cur, now, changes.updated, open_rows)
                _close_episodes(cur, now, [open_rows[c.key][0] for c in changes.closed])
                if outermost:
                    # One round trip fewer (on a loaded machine each costs a scheduling delay).
                    # An error above aborts the pipeline before it, and atomic rolls back.
                    cur.execute("COMMIT")
    except IntegrityError:
        return SnapshotResult(db.name, "skipped", total=snap.total)
    return SnapshotResult(
        db.name, "ok", total=snap.total, opened=len(changes.opened), updated=len(changes.updated),
        closed=len(changes.closed), elapsed_ms=snap.elapsed_ms,
    )


# The reads of step 1 are QuerySets (one definition each), compiled to SQL once per
# process and run on a cursor of the pipeline: compiling them on every store cost ~1 ms.
@functools.cache
def _services_sql() -> tuple[str, tuple]:
    return Service.objects.values_list("name", "id").query.sql_with_params()


@functools.lru_cache(maxsize=1024)
def _rules_sql(server_id: int) -> tuple[str, tuple]:
    return AttributionRule.objects.for_server(server_id).query.sql_with_params()


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _select_open_episodes(cur: psycopg.Cursor, db) -> None:
    cur.execute(
        f"""SELECT id, kind, pid, backend_start, started, peak_age_s, state, wait_event, query_id IS NULL
            FROM {_table(Episode)} WHERE server_id = %s AND ended IS NULL""",
        [db.pk],
        binary=True,  # timestamps parsed in C, not by Django's text loader
    )


def _update_server_row(cur: psycopg.Cursor, db, now, live: list[dict], snap: pgactivity.Snapshot) -> None:
    """The newest snapshot on the server row (pages read one row), and on `db` itself."""
    db.last_snapshot_at = now
    db.server_version = _version(snap.settings.server_version_num)
    db.last_sessions = live
    db.last_sessions_truncated = snap.sessions_truncated_after is not None
    db.last_error_kind = ""
    db.in_recovery = snap.in_recovery
    db.wal_sender_host = (snap.sender_host or "")[:255]
    db.wal_sender_port = snap.sender_port
    cur.execute(
        f"""UPDATE {_table(MonitoredServer)}
            SET last_snapshot_at = %s, server_version = %s, last_sessions = %s::json,
                last_sessions_truncated = %s, last_error_kind = '',
                in_recovery = %s, wal_sender_host = %s, wal_sender_port = %s
            WHERE id = %s""",
        [now, db.server_version, json.dumps(live, separators=(",", ":")), db.last_sessions_truncated,
         db.in_recovery, db.wal_sender_host, db.wal_sender_port, db.pk],
    )


def _close_episodes(cur: psycopg.Cursor, now, ids: list[int]) -> None:
    if ids:
        cur.execute(f"UPDATE {_table(Episode)} SET ended = %s WHERE id = ANY(%b::bigint[])", [now, ids])


def _insert_snapshot(cur: psycopg.Cursor, db, slot: int, snap: pgactivity.Snapshot) -> None:
    s = snap.settings
    cur.execute(
        f"""INSERT INTO {_table(Snapshot)}
                (server_id, slot, taken_at, created, total, max_connections, superuser_reserved_connections,
                 reserved_connections, in_recovery, elapsed_ms, sessions_listed)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (server_id, slot) DO NOTHING
            RETURNING id""",
        [db.pk, slot, snap.taken_at, timezone.now(), snap.total, s.max_connections, s.superuser_reserved_connections,
         s.reserved_connections, snap.in_recovery, snap.elapsed_ms, len(snap.sessions)],
    )


def _insert_counts(cur, snapshot_id, counts, ages, attribute, services) -> None:
    if not counts:
        return
    datnames, apps, users, addrs, states, waits, ns, sids = [], [], [], [], [], [], [], []
    idle_over, young_under, longest, longest_idle = [], [], [], []
    for c, a in zip(counts, ages or [pgactivity.GroupAges()] * len(counts), strict=True):
        datnames.append(c.datname[:200])
        apps.append(c.application_name[:200])
        users.append(c.usename[:200])
        addrs.append(c.client_addr[:100])
        states.append(c.state[:50])
        waits.append(c.wait_event_type[:50])
        ns.append(c.count)
        sids.append(services.get(attribute(c.application_name, c.usename, c.client_addr or None)))
        # Array literals: unnest() of a 2-D array would flatten the rows.
        idle_over.append(_array_literal(a.idle_over))
        young_under.append(_array_literal(a.young_under))
        longest.append(a.longest_query_s)
        longest_idle.append(a.longest_idle_s)
    cur.execute(
        f"""INSERT INTO {_table(SessionCount)}
                (snapshot_id, datname, application_name, usename, client_addr, state, wait_event_type, count,
                 service_id, idle_over, young_under, longest_query_s, longest_idle_s)
            SELECT %s, datname, app, usename, addr, state, wait, n, sid, idle::int[], young::int[], longest,
                   longest_idle
            FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::int[],
                        %b::bigint[], %b::text[], %b::text[], %b::float8[], %b::float8[])
                 AS v(datname, app, usename, addr, state, wait, n, sid, idle, young, longest, longest_idle)""",
        [snapshot_id, datnames, apps, users, addrs, states, waits, ns, sids, idle_over, young_under, longest,
         longest_idle],
    )


def _insert_holds(cur, snapshot_id, holds, attribute, services) -> None:
    """Per (database, statement, application, service): how many active sessions run it.

    The source groups by user and address too (attribution rules may match on them);
    attributed, those groups add up here.
    """
    if not holds:
        return
    by_key: dict[tuple, int] = {}
    for h in holds:
        service_id = services.get(attribute(h.application_name, h.usename, h.client_addr or None))
        key = (h.datname[:200], h.query_id, h.application_name[:200], service_id)
        by_key[key] = by_key.get(key, 0) + h.count
    datnames, query_ids, apps, sids = (list(col) for col in zip(*by_key))
    cur.execute(
        f"""INSERT INTO {_table(QueryHold)} (snapshot_id, datname, query_id, application_name, service_id, count)
            SELECT %s, d, q, a, s, n FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::bigint[], %b::int[])
                 AS v(d, q, a, s, n)""",
        [snapshot_id, datnames, query_ids, apps, sids, list(by_key.values())],
    )


# A database already listed is touched again only when its last_seen is this old: the
# list stays current without rewriting its rows on every snapshot.
DATABASE_SEEN_EVERY = "5 minutes"


def _upsert_databases(cur, db, now, snap: pgactivity.Snapshot) -> None:
    """The server's databases: those pg_database lists and those its sessions are on."""
    names = sorted({*snap.databases, *(c.datname for c in snap.counts)} - {""})
    if not names:
        return
    cur.execute(
        f"""INSERT INTO {_table(ServerDatabase)} AS d (server_id, datname, first_seen, last_seen)
            SELECT %s, n, %s, %s FROM unnest(%b::text[]) AS v(n)
            ON CONFLICT (server_id, datname) DO UPDATE SET last_seen = EXCLUDED.last_seen
            WHERE d.last_seen < EXCLUDED.last_seen - interval '{DATABASE_SEEN_EVERY}'""",
        [db.pk, now, now, [n[:200] for n in names]],
    )


def _insert_episodes(cur, db, now, opened, attribute, services) -> None:
    """Insert new episodes; the query id is looked up by fingerprint (upserted just before)."""

    if not opened:
        return
    cols: list[list] = [[] for _ in range(14)]
    for o in opened:
        s = o.session
        for col, value in zip(cols, (
            o.key.kind, o.key.pid, o.key.backend_start, o.key.started, s.xact_start, float(o.peak_age_s),
            s.application_name[:200], s.usename[:200], s.client_addr[:100], s.datname[:200], s.state[:50],
            s.wait_event[:100], services.get(attribute(s.application_name, s.usename, s.client_addr or None)),
            s.fingerprint or None,
        )):
            col.append(value)
    cur.execute(
        f"""INSERT INTO {_table(Episode)}
                (server_id, first_seen, last_seen, kind, pid, backend_start, started, xact_start, peak_age_s,
                 application_name, usename, client_addr, datname, state, wait_event, service_id, query_id)
            SELECT %s, %s, %s, v.kind, v.pid, v.backend_start, v.started, v.xact_start, v.peak, v.app, v.usename,
                   v.addr, v.datname, v.state, v.wait, v.service_id, q.id
            FROM unnest(%b::text[], %b::int[], %b::timestamptz[], %b::timestamptz[], %b::timestamptz[], %b::float8[],
                        %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::bigint[],
                        %b::text[])
                 AS v(kind, pid, backend_start, started, xact_start, peak, app, usename, addr, datname, state, wait,
                      service_id, fingerprint)
            LEFT JOIN {_table(QueryFingerprint)} AS q ON q.fingerprint = v.fingerprint""",
        [db.pk, now, now, *cols],
    )


def _update_seen(cur, now, updated, open_rows) -> None:
    """Move last_seen/peak of every ongoing episode in one UPDATE ... FROM unnest().

    (bulk_update builds a CASE per row and field: 20x slower for a few hundred rows.)
    State, wait event and query travel only for the episodes where they change
    (`open_rows` holds the stored values). An idle-in-transaction episode keeps
    its first query: an idle session's query is the one it ran before going
    idle, which is the interesting one.
    """

    if not updated:
        return
    ids, peaks = [], []
    changed_ids, states, waits, fps = [], [], [], []
    for o in updated:
        pk, kind, *_, state, wait, no_query = open_rows[o.key]
        ids.append(pk)
        peaks.append(float(o.peak_age_s))
        s = o.session
        fp = s.fingerprint if no_query and kind != ep.IDLE_IN_TRANSACTION else ""
        if fp or s.state[:50] != state or s.wait_event[:100] != wait:
            changed_ids.append(pk)
            states.append(s.state[:50])
            waits.append(s.wait_event[:100])
            fps.append(fp or None)
    cur.execute(
        f"""UPDATE {_table(Episode)} AS e
            SET last_seen = %s, peak_age_s = v.peak, state = COALESCE(c.state, e.state),
                wait_event = COALESCE(c.wait, e.wait_event), query_id = COALESCE(e.query_id, c.qid)
            FROM unnest(%s::bigint[], %s::float8[]) AS v(id, peak)
            LEFT JOIN (SELECT c.*, q.id AS qid
                       FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[])
                            AS c(id, state, wait, fingerprint)
                       LEFT JOIN {_table(QueryFingerprint)} AS q ON q.fingerprint = c.fingerprint) AS c
                   ON c.id = v.id
            WHERE e.id = v.id""",
        # The two arrays every ongoing episode is in, as array literals: str() and
        # repr() (exact for floats) run in C, psycopg's list dumpers in Python.
        [now, _array_literal(ids), _array_literal(peaks),
         changed_ids, states, waits, fps],
    )


def _array_literal(values) -> str:
    """A PostgreSQL array literal of numbers: repr() is exact for floats and runs in C."""
    return "{" + ",".join(map(repr, values)) + "}"


def _upsert_fingerprints(cur, sessions, now) -> None:
    """Upsert the fingerprints of these sessions in one statement.

    A known fingerprint keeps its text and first_seen; last_seen only moves
    forward. Sorted, so concurrent workers lock the same fingerprints in the
    same order.
    """

    texts = {s.fingerprint: s.query for s in sessions if s.fingerprint}
    if not texts:
        return
    keys = sorted(texts)
    cur.execute(
        f"""INSERT INTO {_table(QueryFingerprint)} AS q (fingerprint, text, first_seen, last_seen)
            SELECT f, t, %s, %s FROM unnest(%b::text[], %b::text[]) AS v(f, t)
            ON CONFLICT (fingerprint) DO UPDATE SET last_seen = GREATEST(q.last_seen, EXCLUDED.last_seen)""",
        [now, now, keys, [texts[k] for k in keys]],
    )


def _session_json(s: ep.Session, now) -> dict:
    """One live session for the server page; the caller adds "service"."""

    return {
        "pid": s.pid,
        "backend_start": s.backend_start.isoformat() if s.backend_start else None,
        "xact_start": s.xact_start.isoformat() if s.xact_start else None,
        "query_start": s.query_start.isoformat() if s.query_start else None,
        "state_change": s.state_change.isoformat() if s.state_change else None,
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
    }


def _version(num: int) -> str:
    if not num:
        return ""
    major = num // 10000
    return f"{major}.{num % 10000}" if major >= 10 else f"{major}.{num // 100 % 100}.{num % 100}"


def snapshot_all() -> list[SnapshotResult]:
    return [snapshot_server(db) for db in MonitoredServer.objects.enabled()]
