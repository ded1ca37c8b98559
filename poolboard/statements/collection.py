"""Read pg_stat_statements on one server (sources.pgstatements), diff it against the previous
reading (lib.statements) and store the intervals; roll intervals up per hour; expire old rows.

Idempotent like the snapshots: the StatementSample row is unique per (server, slot), inserted
first in the same transaction as everything else, so a redelivered task stores nothing twice
(and its deltas are not counted twice: the baselines move in the same transaction).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from poolboard.databases.models import MonitoredServer, QueryFingerprint, SecretError, query_text_mode
from poolboard.lib import querytext
from poolboard.lib import statements as st
from poolboard.sources import pgstatements

from .models import (
    HoldHourly,
    Statement,
    StatementHourly,
    StatementInterval,
    StatementSample,
    StatementsStatus,
    statements_interval,
)

log = logging.getLogger(__name__)

# A statement that has not run for this long is no longer looked for by queryid (it still
# comes back whenever it is in the top N again): keeps the tracked list bounded.
TRACK_FOR = timedelta(days=1)
# Readings further apart than this are not diffed: the counts would be booked to one hour.
MAX_GAP = timedelta(hours=1)
# pg_advisory_xact_lock(class, server id): the first key says "statements store" (an arbitrary constant).
LOCK_CLASS = 0x5354


def top_n() -> int:
    return int(getattr(settings, "STATEMENTS_TOP", pgstatements.DEFAULT_TOP))


@dataclass
class CollectResult:
    server: str
    status: str  # ok | skipped | unavailable | failed
    entries: int = 0
    intervals: int = 0
    new_statements: int = 0
    notes: list[str] | None = None
    error: str = ""


def collect_server(server: MonitoredServer) -> CollectResult:
    """Read and store one server's statements; record why not when it cannot."""
    try:
        password = server.password()
    except SecretError as exc:
        _set_status(server, "error", str(exc))
        return CollectResult(server.name, "failed", error=str(exc))
    now = timezone.now()
    if StatementSample.objects.filter(server=server, slot=int(now.timestamp() // statements_interval())).exists():
        # A redelivered task, or a second worker: this slot is stored (by this clock; store_reading
        # checks again by the server's), so the server is not read again.
        return CollectResult(server.name, "skipped")
    since = now - TRACK_FOR
    known = Statement.objects.filter(server=server)
    tracked = set(
        known.filter(last_seen__gte=since, last_calls__isnull=False).values_list("queryid", flat=True).distinct()
    )
    with_text = set(known.filter(query__isnull=False).values_list("queryid", flat=True).distinct())
    try:
        reading = pgstatements.read(
            server.target(), password, server.limits(), top=top_n(), tracked=tracked, with_text=with_text
        )
    except pgstatements.Unavailable as exc:
        _set_status(server, exc.status.state, exc.status.message, exc.status)
        return CollectResult(server.name, "unavailable", error=exc.status.message)
    except pgstatements.MonitorError as exc:
        _set_status(server, "error", exc.message)
        log.warning("statements of %s failed: %s", server.name, exc)
        return CollectResult(server.name, "failed", error=f"{exc.kind}: {exc.message}")
    return store_reading(server, reading)


def check_server(server: MonitoredServer) -> pgstatements.Status:
    """Check pg_stat_statements on the server now and store the result (the server page shows it)."""
    try:
        password = server.password()
    except SecretError as exc:
        status = pgstatements.Status(state=pgstatements.ERROR, message=str(exc))
    else:
        status = pgstatements.check(server.target(), password, server.limits())
    _set_status(server, status.state, status.message, status)
    return status


def _set_status(server, state: str, message: str, status: pgstatements.Status | None = None) -> None:
    values = {"state": state, "message": message, "checked_at": timezone.now()}
    if status is not None:
        values.update(
            extension_version=status.extension_version, track=status.track, max_entries=status.max_entries
        )
    StatementsStatus.objects.update_or_create(server=server, defaults=values)


def store_reading(server: MonitoredServer, reading: pgstatements.Reading, interval_s: int | None = None) -> CollectResult:
    """Store one reading: 1. the sample row for (server, slot), or nothing if it exists;
    2. the deltas against the previous reading's baselines (lib.statements.diff), one
    interval row per statement that ran; 3. the new baselines, texts and status."""
    interval_s = interval_s or statements_interval()
    slot = int(reading.taken_at.timestamp() // interval_s)
    with transaction.atomic():
        # One store per server at a time, so each sees the baselines the one before it left;
        # a reading that arrives after a newer one is dropped (its baselines would go backwards).
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_CLASS, server.pk])
        if StatementSample.objects.filter(server=server, slot__gte=slot).exists():
            return CollectResult(server.name, "skipped")
        previous = StatementSample.objects.filter(server=server, slot__lt=slot).order_by("-slot").first()
        try:
            with transaction.atomic():
                sample = StatementSample.objects.create(
                    server=server, slot=slot, taken_at=reading.taken_at, entries=len(reading.entries),
                    view_entries=reading.view_entries, complete=reading.complete, stats_reset=reading.stats_reset,
                    dealloc=reading.dealloc, elapsed_ms=reading.elapsed_ms,
                )
        except IntegrityError:
            return CollectResult(server.name, "skipped")
        if previous is not None and previous.taken_at >= reading.taken_at:
            previous = None  # a clock gone backwards: start again from this reading
        keys = {e.key for e in reading.entries}
        queryids = {k.queryid for k in keys} | set(reading.looked_for)
        rows = Statement.objects.filter(server=server, queryid__in=queryids)
        if previous is not None:
            rows = Statement.objects.filter(server=server, last_read_at=previous.taken_at) | rows
        existing = {s.key(): s for s in rows}
        looked_for = frozenset(k for k in existing if k.queryid in reading.looked_for)
        current = st.Reading(
            taken_at=reading.taken_at, entries={e.key: e.counters for e in reading.entries},
            complete=reading.complete, looked_for=looked_for, stats_reset=reading.stats_reset, dealloc=reading.dealloc,
        )
        notes: list[str] = []
        if previous is not None and reading.taken_at - previous.taken_at > MAX_GAP:
            notes.append(
                f"No reading of pg_stat_statements since {previous.taken_at:%Y-%m-%d %H:%M:%S %Z}; counting starts"
                " again from this reading."
            )
            previous = None
        prior = _previous_reading(previous, existing) if previous is not None else None
        diff = st.diff(prior, current)
        notes += diff.notes

        fingerprints = _fingerprints(reading, reading.taken_at)
        # Text is read once per queryid: an entry new in another database or role takes the text
        # its queryid already has on this server.
        untexted = {
            e.key.queryid for e in reading.entries
            if e.key.queryid not in fingerprints and (e.key not in existing or existing[e.key].query_id is None)
        }
        if untexted:
            fingerprints.update(
                Statement.objects.filter(server=server, queryid__in=untexted, query__isnull=False)
                .values_list("queryid", "query_id")
            )
        statements = _upsert_statements(server, reading, existing, fingerprints)
        gone = [existing[k].pk for k in current.absent() if k in existing]
        if gone:
            Statement.objects.filter(pk__in=gone).update(
                last_read_at=reading.taken_at, last_calls=None, last_total_exec_ms=None, last_rows=None,
                last_shared_blks_hit=None, last_shared_blks_read=None, last_max_exec_ms=None,
            )
        intervals = [
            StatementInterval(
                statement_id=statements[d.key], start=d.start, end=d.end, calls=d.counters.calls,
                total_exec_ms=d.counters.total_exec_ms, rows=d.counters.rows,
                shared_blks_hit=d.counters.shared_blks_hit, shared_blks_read=d.counters.shared_blks_read,
                max_exec_ms=d.counters.max_exec_ms, restarted=d.restarted,
            )
            for d in diff.deltas
            # An interval in which a statement did not run says nothing the absence of a row does not.
            if d.counters.calls or d.counters.total_exec_ms
        ]
        StatementInterval.objects.bulk_create(intervals, batch_size=1000)
        StatementSample.objects.filter(pk=sample.pk).update(intervals=len(intervals), notes=notes)
        status = reading.status
        if status is not None and reading.status_checked:  # a reused status was stored when it was asked for
            _set_status(server, status.state, status.message, status)
    return CollectResult(
        server.name, "ok", entries=len(reading.entries), intervals=len(intervals),
        new_statements=len(keys - set(existing)), notes=notes,
    )


def _previous_reading(previous: StatementSample, existing: dict[st.Key, Statement]) -> st.Reading:
    """The previous reading as its baselines left it: the statements it had, and those it looked
    for and did not find."""
    at = previous.taken_at
    mine = [s for s in existing.values() if s.last_read_at == at]
    return st.Reading(
        taken_at=at,
        entries={s.key(): s.counters() for s in mine if s.last_calls is not None},
        complete=previous.complete,
        looked_for=frozenset(s.key() for s in mine if s.last_calls is None),
        stats_reset=previous.stats_reset,
        dealloc=previous.dealloc,
    )


def _fingerprints(reading: pgstatements.Reading, now: datetime) -> dict[int, int]:
    """{queryid: QueryFingerprint pk} for the entries that came with text: the server's
    normalised text through the same redaction and fingerprint as episodes' (querytext.clean;
    pg_stat_statements does not cut text, so no truncation check)."""
    cleaned: dict[int, querytext.QueryText] = {}
    for e in reading.entries:
        if e.query is not None and e.key.queryid not in cleaned:
            cleaned[e.key.queryid] = querytext.clean(e.query, mode=query_text_mode(), track_size=0)
    if not cleaned:
        return {}
    by_fp = {q.fingerprint: q.text for q in cleaned.values()}
    QueryFingerprint.objects.bulk_create(
        [QueryFingerprint(fingerprint=fp, text=text, first_seen=now, last_seen=now) for fp, text in sorted(by_fp.items())],
        ignore_conflicts=True,
    )
    ids = dict(QueryFingerprint.objects.filter(fingerprint__in=list(by_fp)).values_list("fingerprint", "pk"))
    return {qid: ids[q.fingerprint] for qid, q in cleaned.items() if q.fingerprint in ids}


def _upsert_statements(server, reading, existing: dict[st.Key, Statement], fingerprints: dict[int, int]) -> dict[st.Key, int]:
    """Insert new statements and move every read one's baseline: one INSERT ... ON CONFLICT over
    unnest()ed arrays (bench_statements: Django's bulk_create spent ~10x longer preparing 500
    rows' values than PostgreSQL spent storing them). first_seen and a known text are kept."""
    at = reading.taken_at
    cols: dict[str, list] = {name: [] for name in (
        "datname", "rolname", "queryid", "toplevel", "query_id", "last_seen", "calls", "total", "rows", "hit", "read", "max"
    )}
    for e in reading.entries:
        old = existing.get(e.key)
        ran = old is None or old.last_calls is None or e.counters.calls != old.last_calls
        c = e.counters
        for name, value in (
            ("datname", e.key.datname), ("rolname", e.key.rolname), ("queryid", e.key.queryid),
            ("toplevel", e.key.toplevel), ("query_id", fingerprints.get(e.key.queryid)),
            ("last_seen", at if ran else old.last_seen), ("calls", c.calls), ("total", c.total_exec_ms),
            ("rows", c.rows), ("hit", c.shared_blks_hit), ("read", c.shared_blks_read), ("max", c.max_exec_ms),
        ):
            cols[name].append(value)
    if not reading.entries:
        return {}
    table = Statement._meta.db_table
    with connection.cursor() as cur:
        cur.execute(
            f"""INSERT INTO {table} AS s (server_id, datname, rolname, queryid, toplevel, query_id, first_seen, last_seen,
                                        last_read_at, last_calls, last_total_exec_ms, last_rows, last_shared_blks_hit,
                                        last_shared_blks_read, last_max_exec_ms)
                SELECT %s, v.datname, v.rolname, v.queryid, v.toplevel, v.query_id, %s, v.last_seen, %s,
                       v.calls, v.total, v.rows, v.hit, v.read, v.max
                FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bool[], %s::bigint[], %s::timestamptz[],
                            %s::bigint[], %s::float8[], %s::bigint[], %s::bigint[], %s::bigint[], %s::float8[])
                     AS v(datname, rolname, queryid, toplevel, query_id, last_seen, calls, total, rows, hit, read, max)
                ON CONFLICT (server_id, queryid, datname, rolname, toplevel) DO UPDATE SET
                    query_id = coalesce(s.query_id, EXCLUDED.query_id), last_seen = EXCLUDED.last_seen,
                    last_read_at = EXCLUDED.last_read_at, last_calls = EXCLUDED.last_calls,
                    last_total_exec_ms = EXCLUDED.last_total_exec_ms, last_rows = EXCLUDED.last_rows,
                    last_shared_blks_hit = EXCLUDED.last_shared_blks_hit,
                    last_shared_blks_read = EXCLUDED.last_shared_blks_read, last_max_exec_ms = EXCLUDED.last_max_exec_ms
                RETURNING id, datname, rolname, queryid, toplevel""",
            [server.pk, at, at, *cols.values()],
        )
        return {st.Key(d, r, q, t): pk for pk, d, r, q, t in cur.fetchall()}


# --- hourly rollup and retention ---------------------------------------------------------------


def rollup_recent(now: datetime, hours: int = 3) -> int:
    """Recompute the hourly rows of the last `hours` hours from the intervals (lib.statements.hour_of:
    the hour of each interval's midpoint). Recomputed, not incremented: running it twice changes
    nothing. Returns the rows written."""
    first_hour = st.hour_of(now, now) - timedelta(hours=hours - 1)
    hourly = StatementHourly._meta.db_table
    intervals = StatementInterval._meta.db_table
    with connection.cursor() as cur:
        cur.execute(
            f"""INSERT INTO {hourly} AS h (statement_id, hour, calls, total_exec_ms, rows, shared_blks_hit,
                                            shared_blks_read, max_exec_ms, intervals)
                SELECT statement_id,
                       date_bin('1 hour', start + ("end" - start) / 2, TIMESTAMPTZ 'epoch') AS hour,
                       sum(calls), sum(total_exec_ms), sum(rows), sum(shared_blks_hit), sum(shared_blks_read),
                       max(max_exec_ms), count(*)
                FROM {intervals}
                -- An interval's midpoint is in the hour only if it ends after the hour begins.
                WHERE "end" > %s
                GROUP BY 1, 2
                HAVING date_bin('1 hour', start + ("end" - start) / 2, TIMESTAMPTZ 'epoch') >= %s
                ON CONFLICT (statement_id, hour) DO UPDATE SET
                    calls = EXCLUDED.calls, total_exec_ms = EXCLUDED.total_exec_ms, rows = EXCLUDED.rows,
                    shared_blks_hit = EXCLUDED.shared_blks_hit, shared_blks_read = EXCLUDED.shared_blks_read,
                    max_exec_ms = EXCLUDED.max_exec_ms, intervals = EXCLUDED.intervals""",
            [first_hour, first_hour],
        )
        return cur.rowcount


def expire(now: datetime) -> dict[str, int]:
    """Intervals and samples after STATEMENTS_INTERVAL_DAYS (14), hours (the statements' and their
    holds', holds.py) after STATEMENTS_HOURLY_DAYS (400), and statements not seen for as long as
    their hours are kept."""
    interval_days = int(getattr(settings, "STATEMENTS_INTERVAL_DAYS", 14))
    hourly_days = int(getattr(settings, "STATEMENTS_HOURLY_DAYS", 400))
    recent = now - timedelta(days=interval_days)
    old = now - timedelta(days=hourly_days)
    return {
        "intervals": StatementInterval.objects.filter(end__lt=recent).delete()[0],
        "samples": StatementSample.objects.filter(taken_at__lt=recent).delete()[0],
        "hours": StatementHourly.objects.filter(hour__lt=old).delete()[0],
        "hold_hours": HoldHourly.objects.filter(hour__lt=old).delete()[0],
        "statements": Statement.objects.filter(last_seen__lt=old).delete()[0],
    }
