"""Safe pg_stat_activity snapshots of a monitored PostgreSQL server.

poolboard must never become the leak it hunts, so every call here:

1. opens exactly one connection and closes it afterwards, even on error;
2. bounds the connect (connect_timeout, default 5 s; psycopg's own default
   is 130 s) and every statement (statement_timeout 5 s, lock_timeout 1 s,
   idle_in_transaction_session_timeout 10 s, read-only transactions), and
   marks itself (application_name=poolboard-monitor, `/* poolboard */`);
3. takes a per-process slot for the target (at most one snapshot per target
   per process) and then counts the poolboard-monitor sessions already on the
   target, refusing above a small cap (as pganalyze's collector does);
4. aggregates counts in SQL and reads a bounded number of session rows.

Passwords are passed separately and never appear in an error message:
psycopg errors are re-raised as MonitorError with a sanitised text.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from poolboard.lib import querytext
from poolboard.lib.budget import ServerSettings, SessionCount
from poolboard.lib.episodes import Session
from poolboard.lib.session_ages import AGE_EDGES_S

MONITOR_APP = "poolboard-monitor"
ADMIN_APP = "poolboard-admin"
MARK = "/* poolboard */ "
DEFAULT_MAX_MONITOR_CONNECTIONS = 3
DEFAULT_SESSION_LIMIT = 200
MAX_COUNT_GROUPS = 2000
QUERY_CHARS = 1024
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


@dataclass(frozen=True)
class Target:
    host: str
    port: int = 5432
    dbname: str = "postgres"
    user: str = "poolboard_mon"
    sslmode: str = "prefer"
    name: str = ""  # for messages only

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"


@dataclass(frozen=True)
class Limits:
    connect_timeout: int = 5  # s; psycopg raises values below 2 to 2
    statement_timeout_ms: int = 5000
    lock_timeout_ms: int = 1000
    max_monitor_connections: int = DEFAULT_MAX_MONITOR_CONNECTIONS
    session_limit: int = DEFAULT_SESSION_LIMIT


@dataclass(frozen=True)
class GroupAges:
    """Ages in one count group, for the diagnosis (the session list leaves idle sessions out),
    counted against lib.session_ages.AGE_EDGES_S by the server."""

    idle_over: tuple[int, ...] = ()  # [i]: idle sessions idle (since state_change) for more than edge i
    young_under: tuple[int, ...] = ()  # [i]: sessions opened (backend_start) less than edge i ago
    longest_query_s: float | None = None  # the oldest active query's age
    longest_idle_s: float | None = None  # the longest idle session's idle time


@dataclass(frozen=True)
class QueryHold:
    """Active sessions running one statement for one application: the connections it holds."""

    datname: str
    query_id: int | None  # pg_stat_activity.query_id: PostgreSQL 14+ with compute_query_id, else None
    application_name: str
    usename: str  # with client_addr, for the attribution rules
    client_addr: str
    count: int


@dataclass(frozen=True)
class Snapshot:
    taken_at: datetime  # the server's now(): the one clock for episodes
    settings: ServerSettings
    counts: list[SessionCount]
    total: int  # client backends, exact even when count groups are cut
    sessions: list[Session]  # bounded, oldest first, own pid excluded
    sessions_truncated_after: datetime | None  # see lib.episodes.track
    own_pid: int = 0
    elapsed_ms: float = 0.0
    ages: list[GroupAges] = field(default_factory=list)  # one per count, same order
    holds: list[QueryHold] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)  # pg_database's connectable databases
    in_recovery: bool = False  # pg_is_in_recovery(): a hot standby
    # A standby's WAL receiver's upstream (pg_stat_wal_receiver; None when not streaming or the
    # role may not read it): how a standby's primary is found among the monitored servers.
    sender_host: str | None = None
    sender_port: int | None = None


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    reachable: bool
    server_version: str = ""
    server_version_num: int = 0
    max_connections: int | None = None
    can_read_all_stats: bool = False
    is_superuser: bool = False
    warnings: list[str] = field(default_factory=list)
    error: str = ""
    error_kind: str = ""


class MonitorError(Exception):
    """A sanitised failure; `kind` is one of KINDS."""

    KINDS = ("unreachable", "timeout", "auth", "privilege", "too_many_monitors", "busy", "error")

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


# --- error sanitising -----------------------------------------------------------------

_SECRETISH = re.compile(r"(password|passwd|pwd)\s*=\s*('[^']*'|\S+)", re.IGNORECASE)


def sanitise(message: str, password: str | None) -> str:
    """Remove the password (and anything that looks like password=...) from text."""

    text = str(message)
    if password:
        text = text.replace(password, "***")
    text = _SECRETISH.sub(r"\1=***", text)
    text = " ".join(text.split())  # server messages are multi-line
    return text[:500]


def _classify(exc: BaseException) -> str:
    text = str(exc).lower()
    if isinstance(exc, psycopg.errors.ConnectionTimeout) or "timeout expired" in text:
        return "timeout"
    if isinstance(exc, (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable)):
        return "timeout"
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return "privilege"
    if "password" in text or "authentication" in text or "does not exist" in text or "no pg_hba.conf" in text:
        return "auth"
    if isinstance(exc, psycopg.OperationalError):
        return "unreachable"
    return "error"


def _wrap(exc: BaseException, target: Target, password: str | None) -> MonitorError:
    kind = _classify(exc)
    detail = sanitise(str(exc), password)
    return MonitorError(kind, f"{target.describe()}: {detail}")


# --- connections ----------------------------------------------------------------------

_local_slots: dict[tuple, threading.BoundedSemaphore] = {}
_local_slots_lock = threading.Lock()


def _slot(target: Target) -> threading.BoundedSemaphore:
    key = (target.host, target.port)
    with _local_slots_lock:
        sem = _local_slots.get(key)
        if sem is None:
            sem = _local_slots[key] = threading.BoundedSemaphore(1)
        return sem


def connection_kwargs(
    target: Target,
    password: str | None,
    limits: Limits,
    application_name: str = MONITOR_APP,
    read_only: bool = True,
) -> dict:
    options = (
        f"-c statement_timeout={int(limits.statement_timeout_ms)}"
        f" -c lock_timeout={int(limits.lock_timeout_ms)}"
        " -c idle_in_transaction_session_timeout=10000"
        # Timestamps in UTC, as poolboard's own connection has them: psycopg then gives both
        # datetime.timezone.utc, and comparing or hashing a snapshot's timestamps against
        # stored ones (the open episodes' keys, every snapshot) takes datetime's same-tzinfo
        # fast path instead of working out two UTC offsets each time (~2 us a key; a server
        # in Etc/UTC or Europe/Berlin gives a ZoneInfo).
        " -c TimeZone=UTC"
    )
    if read_only:
        options += " -c default_transaction_read_only=on"
    kwargs = dict(
        host=target.host,
        port=int(target.port),
        dbname=target.dbname,
        user=target.user,
        sslmode=target.sslmode or "prefer",
        connect_timeout=max(int(limits.connect_timeout), 1),
        application_name=application_name,
        options=options,
    )
    if password:
        kwargs["password"] = password
    return kwargs


def connect(
    target: Target,
    password: str | None,
    limits: Limits = Limits(),
    application_name: str = MONITOR_APP,
    read_only: bool = True,
) -> psycopg.Connection:
    """One bounded, self-identifying connection. Caller must close it."""

    try:
        conn = psycopg.connect(
            **connection_kwargs(target, password, limits, application_name, read_only),
            prepare_threshold=None,  # nothing left behind on poolers
        )
    except Exception as exc:
        raise _wrap(exc, target, password) from None
    for name in ("text", "varchar", "name", "bpchar"):
        conn.adapters.register_loader(name, _LenientTextLoader)
    return conn


class _LenientTextLoader(psycopg.adapt.Loader):
    """Decode text with replacement.

    A session in a SQL_ASCII database can put bytes that are not UTF-8 into
    pg_stat_activity.query; the server passes them through and psycopg's
    strict decoding would fail the whole snapshot.
    """

    def load(self, data) -> str:
        return bytes(data).decode("utf-8", errors="replace")


def _execute(cur: psycopg.Cursor, sql: str, params: tuple | dict | None = None):
    cur.execute(MARK + sql, params)
    return cur


def _send_server_state(cur: psycopg.Cursor) -> None:
    """The server's clock, our own pid, the settings the budget needs, the server's
    databases and whether it is a standby (and of whom), in one query (read by
    _read_server_state).

    current_setting() reads single settings; the pg_settings view would build a row for
    every one of the server's ~350 settings. reserved_connections exists from PG 16 on
    (missing_ok → NULL before). pg_stat_wal_receiver is read only on a server in recovery
    (a primary has no receiver); without pg_read_all_stats its columns read as NULL.
    """
    if cur.connection.info.server_version >= 110000:  # sender_host/sender_port: PG 11+
        sender = """CASE WHEN pg_is_in_recovery() THEN
                      (SELECT ARRAY[r.sender_host, r.sender_port::text] FROM pg_catalog.pg_stat_wal_receiver r LIMIT 1)
                    END"""
    else:
        sender = "NULL::text[]"
    _execute(
        cur,
        f"""SELECT now(), pg_backend_pid(),
                  current_setting('max_connections')::int,
                  current_setting('superuser_reserved_connections')::int,
                  current_setting('reserved_connections', true)::int,
                  pg_size_bytes(current_setting('track_activity_query_size')),
                  current_setting('server_version_num')::int,
                  ARRAY(SELECT datname::text FROM pg_catalog.pg_database
                        WHERE datallowconn AND NOT datistemplate ORDER BY datname),
                  pg_is_in_recovery(),
                  {sender}""",
    )


@dataclass(frozen=True)
class ServerState:
    taken_at: datetime
    own_pid: int
    settings: ServerSettings
    databases: list[str]
    in_recovery: bool
    sender_host: str | None
    sender_port: int | None


def _read_server_state(cur: psycopg.Cursor) -> ServerState:
    row = cur.fetchone()
    (taken_at, own_pid, max_conn, superuser_reserved, reserved, query_size, version_num, databases,
     in_recovery, sender) = row
    settings = ServerSettings(
        max_connections=max_conn,
        superuser_reserved_connections=superuser_reserved,
        reserved_connections=reserved,
        track_activity_query_size=int(query_size),
        server_version_num=version_num,
    )
    sender_host, sender_port = (list(sender) + [None, None])[:2] if sender else (None, None)
    return ServerState(
        taken_at, own_pid, settings, list(databases or ()), bool(in_recovery),
        sender_host or None, int(sender_port) if sender_port else None,
    )


def snapshot(
    target: Target,
    password: str | None = None,
    limits: Limits = Limits(),
    query_mode: str = "normalize",
    activity_view: str = "pg_catalog.pg_stat_activity",
) -> Snapshot:
    """Take one snapshot; see the module docstring for the guarantees.

    `activity_view` exists for tests (a wrapper view that sleeps or waits
    on a lock); it is never user input.
    """

    if not _IDENT.match(activity_view):
        raise ValueError("activity_view must be a plain [schema.]name")
    slot = _slot(target)
    if not slot.acquire(timeout=limits.connect_timeout):
        raise MonitorError("busy", f"{target.describe()}: another snapshot of this target is running in this process")
    try:
        t0 = time.perf_counter()
        conn = connect(target, password, limits)
        try:
            # One transaction (psycopg opens it; close() discards it): the server
            # reads pg_stat_activity once per transaction, so counts, rows and
            # now() describe the same instant.
            #
            # The three queries go in one pipeline (one round trip, not three: on a
            # loaded machine each costs a scheduling delay). Every read of
            # pg_stat_activity builds a row per backend (1 000 here and there), so the
            # monitor cap is counted by the counts query itself rather than by a scan of
            # its own, and checked before anything is stored; the session rows, already
            # read by then, are read-only and bounded.
            counts_cur, state_cur, sessions_cur = conn.cursor(), conn.cursor(), conn.cursor()
            with counts_cur, state_cur, sessions_cur:
                with conn.pipeline():
                    _send_counts(counts_cur, activity_view)
                    _send_server_state(state_cur)
                    _send_sessions(sessions_cur, activity_view, limits.session_limit)
                counts, total, monitors, ages, holds = _read_counts(counts_cur)
                if monitors > limits.max_monitor_connections:
                    raise MonitorError(
                        "too_many_monitors",
                        f"{target.describe()}: {monitors} poolboard-monitor sessions on the target"
                        f" (cap {limits.max_monitor_connections}); skipping this snapshot",
                    )
                state = _read_server_state(state_cur)
                sessions, truncated_after = _read_sessions(sessions_cur, limits.session_limit, state.settings,
                                                           query_mode)
            return Snapshot(
                taken_at=state.taken_at,
                settings=state.settings,
                counts=counts,
                total=total,
                sessions=sessions,
                sessions_truncated_after=truncated_after,
                own_pid=state.own_pid,
                elapsed_ms=(time.perf_counter() - t0) * 1000,
                ages=ages,
                holds=holds,
                databases=state.databases,
                in_recovery=state.in_recovery,
                sender_host=state.sender_host,
                sender_port=state.sender_port,
            )
        except MonitorError:
            raise
        except Exception as exc:
            raise _wrap(exc, target, password) from None
        finally:
            conn.close()
    finally:
        slot.release()


# now() minus each age edge, oldest first: width_bucket() of a timestamp against it is how
# many edges that much time ago is at or before, found by binary search once per session.
_CUTOFFS = "ARRAY[{}]::timestamptz[]".format(", ".join(
    f"now() - interval '{e} seconds'" for e in reversed(AGE_EDGES_S)
))
_N_EDGES = len(AGE_EDGES_S)

# One read of pg_stat_activity (each read builds a row per backend, the costly part) for
# two results, told apart by `kind`:
# - 'c': the counts per (database, application, user, address, state, wait event), with the
#   exact total, the poolboard-monitor sessions, and each group's ages as edge indexes
#   (idle sessions: how many edges their idle time exceeds; all sessions: how many edges
#   their age is within), added up per edge by _age_counts. Two array_agg() of small
#   integers cost less than shipping every age, or than a FILTER aggregate per edge.
# - 'h': the active sessions (not this one) per (database, query_id, application, user,
#   address): the connections each statement holds.
# Without pg_read_all_stats other roles' rows show no backend_type, state or
# application_name; they are counted (as state "") rather than under-count the budget.
# Auxiliary processes have no user.
_COUNTS_SQL = """
WITH cut AS (SELECT {cutoffs} AS t),
a AS MATERIALIZED (
    SELECT coalesce(s.datname::text, '') AS d, coalesce(s.application_name, '') AS app,
           coalesce(s.usename::text, '') AS u, coalesce(host(s.client_addr), '') AS addr,
           coalesce(s.state, '') AS st, coalesce(s.wait_event_type, '') AS w,
           CASE WHEN s.state = 'idle' THEN {n} - width_bucket(s.state_change, cut.t) END AS idle_k,
           width_bucket(s.backend_start, cut.t) AS young_k,
           CASE WHEN s.state = 'active' THEN s.query_start END AS active_since,
           CASE WHEN s.state = 'idle' THEN s.state_change END AS idle_since,
           CASE WHEN s.state = 'active' AND s.pid <> pg_backend_pid() THEN {query_id} END AS q,
           s.state = 'active' AND s.pid <> pg_backend_pid() AS holds
    FROM {view} AS s, cut
    WHERE s.backend_type = 'client backend' OR (s.backend_type IS NULL AND s.usesysid IS NOT NULL)
)
(SELECT 'c' AS kind, d, app, u, addr, st, w, count(*) AS n,
        sum(count(*)) OVER () AS total,
        sum(count(*) FILTER (WHERE app = %(monitor)s)) OVER () AS monitors,
        array_agg(idle_k) FILTER (WHERE idle_k > 0),
        array_agg(young_k) FILTER (WHERE young_k > 0),
        extract(epoch FROM now() - min(active_since))::float8,
        extract(epoch FROM now() - min(idle_since))::float8,
        NULL::bigint AS q
 FROM a
 GROUP BY d, app, u, addr, st, w
 ORDER BY n DESC, d, app, u, addr, st, w
 LIMIT %(limit)s)
UNION ALL
(SELECT 'h', d, app, u, addr, '', '', count(*), NULL, NULL, NULL, NULL, NULL, NULL, q
 FROM a
 WHERE holds
 GROUP BY d, q, app, u, addr
 ORDER BY count(*) DESC
 LIMIT %(limit)s)
"""


def _age_counts(ks: list[int] | None, top_down: bool) -> tuple[int, ...]:
    """Per edge, how many of these sessions: idle over it (ks = edges exceeded, top_down
    False: edge i counts k > i), or younger than it (ks = edges within, top_down True:
    edge i counts k >= N - i)."""
    hist = [0] * (_N_EDGES + 1)
    for k in ks or ():
        hist[min(k, _N_EDGES)] += 1
    above = [0] * (_N_EDGES + 2)
    for k in range(_N_EDGES, -1, -1):
        above[k] = above[k + 1] + hist[k]  # sessions with k' >= k
    if top_down:
        return tuple(above[_N_EDGES - i] for i in range(_N_EDGES))
    return tuple(above[i + 1] for i in range(_N_EDGES))


def _send_counts(cur: psycopg.Cursor, view: str) -> None:
    """The counts and query holds (read by _read_counts).

    query_id exists from PostgreSQL 14 on (NULL unless the server computes it,
    compute_query_id); before 14 it is NULL here. The version comes from the connection's
    startup, before any query.
    """
    query_id = "s.query_id" if cur.connection.info.server_version >= 140000 else "NULL::bigint"
    sql = _COUNTS_SQL.format(cutoffs=_CUTOFFS, n=_N_EDGES, query_id=query_id, view=view)
    _execute(cur, sql, {"monitor": MONITOR_APP, "limit": MAX_COUNT_GROUPS})


def _read_counts(cur: psycopg.Cursor) -> tuple[list[SessionCount], int, int, list[GroupAges], list[QueryHold]]:
    """Aggregated counts, their exact total, how many poolboard-monitor sessions there are,
    each count's ages (same order as the counts), and the query holds."""
    rows = cur.fetchall()
    counted = [r for r in rows if r[0] == "c"]
    counts = [SessionCount(*r[2:7], count=int(r[7]), datname=r[1]) for r in counted]
    ages = [GroupAges(_age_counts(r[10], False), _age_counts(r[11], True), r[12], r[13]) for r in counted]
    holds = [QueryHold(r[1], r[14], r[2], r[3], r[4], int(r[7])) for r in rows if r[0] == "h"]
    total = int(counted[0][8]) if counted else 0
    monitors = int(counted[0][9]) if counted else 0
    listed = sum(c.count for c in counts)
    if listed < total:  # more groups than MAX_COUNT_GROUPS: keep totals exact
        counts.append(SessionCount("(other)", "", "", "", "", total - listed))
        ages.append(GroupAges())
    return counts, total, monitors, ages, holds


def _send_sessions(cur: psycopg.Cursor, view: str, limit: int) -> None:
    """The non-idle sessions, oldest first, at most limit + 1 (read by _read_sessions)."""
    _execute(
        cur,
        f"""SELECT pid, backend_start, xact_start, query_start, state_change, state,
                   coalesce(wait_event_type, ''), coalesce(wait_event, ''),
                   coalesce(application_name, ''), coalesce(usename::text, ''),
                   coalesce(host(client_addr), ''), coalesce(datname::text, ''),
                   left(query, {QUERY_CHARS}),
                   coalesce(xact_start, query_start, state_change) AS sort_key
            FROM {view}
            WHERE pid <> pg_backend_pid()
              AND backend_type = 'client backend'
              AND state <> 'idle'
            ORDER BY sort_key NULLS LAST, pid
            LIMIT %s""",
        (limit + 1,),
    )


def _read_sessions(
    cur: psycopg.Cursor, limit: int, settings: ServerSettings, query_mode: str
) -> tuple[list[Session], datetime | None]:
    rows = cur.fetchall()
    truncated_after = None
    if len(rows) > limit:
        rows = rows[:limit]
        truncated_after = rows[-1][13]
    sessions = []
    for r in rows:
        text = querytext.clean(r[12], mode=query_mode, track_size=settings.track_activity_query_size)
        sessions.append(
            Session(
                pid=r[0],
                backend_start=r[1],
                xact_start=r[2],
                query_start=r[3],
                state_change=r[4],
                state=r[5] or "",
                wait_event_type=r[6],
                wait_event=r[7],
                application_name=r[8],
                usename=r[9],
                client_addr=r[10],
                datname=r[11],
                query=text.text,
                fingerprint=text.fingerprint,
            )
        )
    return sessions, truncated_after


def check_database(target: Target, password: str | None = None, limits: Limits = Limits()) -> CheckResult:
    """Reachability, server version, privileges and max_connections, for the admin."""

    try:
        conn = connect(target, password, limits)
    except MonitorError as exc:
        return CheckResult(ok=False, reachable=False, error=exc.message, error_kind=exc.kind)
    try:
        with conn.cursor() as cur:
            version, version_num, max_conn, read_all, superuser = _execute(
                cur,
                """SELECT current_setting('server_version'),
                          current_setting('server_version_num')::int,
                          current_setting('max_connections')::int,
                          pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),
                          (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)""",
            ).fetchone()
        conn.rollback()
    except Exception as exc:
        err = _wrap(exc, target, password)
        return CheckResult(ok=False, reachable=True, error=err.message, error_kind=err.kind)
    finally:
        conn.close()
    warnings = []
    if superuser:
        warnings.append(
            "the monitor role is a superuser; a least-privilege role with pg_monitor is enough (see README)"
        )
    elif not read_all:
        warnings.append(
            "missing pg_monitor / pg_read_all_stats: other roles' query text, state and timings are hidden"
            " (<insufficient privilege>); GRANT pg_monitor TO " + target.user
        )
    return CheckResult(
        ok=True,
        reachable=True,
        server_version=version,
        server_version_num=version_num,
        max_connections=max_conn,
        can_read_all_stats=bool(read_all or superuser),
        is_superuser=bool(superuser),
        warnings=warnings,
    )


def signal_backend(
    target: Target,
    password: str | None,
    pid: int,
    backend_start: datetime | None,
    action: str,
    limits: Limits = Limits(),
) -> bool:
    """Cancel or terminate one backend, with a separately supplied privileged credential.

    The pid must still belong to the same session (backend_start matches, and is
    required), so a pid reused since the page was rendered is left alone. Returns True
    when the server signalled the backend.
    """

    if action not in ("cancel", "terminate"):
        raise ValueError("action must be 'cancel' or 'terminate'")
    if backend_start is None:
        # A pid alone may by now name a later session that reused it.
        raise ValueError("backend_start is required: without it a reused pid cannot be told apart")
    fn = "pg_cancel_backend" if action == "cancel" else "pg_terminate_backend"
    conn = connect(target, password, limits, application_name=ADMIN_APP, read_only=False)
    try:
        with conn.cursor() as cur:
            row = _execute(
                cur,
                f"""SELECT {fn}(pid) FROM pg_catalog.pg_stat_activity
                    WHERE pid = %s AND backend_start = %s AND pid <> pg_backend_pid()""",
                (pid, backend_start),
            ).fetchone()
        conn.commit()
        return bool(row and row[0])
    except Exception as exc:
        raise _wrap(exc, target, password) from None
    finally:
        conn.close()
