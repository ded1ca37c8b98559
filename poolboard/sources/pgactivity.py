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


def _server_state(cur: psycopg.Cursor, view: str) -> tuple[datetime, int, ServerSettings, list[QueryHold], list[str]]:
    """The server's clock, our own pid, the settings the budget needs, the statements
    active sessions hold and the server's databases, in one query.

    current_setting() reads single settings; the pg_settings view would build a row for
    every one of the server's ~350 settings. reserved_connections exists from PG 16 on
    (missing_ok → NULL before). query_id exists from PG 14 on and is NULL unless the
    server computes it (compute_query_id): read through to_jsonb() of the row, it is
    NULL before 14 too, with no version check.
    """
    row = _execute(
        cur,
        f"""SELECT now(), pg_backend_pid(),
                  current_setting('max_connections')::int,
                  current_setting('superuser_reserved_connections')::int,
                  current_setting('reserved_connections', true)::int,
                  pg_size_bytes(current_setting('track_activity_query_size')),
                  current_setting('server_version_num')::int,
                  h.datnames, h.query_ids, h.apps, h.users, h.addrs, h.ns,
                  ARRAY(SELECT datname::text FROM pg_catalog.pg_database
                        WHERE datallowconn AND NOT datistemplate ORDER BY datname)
            FROM (SELECT array_agg(d) AS datnames, array_agg(q) AS query_ids, array_agg(a) AS apps,
                         array_agg(u) AS users, array_agg(c) AS addrs, array_agg(n) AS ns
                  FROM (SELECT coalesce(a.datname::text, '') AS d, (to_jsonb(a) ->> 'query_id')::bigint AS q,
                               coalesce(a.application_name, '') AS a, coalesce(a.usename::text, '') AS u,
                               coalesce(host(a.client_addr), '') AS c, count(*) AS n
                        FROM {view} AS a
                        WHERE a.state = 'active' AND a.backend_type = 'client backend'
                          AND a.pid <> pg_backend_pid()
                        GROUP BY 1, 2, 3, 4, 5
                        ORDER BY n DESC
                        LIMIT {MAX_COUNT_GROUPS}) AS g) AS h""",
    ).fetchone()
    taken_at, own_pid, max_conn, superuser_reserved, reserved, query_size, version_num = row[:7]
    datnames, query_ids, apps, users, addrs, ns, databases = row[7:]
    holds = [QueryHold(*h) for h in zip(datnames or (), query_ids or (), apps or (), users or (), addrs or (), ns or ())]
    settings = ServerSettings(
        max_connections=max_conn,
        superuser_reserved_connections=superuser_reserved,
        reserved_connections=reserved,
        track_activity_query_size=int(query_size),
        server_version_num=version_num,
    )
    return taken_at, own_pid, settings, holds, list(databases or ())


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
            with conn.cursor() as cur:
                # Every read of pg_stat_activity builds a row per backend (1 000 here
                # and there), so the monitor cap is counted by the counts query itself
                # rather than by a scan of its own, and checked before anything else.
                counts, total, monitors, ages = _counts(cur, activity_view)
                if monitors > limits.max_monitor_connections:
                    raise MonitorError(
                        "too_many_monitors",
                        f"{target.describe()}: {monitors} poolboard-monitor sessions on the target"
                        f" (cap {limits.max_monitor_connections}); skipping this snapshot",
                    )
                taken_at, own_pid, settings, holds, databases = _server_state(cur, activity_view)
                sessions, truncated_after = _sessions(cur, activity_view, limits.session_limit, settings, query_mode)
            conn.rollback()
            return Snapshot(
                taken_at=taken_at,
                settings=settings,
                counts=counts,
                total=total,
                sessions=sessions,
                sessions_truncated_after=truncated_after,
                own_pid=own_pid,
                elapsed_ms=(time.perf_counter() - t0) * 1000,
                ages=ages,
                holds=holds,
                databases=databases,
            )
        except MonitorError:
            raise
        except Exception as exc:
            raise _wrap(exc, target, password) from None
        finally:
            conn.close()
    finally:
        slot.release()


# Counted per group by the server, one FILTER aggregate per edge: a few integers per group
# instead of every session's age (lib.session_ages says why and how they are read).
_IDLE_OVER = "ARRAY[{}]::int[]".format(", ".join(
    f"count(*) FILTER (WHERE state = 'idle' AND state_change < now() - interval '{e} seconds')" for e in AGE_EDGES_S
))
_YOUNG_UNDER = "ARRAY[{}]::int[]".format(", ".join(
    f"count(*) FILTER (WHERE backend_start > now() - interval '{e} seconds')" for e in AGE_EDGES_S
))


def _counts(cur: psycopg.Cursor, view: str) -> tuple[list[SessionCount], int, int, list[GroupAges]]:
    """Aggregated counts, their exact total, how many poolboard-monitor sessions there are,
    and each count's ages (same order as the counts)."""
    rows = _execute(
        cur,
        f"""SELECT coalesce(application_name, ''), coalesce(usename::text, ''),
                   coalesce(host(client_addr), ''), coalesce(state, ''),
                   coalesce(wait_event_type, ''), count(*) AS n,
                   sum(count(*)) OVER () AS total,
                   sum(count(*) FILTER (WHERE application_name = %s)) OVER () AS monitors,
                   {_IDLE_OVER},
                   {_YOUNG_UNDER},
                   max(extract(epoch FROM now() - query_start)::float8) FILTER (WHERE state = 'active'),
                   coalesce(datname::text, ''),
                   max(extract(epoch FROM now() - state_change)::float8) FILTER (WHERE state = 'idle')
            FROM {view}
            -- Without pg_read_all_stats other roles' rows show no backend_type,
            -- state or application_name; count them (as state "") rather than
            -- under-count the budget. Auxiliary processes have no user.
            WHERE backend_type = 'client backend' OR (backend_type IS NULL AND usesysid IS NOT NULL)
            GROUP BY 12, 1, 2, 3, 4, 5
            ORDER BY n DESC, 12, 1, 2, 3, 4, 5
            LIMIT %s""",
        (MONITOR_APP, MAX_COUNT_GROUPS),
    ).fetchall()
    counts = [SessionCount(*r[:5], count=int(r[5]), datname=r[11]) for r in rows]
    ages = [GroupAges(tuple(r[8]), tuple(r[9]), r[10], r[12]) for r in rows]
    total = int(rows[0][6]) if rows else 0
    monitors = int(rows[0][7]) if rows else 0
    listed = sum(c.count for c in counts)
    if listed < total:  # more groups than MAX_COUNT_GROUPS: keep totals exact
        counts.append(SessionCount("(other)", "", "", "", "", total - listed))
        ages.append(GroupAges())
    return counts, total, monitors, ages


def _sessions(
    cur: psycopg.Cursor, view: str, limit: int, settings: ServerSettings, query_mode: str
) -> tuple[list[Session], datetime | None]:
    rows = _execute(
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
    ).fetchall()
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
