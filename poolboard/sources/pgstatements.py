"""pg_stat_statements of a monitored PostgreSQL server: is it usable, and one bounded read.

Same guarantees as sources.pgactivity (it opens its connections): one connection per call,
closed afterwards; connect and statement timeouts; read-only transaction; marked as
poolboard's (application_name poolboard-monitor, `/* poolboard */`). Never calls
pg_stat_statements_reset(): other tools read the same counters.

The view's columns changed over the versions; the read asks the server which ones it has:
- PostgreSQL 13 (extension 1.8) renamed total_time/max_time to total_exec_time/max_exec_time;
- 14 (1.9) added `toplevel` and the pg_stat_statements_info view (dealloc, stats_reset);
- 17 (1.11) renamed blk_read_time/blk_write_time (not read here) and added stats_since.

What is read: the top `top` entries by total execution time plus every entry whose queryid
is already tracked, counters only (pg_stat_statements(false): no query text file read);
the text only for queryids poolboard has no text for yet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime

import psycopg

from poolboard.lib.statements import Counters, Key

from .pgactivity import MARK, Limits, MonitorError, Target, _wrap, connect

DEFAULT_TOP = 500
EXTENSION = "pg_stat_statements"

# Status.state values, worst first.
NOT_AVAILABLE = "not_available"  # the server has no pg_stat_statements library (contrib not installed)
NOT_PRELOADED = "not_preloaded"
NOT_INSTALLED = "not_installed"  # no CREATE EXTENSION in the monitored database
UNREADABLE = "unreadable"  # only the monitor role's own statements are visible
OK = "ok"
ERROR = "error"  # could not even ask (unreachable, ...)


@dataclass(frozen=True)
class Status:
    state: str
    message: str  # what is wrong and exactly how to fix it; "" when state is ok
    server_version_num: int = 0
    extension_version: str = ""
    schema: str = ""
    available: bool = False
    preloaded: bool = False
    installed: bool = False
    readable: bool = False
    track: str = ""
    max_entries: int | None = None
    compute_query_id: str = ""
    columns: frozenset[str] = frozenset()
    has_info: bool = False  # pg_stat_statements_info (extension 1.9+, PostgreSQL 14+)

    @property
    def ok(self) -> bool:
        return self.state == OK

    @property
    def collectable(self) -> bool:
        """Counters can be read (perhaps only the monitor role's own statements)."""
        return self.state in (OK, UNREADABLE)


@dataclass(frozen=True)
class Entry:
    key: Key
    counters: Counters
    query: str | None  # raw normalised text from the server, None when not asked for


@dataclass(frozen=True)
class Reading:
    taken_at: datetime  # the server's now()
    entries: list[Entry]
    view_entries: int  # entries in the whole view (visible ones with a queryid)
    complete: bool  # every entry of the view is in `entries`
    looked_for: frozenset[int]  # the tracked queryids asked for
    stats_reset: datetime | None = None
    dealloc: int | None = None
    status: Status | None = None
    status_checked: bool = False  # status was asked for by this reading, not reused from an earlier one
    elapsed_ms: float = 0.0
    notes: list[str] = field(default_factory=list)


class Unavailable(MonitorError):
    """pg_stat_statements cannot be read on this server; `status` says why and how to fix it."""

    def __init__(self, status: Status) -> None:
        super().__init__("unavailable", status.message)
        self.status = status


def _q(cur: psycopg.Cursor, sql: str, params=None):
    cur.execute(MARK + sql, params)
    return cur


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def enable_message(status_state: str, dbname: str, user: str, readable: bool = False) -> str:
    """The exact lines an operator runs, for each state."""
    create = f"then, in database {dbname}:  CREATE EXTENSION pg_stat_statements;"
    grant = f"GRANT pg_read_all_stats TO {user};"
    then_grant = "" if readable else f" Then:  {grant}"
    if status_state == NOT_AVAILABLE:
        return (
            "pg_stat_statements is not available on this server (its contrib package is not installed). Install the"
            " server's contrib package (Debian/Ubuntu: postgresql-contrib), then in postgresql.conf:"
            "  shared_preload_libraries = 'pg_stat_statements'  and  compute_query_id = on ;"
            f" restart PostgreSQL; {create}"
        )
    if status_state == NOT_PRELOADED:
        return (
            "pg_stat_statements is not loaded. In postgresql.conf (on a managed service: its parameter group / flags):"
            "  shared_preload_libraries = 'pg_stat_statements'  (add it to any libraries already listed)"
            "  and  compute_query_id = on ; restart PostgreSQL (a reload is not enough); "
            + create + then_grant
        )
    if status_state == NOT_INSTALLED:
        return (
            f"pg_stat_statements is loaded but not installed in database {dbname}: as a superuser, in database {dbname}:"
            "  CREATE EXTENSION pg_stat_statements;" + then_grant
        )
    if status_state == UNREADABLE:
        return (
            f"the monitoring role {user} may not read other roles' statements (pg_stat_statements shows their queryid"
            f" as NULL and text as <insufficient privilege>); only its own are collected. Run:  {grant}"
        )
    return ""


def check(target: Target, password: str | None = None, limits: Limits | None = None) -> Status:
    """Whether pg_stat_statements can be read on the server, through the monitored database.
    The next read() asks again too, rather than reuse what an earlier one learnt."""
    forget_status(target)
    try:
        conn = connect(target, password, limits or Limits())
    except MonitorError as exc:
        return Status(state=ERROR, message=exc.message)
    try:
        with conn.cursor() as cur:
            return _status(cur, target)
    except MonitorError as exc:
        return Status(state=ERROR, message=exc.message)
    except Exception as exc:
        return Status(state=ERROR, message=_wrap(exc, target, password).message)
    finally:
        conn.close()


def _status(cur: psycopg.Cursor, target: Target, probe: bool = True) -> Status:
    """One query for everything but the probe. `probe`: also run a zero-row read, which says for
    certain whether the library is loaded (the admin's check); a reading skips it and learns the
    same from its own read failing."""
    (version_num, compute_query_id, track, max_entries, schema, ext_version, available, read_all, superuser,
     columns, has_info) = _q(
        cur,
        """WITH ext AS (SELECT extnamespace::regnamespace::text AS schema, extversion
                        FROM pg_catalog.pg_extension WHERE extname = %(ext)s)
           SELECT current_setting('server_version_num')::int,
                  coalesce(current_setting('compute_query_id', true), ''),
                  coalesce(current_setting('pg_stat_statements.track', true), ''),
                  current_setting('pg_stat_statements.max', true),
                  (SELECT schema FROM ext),
                  (SELECT extversion FROM ext),
                  -- pg_available_extensions reads every control file on disk: only when not installed.
                  CASE WHEN EXISTS (SELECT 1 FROM ext) THEN true
                       ELSE EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = %(ext)s) END,
                  pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),
                  (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user),
                  ARRAY(SELECT attname::text FROM pg_catalog.pg_attribute
                        WHERE attrelid = to_regclass((SELECT quote_ident(schema) FROM ext) || '.pg_stat_statements')
                          AND attnum > 0 AND NOT attisdropped),
                  to_regclass((SELECT quote_ident(schema) FROM ext) || '.pg_stat_statements_info') IS NOT NULL""",
        {"ext": EXTENSION},
    ).fetchone()
    installed = schema is not None
    # The library defines pg_stat_statements.* settings when it loads: their presence says it is
    # preloaded without needing the privilege to read shared_preload_libraries. Once installed,
    # a zero-row read says it for certain (the function refuses to run when not preloaded).
    preloaded = max_entries is not None
    if installed and probe:
        cur.execute("SAVEPOINT pb_probe")
        try:
            _q(cur, f"SELECT 1 FROM {_ident(schema)}.pg_stat_statements(false) LIMIT 0")
            preloaded = True
            cur.execute("RELEASE SAVEPOINT pb_probe")
        except psycopg.errors.ObjectNotInPrerequisiteState:
            preloaded = False
            cur.execute("ROLLBACK TO SAVEPOINT pb_probe")
    return _judge(target, version_num, compute_query_id, track, max_entries, schema, ext_version, available,
                  read_all, superuser, frozenset(columns or ()), bool(has_info), installed, preloaded)


def _judge(target, version_num, compute_query_id, track, max_entries, schema, ext_version, available, read_all,
           superuser, columns, has_info, installed, preloaded) -> Status:
    readable = bool(read_all or superuser)
    if not available and not preloaded:
        state = NOT_AVAILABLE
    elif not preloaded:
        state = NOT_PRELOADED
    elif not installed:
        state = NOT_INSTALLED
    elif not readable:
        state = UNREADABLE
    else:
        state = OK
    message = enable_message(state, target.dbname, target.user, readable)
    if state in (OK, UNREADABLE) and compute_query_id == "off":
        message = (message + " " if message else "") + (
            "compute_query_id is off: pg_stat_statements tracks nothing and sessions carry no query_id;"
            " set compute_query_id = auto (or on) in postgresql.conf and reload."
        )
    if state in (OK, UNREADABLE) and version_num and int(version_num) < 140000:
        # pg_stat_activity.query_id arrived in PostgreSQL 14: before it, a snapshot cannot tell
        # which statement a session runs, so the "held by" columns would be empty without a word.
        message = (message + " " if message else "") + (
            f"PostgreSQL {int(version_num) // 10000} has no pg_stat_activity.query_id (14 and later): statements are"
            " collected, but which services' sessions run them, and how many connections they hold, cannot be told."
        )
    return Status(
        state=state,
        message=message,
        server_version_num=version_num,
        extension_version=ext_version or "",
        schema=schema or "",
        available=bool(available),
        preloaded=preloaded,
        installed=installed,
        readable=readable,
        track=track,
        max_entries=int(max_entries) if max_entries not in (None, "") else None,
        compute_query_id=compute_query_id,
        columns=columns,
        has_info=has_info,
    )


# What read() learnt of each target's pg_stat_statements (schema, columns, whether it may
# read every role's statements), reused for the next readings instead of asking again each
# time (the status query was a round trip and catalogue lookups of its own on every reading:
# 7-10 ms of the first query on a fresh connection, measured on 5 000 entries): asked again every STATUS_RECHECK_READINGS readings (an hour
# at the default 5-minute interval), and at once when a reading fails, since an extension
# dropped, upgraded or no longer loaded shows up as an error of the read itself. Per process
# (each worker asks once after it starts); only a status that can be collected is kept.
STATUS_RECHECK_READINGS = 12
_known_status: dict[tuple[str, int, str, str], tuple[Status, int]] = {}


# How a reused status shows it no longer holds: the extension dropped or moved (no such
# function, view or schema), upgraded (no such column), no longer loaded, or the role's
# privilege revoked.
_STATUS_CHANGED = (
    psycopg.errors.UndefinedFunction,
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.InvalidSchemaName,
    psycopg.errors.ObjectNotInPrerequisiteState,
    psycopg.errors.InsufficientPrivilege,
)


def forget_status(target: Target) -> None:
    """Ask the server for the status again at the next reading."""
    _known_status.pop(_status_key(target), None)


def _status_key(target: Target) -> tuple[str, int, str, str]:
    return (target.host, int(target.port), target.dbname, target.user)


def read(
    target: Target,
    password: str | None = None,
    limits: Limits | None = None,
    *,
    top: int = DEFAULT_TOP,
    tracked: frozenset[int] | set[int] | tuple[int, ...] = (),
    with_text: frozenset[int] | set[int] | None = None,
) -> Reading:
    """One read: the `top` entries by total execution time and every entry whose queryid is in
    `tracked`; query text for the queryids in `with_text` (None: for every entry read).

    The status comes from an earlier reading of the same target when there is one (see
    _known_status; Reading.status_checked says whether this reading asked). Raises Unavailable
    (a MonitorError carrying the Status) when pg_stat_statements cannot be read, MonitorError
    when the server cannot.
    """
    t0 = time.perf_counter()
    key = _status_key(target)
    tracked = frozenset(int(q) for q in tracked)
    conn = connect(target, password, limits or Limits())
    try:
        # Each statement in a transaction of its own (still read-only, still bounded): nothing
        # here needs them to share one, and psycopg would otherwise send BEGIN before the first
        # and a ROLLBACK after the last, a round trip each.
        conn.autocommit = True
        with conn.cursor() as cur:
            reading = None
            known, left = _known_status.pop(key, (None, 0))
            if known is not None and left > 0:
                try:
                    reading = _read(cur, known, int(top), tracked, with_text)
                    _known_status[key] = (known, left - 1)
                except _STATUS_CHANGED:
                    pass  # ask (below), then read again; any other error ends the reading
            if reading is None:
                reading = replace(_read_checked(cur, target, int(top), tracked, with_text), status_checked=True)
                _known_status[key] = (reading.status, STATUS_RECHECK_READINGS - 1)
    except MonitorError:
        raise
    except Exception as exc:
        raise _wrap(exc, target, password) from None
    finally:
        conn.close()
    return replace(reading, elapsed_ms=(time.perf_counter() - t0) * 1000)


def _read_checked(cur, target: Target, top: int, tracked: frozenset[int], with_text) -> Reading:
    """Ask for the status, then read."""
    status = _status(cur, target, probe=False)
    if not status.collectable:
        raise Unavailable(status)
    try:
        return _read(cur, status, top, tracked, with_text)
    except psycopg.errors.ObjectNotInPrerequisiteState:
        # Installed, but the library is not loaded (a placeholder setting fooled the status query).
        raise Unavailable(replace(status, state=NOT_PRELOADED, preloaded=False,
                                  message=enable_message(NOT_PRELOADED, target.dbname, target.user,
                                                         status.readable))) from None


def _read(cur, status: Status, top: int, tracked: frozenset[int], with_text) -> Reading:
    cols = status.columns
    total = "total_exec_time" if "total_exec_time" in cols else "total_time"
    maximum = "max_exec_time" if "max_exec_time" in cols else ("max_time" if "max_time" in cols else "NULL::float8")
    toplevel = "toplevel" if "toplevel" in cols else "true"
    view = f"{_ident(status.schema)}.pg_stat_statements(false)"
    info = f"{_ident(status.schema)}.pg_stat_statements_info"
    info_cols = (
        f"(SELECT dealloc FROM {info}), (SELECT stats_reset FROM {info})" if status.has_info else "NULL::bigint, NULL::timestamptz"
    )
    # One pass over the view (each call of the function walks its whole hash table, 5 000
    # entries here and there, under a lock), kept for three uses: the top entries by total
    # time (a top-N sort), the tracked queryids (an array parameter of a few hundred bigints;
    # `IN (SELECT unnest(...))`, not `= ANY(...)`: a bound array is searched element by element
    # for every entry, the subquery is hashed), and the count of everything visible; dealloc
    # and stats_reset alongside. UNION drops the entries that are both in the top and tracked.
    # (Numbering every entry with row_number() and count(*) OVER () instead sorted all of them:
    # 34 ms against 28 for this query, fastest of 15 on a warm connection, 5 000 entries.)
    rows = _q(
        cur,
        f"""WITH s AS MATERIALIZED (
                SELECT dbid, userid, queryid, {toplevel} AS toplevel, calls, {total} AS total, rows,
                       shared_blks_hit, shared_blks_read, {maximum} AS maximum
                FROM {view}
                WHERE queryid IS NOT NULL)
            SELECT now(), coalesce(d.datname::text, 'oid ' || e.dbid), coalesce(r.rolname::text, 'oid ' || e.userid),
                   e.queryid, e.toplevel, e.calls, e.total, e.rows, e.shared_blks_hit, e.shared_blks_read, e.maximum,
                   (SELECT count(*) FROM s), {info_cols}
            FROM ((SELECT * FROM s ORDER BY total DESC, queryid LIMIT %s)
                  UNION
                  SELECT * FROM s WHERE queryid IN (SELECT unnest(%s::bigint[]))) AS e
            LEFT JOIN pg_catalog.pg_database d ON d.oid = e.dbid
            LEFT JOIN pg_catalog.pg_roles r ON r.oid = e.userid""",
        (top, list(tracked)),
    ).fetchall()
    if rows:
        taken_at, view_entries, dealloc, stats_reset = rows[0][0], int(rows[0][11]), rows[0][12], rows[0][13]
    else:
        taken_at, dealloc, stats_reset = _q(cur, f"SELECT now(), {info_cols}").fetchone()
        view_entries = 0
    want_text = {r[3] for r in rows} if with_text is None else {r[3] for r in rows if r[3] not in with_text}
    texts: dict[int, str] = {}
    if want_text:
        texts = dict(
            _q(
                cur,
                f"""SELECT DISTINCT ON (queryid) queryid, query
                    FROM {_ident(status.schema)}.pg_stat_statements(true)
                    WHERE queryid IN (SELECT unnest(%s::bigint[]))""",
                (sorted(want_text),),
            ).fetchall()
        )
    entries = [
        Entry(
            key=Key(datname=r[1], rolname=r[2], queryid=int(r[3]), toplevel=bool(r[4])),
            counters=Counters(
                calls=int(r[5]), total_exec_ms=float(r[6]), rows=int(r[7]), shared_blks_hit=int(r[8]),
                shared_blks_read=int(r[9]), max_exec_ms=float(r[10]) if r[10] is not None else None,
            ),
            query=texts.get(r[3]),
        )
        for r in rows
    ]
    return Reading(
        taken_at=taken_at,
        entries=entries,
        view_entries=view_entries,
        complete=len(entries) >= view_entries,
        looked_for=tracked,
        stats_reset=stats_reset,
        dealloc=int(dealloc) if dealloc is not None else None,
        status=status,
    )
