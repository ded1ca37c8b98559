"""The database side: monitored PostgreSQL servers and what their snapshots showed.

What is monitored is a server (MonitoredServer: one connection to any database on it),
because max_connections and pg_stat_activity are server-wide; every count, episode and
live session carries the database it is on (datname), and ServerDatabase lists the
databases seen on each server.

A snapshot keeps aggregated counts, not session rows; long-held sessions are kept
as episodes, tracked across snapshots (poolboard.lib.episodes). Query text is
stored normalised (poolboard.lib.querytext), never raw unless a setting says so.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.contrib.postgres.aggregates import ArrayAgg
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from poolboard.fleet.models import Service, validate_env_name
from poolboard.lib import episodes as ep
from poolboard.lib import sizing as sizing_lib
from poolboard.lib import standby as standby_lib
from poolboard.lib.attribution import Rule
from poolboard.lib.budget import Budget, ServerSettings, compute_budget, state_breakdown
from poolboard.lib.pools import sum_present
from poolboard.sources import pgactivity

SSLMODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


def snapshot_interval() -> int:
    return int(getattr(settings, "DATABASE_SNAPSHOT_INTERVAL", 10))


def query_text_mode() -> str:
    return getattr(settings, "QUERY_TEXT_MODE", "normalize")


def backend_signals_allowed() -> bool:
    return bool(getattr(settings, "ALLOW_BACKEND_SIGNALS", False))


def _validate_file_path(value: str) -> None:
    if value and not value.startswith("/"):
        raise ValidationError("Give an absolute path to a file holding the password.")


class SecretError(Exception):
    pass


class SignalRefused(Exception):
    """Cancel/terminate refused before anything was sent to the server; str() says why."""


def _parse_backend_start(value: str | None) -> datetime | None:
    try:
        return parse_datetime(value or "")
    except ValueError:
        return None


def read_secret(env_name: str, file_path: str, what: str) -> str | None:
    """The secret from an env var or a file; messages name where, never what."""

    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise SecretError(f"{what}: environment variable {env_name} is not set")
        return value
    if file_path:
        try:
            return Path(file_path).read_text().strip()
        except OSError as exc:
            raise SecretError(f"{what}: file {file_path} cannot be read ({exc.strerror})") from None
    return None


class JSONTextField(models.JSONField):
    """A JSONField stored as PostgreSQL json (the text, checked on write), not jsonb.

    For a value only ever written and read whole, like the live session list
    that every snapshot rewrites: the server skips decomposing ~100 kB into
    jsonb each time. No jsonb operators or indexes on it.
    """

    def db_type(self, connection) -> str:
        return "json"

    def from_db_value(self, value, expression, connection):
        if value is None or not isinstance(value, str):  # psycopg decodes json itself
            return value
        return super().from_db_value(value, expression, connection)


class MonitoredServerQuerySet(models.QuerySet):
    def enabled(self):
        return self.filter(enabled=True)

    def standby_errors(self, max_connections: dict[int, int] | None = None) -> dict[int, str]:
        """{standby server id: the error} for the servers of this QuerySet (or list, already read)
        that are in recovery with a max_connections below their primary's.

        A standby's primary is the one configured on it, else the monitored server at its WAL
        receiver's sender. Values are each server's newest snapshot's; `max_connections`
        ({server id: value}) saves reading those the caller has. No query when no server is
        in recovery, at most three whatever the number of servers.
        """
        return standby_errors([s for s in self if s.in_recovery], max_connections)


def standby_errors(standbys, max_connections: dict[int, int] | None = None) -> dict[int, str]:
    """MonitoredServerQuerySet.standby_errors for servers already read (all in recovery)."""
    if not standbys:
        return {}
    servers = {s.pk: s for s in MonitoredServer.objects.only("id", "name", "host", "port")}
    addresses = [(s.pk, s.host, s.port) for s in servers.values()]
    pairs = []
    for standby in standbys:
        primary_id = standby.primary_id or standby_lib.sender_server(
            standby.wal_sender_host, standby.wal_sender_port, addresses)
        if primary_id is not None and primary_id != standby.pk and primary_id in servers:
            pairs.append((standby, servers[primary_id]))
    values = dict(max_connections or {})
    missing = {s.pk for pair in pairs for s in pair} - values.keys()
    if missing:
        values.update(
            Snapshot.objects.filter(server_id__in=missing).order_by("server_id", "-slot").distinct("server_id")
            .values_list("server_id", "max_connections")
        )
    errors = {}
    for standby, primary in pairs:
        if standby.pk in values and primary.pk in values:
            error = sizing_lib.standby_error(values[primary.pk], values[standby.pk], standby.name, primary.name)
            if error:
                errors[standby.pk] = error
    return errors


class MonitoredServer(models.Model):
    """One PostgreSQL server (host, port); `dbname` is only the database the monitor connects to."""

    name = models.SlugField(max_length=100, unique=True)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(default=5432)
    dbname = models.CharField(
        "connect to database", max_length=200, default="postgres",
        help_text="Any database on the server: pg_stat_activity shows the sessions of all of them.",
    )
    user = models.CharField(max_length=200, default="poolboard_mon")
    sslmode = models.CharField(max_length=20, default="prefer", choices=[(m, m) for m in SSLMODES])
    password_env = models.CharField(
        max_length=100, blank=True, validators=[validate_env_name],
        help_text="Name of an environment variable holding the password (the password itself is never stored).",
    )
    password_file = models.CharField(
        max_length=500, blank=True, validators=[_validate_file_path],
        help_text="Or: absolute path of a file holding the password.",
    )
    enabled = models.BooleanField(default=True)

    idle_in_transaction_s = models.PositiveIntegerField(
        "idle in transaction threshold (s)", default=60, help_text="An idle-in-transaction episode starts after this long idle (from state_change)."
    )
    query_s = models.PositiveIntegerField("long query threshold (s)", default=30, help_text="From query_start, active sessions only.")
    transaction_s = models.PositiveIntegerField("long transaction threshold (s)", default=300, help_text="From xact_start.")

    # Cancel/terminate (off unless ALLOW_BACKEND_SIGNALS is set): a separate, privileged login.
    admin_user = models.CharField(
        max_length=200, blank=True, help_text="Role allowed to cancel/terminate backends (pg_signal_backend). Blank: disabled."
    )
    admin_password_env = models.CharField(max_length=100, blank=True, validators=[validate_env_name])
    admin_password_file = models.CharField(max_length=500, blank=True, validators=[_validate_file_path])

    created = models.DateTimeField(default=timezone.now)
    # The newest snapshot, kept on the row so pages read one row (like fleet.Pool).
    last_snapshot_at = models.DateTimeField(null=True, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_kind = models.CharField(max_length=30, blank=True)
    server_version = models.CharField(max_length=100, blank=True)
    last_sessions = JSONTextField(default=list, blank=True, editable=False)
    last_sessions_truncated = models.BooleanField(default=False, editable=False)

    # Hot standbys: a standby's max_connections must be at least its primary's.
    primary = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="standbys",
        verbose_name="hot standby of",
        help_text="The monitored server this one replicates from. Blank: found from its WAL receiver's sender "
                  "(pg_stat_wal_receiver, readable with pg_read_all_stats) when that is a monitored server.",
    )
    # From the newest snapshot: pg_is_in_recovery() and the WAL receiver's upstream.
    in_recovery = models.BooleanField(default=False, db_default=False, editable=False)
    wal_sender_host = models.CharField(max_length=255, blank=True, default="", db_default="", editable=False)
    wal_sender_port = models.PositiveIntegerField(null=True, blank=True, editable=False)

    objects = MonitoredServerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        permissions = [("signal_backend", "Can cancel or terminate a backend on a monitored server")]
        constraints = [
            # One row per server: two rows would record the same sessions and episodes twice.
            models.UniqueConstraint(fields=["host", "port"], name="monitoredserver_host_port"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.password_env and self.password_file:
            raise ValidationError("Give the password as an environment variable or a file, not both.")
        if self.admin_password_env and self.admin_password_file:
            raise ValidationError("Give the admin password as an environment variable or a file, not both.")
        if self.primary_id is not None and self.primary_id == self.pk:
            raise ValidationError({"primary": "A server cannot be a standby of itself."})

    def standby_error(self) -> str | None:
        """The error when this server is a hot standby with a max_connections below its primary's."""
        return standby_errors([self] if self.in_recovery else []).get(self.pk)

    def target(self, user: str | None = None) -> pgactivity.Target:
        return pgactivity.Target(
            host=self.host, port=self.port, dbname=self.dbname, user=user or self.user, sslmode=self.sslmode, name=self.name
        )

    def password(self) -> str | None:
        return read_secret(self.password_env, self.password_file, f"{self.name} password")

    def admin_password(self) -> str | None:
        return read_secret(self.admin_password_env, self.admin_password_file, f"{self.name} admin password")

    def limits(self) -> pgactivity.Limits:
        return pgactivity.Limits(max_monitor_connections=int(getattr(settings, "MAX_MONITOR_CONNECTIONS", 3)))

    def thresholds(self) -> ep.Thresholds:
        return ep.Thresholds(
            idle_in_transaction_s=self.idle_in_transaction_s, query_s=self.query_s, transaction_s=self.transaction_s
        )

    def check_connection(self) -> pgactivity.CheckResult:
        try:
            password = self.password()
        except SecretError as exc:
            return pgactivity.CheckResult(ok=False, reachable=False, error=str(exc), error_kind="config")
        return pgactivity.check_database(self.target(), password, self.limits())

    def signals_enabled(self) -> bool:
        return backend_signals_allowed() and bool(self.admin_user)

    def session_to_signal(self, pid: int, backend_start: str | None) -> tuple[dict, datetime]:
        """The session `pid` as the newest snapshot saw it, and its backend_start, if it may be signalled.

        PostgreSQL reuses pids, so a pid alone may name a later connection than the one
        on the page. A session is signalled only when its backend_start is known (and
        pgactivity.signal_backend checks it again on the server); otherwise SignalRefused.
        """
        seen = [s for s in self.last_sessions or [] if s.get("pid") == pid]
        if not seen:
            raise SignalRefused(f"Session {pid} is no longer in the newest snapshot; nothing was done.")
        started = _parse_backend_start(backend_start)
        if started is None or all(_parse_backend_start(s.get("backend_start")) is None for s in seen):
            raise SignalRefused(
                f"Session {pid} has no known start time (backend_start), so it cannot be told apart from a later "
                f"session that reuses pid {pid}; nothing was done. poolboard's monitoring role needs "
                "pg_read_all_stats (or pg_monitor) to see other roles' start times."
            )
        for session in seen:
            if _parse_backend_start(session.get("backend_start")) == started:
                return session, started
        raise SignalRefused(
            f"Pid {pid} now belongs to another session (started at a different time); nothing was done."
        )

    def stale_since(self, now: datetime) -> datetime | None:
        if self.last_snapshot_at is None:
            return None
        if self.last_error_at and self.last_error_at > self.last_snapshot_at:
            return self.last_snapshot_at
        if (now - self.last_snapshot_at).total_seconds() > 3 * snapshot_interval():
            return self.last_snapshot_at
        return None

    def database_connections(self, snapshot: Snapshot | None) -> dict[str, int]:
        """{datname: sessions in `snapshot`} for the databases listed on this server and any
        the snapshot saw sessions on. Reads the prefetched self.databases and snapshot.counts."""
        connections: dict[str, int] = {d.datname: 0 for d in self.databases.all()}
        for c in snapshot.counts.all() if snapshot else ():
            connections[c.datname] = connections.get(c.datname, 0) + c.count
        return connections

    def latest_snapshot(self) -> Snapshot | None:
        """The newest snapshot, its counts (with their services) prefetched for budget()."""
        return self.snapshots.order_by("-slot").prefetch_related(_counts_with_services()).first()


class ServerDatabase(models.Model):
    """A database seen on a monitored server (in pg_database or in its sessions)."""

    server = models.ForeignKey(MonitoredServer, on_delete=models.CASCADE, related_name="databases")
    datname = models.CharField("database", max_length=200)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["server", "datname"]
        constraints = [models.UniqueConstraint(fields=["server", "datname"], name="serverdatabase_server_datname")]

    def __str__(self) -> str:
        return f"{self.datname} on {self.server_id}"


class AttributionRuleQuerySet(models.QuerySet):
    def for_server(self, server: MonitoredServer | int):
        """The enabled rules for sessions on `server` (its own and every server's), in order,
        as rows of lib.attribution.Rule's fields."""
        rules = self.filter(enabled=True).filter(models.Q(server=server) | models.Q(server=None))
        return rules.values_list("service__name", "application_name", "usename", "client_addr")


class AttributionRule(models.Model):
    """Session → service, first match by position; blank fields match anything."""

    position = models.PositiveIntegerField(default=100, help_text="Rules are tried in ascending order.")
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="attribution_rules")
    server = models.ForeignKey(
        MonitoredServer, null=True, blank=True, on_delete=models.CASCADE, help_text="Blank: every server."
    )
    application_name = models.CharField(max_length=200, blank=True, help_text="Glob pattern, e.g. billing-*")
    usename = models.CharField("user", max_length=200, blank=True)
    client_addr = models.CharField(max_length=100, blank=True, help_text="CIDR, e.g. 10.1.0.0/16")
    enabled = models.BooleanField(default=True)

    objects = AttributionRuleQuerySet.as_manager()

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        parts = [f"app~{self.application_name}" if self.application_name else "",
                 f"user={self.usename}" if self.usename else "",
                 f"addr in {self.client_addr}" if self.client_addr else ""]
        return f"{' & '.join(p for p in parts if p)} → {self.service_id and self.service.name}"

    def clean(self) -> None:
        try:
            self.to_rule("x")
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    def to_rule(self, service_name: str) -> Rule:
        return Rule(service_name, self.application_name, self.usename, self.client_addr)


def _counts_with_services() -> models.Prefetch:
    return models.Prefetch("counts", queryset=SessionCount.objects.select_related("service"))


class SnapshotQuerySet(models.QuerySet):
    def prune(self, before: datetime, batch: int = 2000) -> int:
        """Delete the snapshots taken before `before`, with their counts and query holds, a
        batch at a time (short transactions; the snapshot_taken_at index finds them).
        Returns how many snapshots went. Raw SQL: the ORM's cascade would load every row."""
        from django.db import connection, transaction

        snapshots, counts, holds = (
            connection.ops.quote_name(m._meta.db_table) for m in (Snapshot, SessionCount, QueryHold)
        )
        deleted = 0
        while True:
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute(
                    f"SELECT array_agg(id) FROM (SELECT id FROM {snapshots} WHERE taken_at < %s LIMIT %s) AS s",
                    [before, batch],
                )
                ids = cur.fetchone()[0] or []
                if not ids:
                    return deleted
                cur.execute(f"DELETE FROM {counts} WHERE snapshot_id = ANY(%s)", [ids])
                cur.execute(f"DELETE FROM {holds} WHERE snapshot_id = ANY(%s)", [ids])
                cur.execute(f"DELETE FROM {snapshots} WHERE id = ANY(%s)", [ids])
            deleted += len(ids)

    def newest_per_server(self, servers) -> dict[int, Snapshot]:
        """Each server's newest snapshot, its counts (with their services) prefetched.

        Two queries whatever the number of servers: DISTINCT ON (server_id), which
        the unique (server, slot) index serves, and one for all their counts.
        """
        newest = (
            self.filter(server__in=servers)
            .order_by("server_id", "-slot")
            .distinct("server_id")
            .prefetch_related(_counts_with_services())
        )
        return {snap.server_id: snap for snap in newest}

    def service_side(self, service: Service) -> dict:
        """The database side of one service: its sessions in the newest snapshot of each enabled server.

        Plain data for the service page's panel:
        {"rows": [{"server": name, "taken_at", "states": StateBreakdown, "oldest_xact_s", "databases"}],
         "pool_in_use", "pool_max", "open_episodes"}; a server where the service has
        no session is left out. Five queries whatever the number of servers: the
        servers, their newest snapshots, this service's counts in those, its pools
        and its open problems (episodes of one session's transaction count once).
        """
        dbs = list(MonitoredServer.objects.enabled())
        newest = self.filter(server__in=dbs).order_by("server_id", "-slot").distinct("server_id")
        snapshots = {snap.server_id: snap for snap in newest}
        by_snapshot: dict[int, dict[str, int]] = {}
        datnames: dict[int, set[str]] = {}
        mine = SessionCount.objects.filter(service=service, snapshot__in=[snap.pk for snap in snapshots.values()])
        for snapshot_id, state, n, datname in mine.values_list("snapshot_id", "state", "count", "datname"):
            states = by_snapshot.setdefault(snapshot_id, {})
            states[state] = states.get(state, 0) + n
            datnames.setdefault(snapshot_id, set()).add(datname)
        rows = []
        for db in dbs:
            snap = snapshots.get(db.pk)
            if snap is None:
                continue
            live = [s for s in db.last_sessions or [] if s.get("service") == service.name]
            states = state_breakdown(by_snapshot.get(snap.pk, {}))
            if not states.total and not live:
                continue
            oldest = max((s["age_s"] for s in live if s.get("xact_start") and s.get("age_s") is not None), default=None)
            rows.append({"server": db.name, "taken_at": snap.taken_at, "states": states, "oldest_xact_s": oldest,
                         "databases": sorted(datnames.get(snap.pk, set()) - {""})})
        pools = list(service.pools.all())
        return {
            "rows": rows,
            "pool_in_use": sum_present(p.in_use for p in pools),
            "pool_max": sum_present(p.max for p in pools),
            "open_episodes": Episode.objects.open().filter(service=service).problem_count(),
        }


class Snapshot(models.Model):
    # No single-column index: the unique (server, slot) index leads with server.
    server = models.ForeignKey(MonitoredServer, on_delete=models.CASCADE, related_name="snapshots", db_index=False)
    # Slot = server time // interval: a redelivered task cannot store the same slot twice.
    slot = models.BigIntegerField()
    taken_at = models.DateTimeField(help_text="The monitored server's now()")
    created = models.DateTimeField(default=timezone.now)
    total = models.PositiveIntegerField()
    max_connections = models.PositiveIntegerField()
    superuser_reserved_connections = models.PositiveIntegerField()
    reserved_connections = models.PositiveIntegerField(null=True, blank=True)  # PostgreSQL 16+
    in_recovery = models.BooleanField(default=False, db_default=False)  # pg_is_in_recovery(): a hot standby
    elapsed_ms = models.FloatField(default=0)
    sessions_listed = models.PositiveIntegerField(default=0)

    objects = SnapshotQuerySet.as_manager()

    class Meta:
        # (The constraint keeps its name from when the FK was "database".)
        constraints = [models.UniqueConstraint(fields=["server", "slot"], name="snapshot_database_slot")]
        # The unique index (server, slot) also serves "newest snapshot of a server"
        # and one server's history ranges: slot grows with taken_at.
        indexes = [
            # Every server's snapshots in a time window (the diagnosis reads the server
            # side of many services at once, diagnosis.inputs.server_points): without it
            # that read scans each service's whole history. One entry per snapshot.
            models.Index(fields=["taken_at"], name="snapshot_taken_at"),
        ]

    def __str__(self) -> str:
        return f"{self.server_id} at {self.taken_at:%Y-%m-%d %H:%M:%S}"

    def server_settings(self) -> ServerSettings:
        return ServerSettings(
            max_connections=self.max_connections,
            superuser_reserved_connections=self.superuser_reserved_connections,
            reserved_connections=self.reserved_connections,
        )

    def budget(self) -> Budget:
        """The server's connections by the service each count was attributed to when stored.

        Reads self.counts.all() with each count's service: prefetch them
        (newest_per_server, MonitoredServer.latest_snapshot) to keep it one query.
        """
        return compute_budget(
            self.server_settings(), [(c, c.service.name if c.service_id else None) for c in self.counts.all()]
        )


class SessionCount(models.Model):
    snapshot = models.ForeignKey(Snapshot, on_delete=models.CASCADE, related_name="counts")
    datname = models.CharField("database", max_length=200, blank=True, default="", db_default="")
    application_name = models.CharField(max_length=200, blank=True)
    usename = models.CharField(max_length=200, blank=True)
    client_addr = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=50, blank=True)
    wait_event_type = models.CharField(max_length=50, blank=True)
    count = models.PositiveIntegerField()
    # Attributed when stored; NULL = unattributed or poolboard's own.
    service = models.ForeignKey(
        Service, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )  # indexed by sessioncount_service, which leads with it
    # For the diagnosis (sources.pgactivity.GroupAges), counted against
    # lib.session_ages.AGE_EDGES_S: idle sessions idle for more than each edge (a hoarded
    # connection sits idle on the server), sessions opened less than each edge ago (churn);
    # the oldest active query's age and the longest idle time.
    idle_over = ArrayField(models.PositiveIntegerField(), default=list, blank=True)
    young_under = ArrayField(models.PositiveIntegerField(), default=list, blank=True)
    longest_query_s = models.FloatField(null=True, blank=True)
    longest_idle_s = models.FloatField(null=True, blank=True)

    class Meta:
        indexes = [
            # The service page's database panel: this service's counts in the newest snapshots.
            models.Index(fields=["service", "snapshot"], name="sessioncount_service"),
        ]
        # (snapshot) lookups for the database page use the FK index Django creates.

    def __str__(self) -> str:
        return f"{self.count} × {self.application_name or '?'} {self.state or 'unknown'}"


class QueryHold(models.Model):
    """Per snapshot: how many active sessions run one statement (datname, query_id) for one
    application, i.e. how many connections of that service's pool the statement holds now.

    query_id is pg_stat_activity.query_id (PostgreSQL 14+, with compute_query_id), the same
    id as pg_stat_statements.queryid; NULL when the server does not compute it.
    """

    snapshot = models.ForeignKey(Snapshot, on_delete=models.CASCADE, related_name="holds")
    datname = models.CharField("database", max_length=200, blank=True)
    query_id = models.BigIntegerField(null=True, blank=True)
    application_name = models.CharField(max_length=200, blank=True)
    # Attributed when stored, like SessionCount.service.
    service = models.ForeignKey(
        Service, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    count = models.PositiveIntegerField()

    class Meta:
        indexes = [
            # The statement pages: one statement's holds over time.
            models.Index(fields=["query_id", "snapshot"], name="queryhold_query"),
            # The service page: what holds this service's connections.
            models.Index(fields=["service", "snapshot"], name="queryhold_service"),
        ]

    def __str__(self) -> str:
        return f"{self.count} × query {self.query_id} ({self.application_name or '?'})"


class QueryFingerprint(models.Model):
    fingerprint = models.CharField(max_length=16, unique=True)
    text = models.TextField(help_text="Normalised text (literals and comments removed), or a placeholder.")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    def __str__(self) -> str:
        return self.fingerprint


class Percentile(models.Aggregate):
    """percentile_cont(q) WITHIN GROUP (ORDER BY expr): PostgreSQL's exact percentile."""

    function = "percentile_cont"
    output_field = models.FloatField()

    def __init__(self, expression, q: float, **extra):
        self.q = float(q)
        super().__init__(expression, **extra)

    def as_sql(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        extra_sql = ""
        if self.filter is not None:
            fsql, fparams = compiler.compile(self.filter)
            extra_sql = f" FILTER (WHERE {fsql})"
            params = (*params, *fparams)
        return f"percentile_cont({self.q}) WITHIN GROUP (ORDER BY {sql}){extra_sql}", params


SLOW_QUERY_ORDER = {"max": "-max_s", "p95": "-p95_s", "count": "-episodes", "last_seen": "-last"}


class EpisodeQuerySet(models.QuerySet):
    def open(self):
        return self.filter(ended=None)

    def problems(self):
        """One row per problem, (server_id, pid, backend_start, xact): the episodes of one
        session's one transaction (idle in transaction, long transaction, a long query in
        it) are one problem. Rows stored before xact_start was kept fall back to `started`."""
        return (
            self.annotate(problem_xact=Coalesce("xact_start", "started"))
            .values_list("server_id", "pid", "backend_start", "problem_xact")
            .order_by()
            .distinct()
        )

    def problem_count(self) -> int:
        return self.problems().count()

    def open_problems_by_server(self) -> dict[int, int]:
        """{server_id: open problems}, one query."""
        out: dict[int, int] = {}
        for server_id, *_ in self.open().problems():
            out[server_id] = out.get(server_id, 0) + 1
        return out

    def long_query_counts(self, keys, since: datetime, until: datetime) -> dict[tuple[int, int], int]:
        """Long-query episodes first seen in (since, until] per (server id, fingerprint id) of `keys`
        (the slow-queries page's "episodes it caused"). One query."""
        keys = set(keys)
        if not keys:
            return {}
        rows = (
            self.filter(kind=ep.LONG_QUERY, first_seen__gt=since, first_seen__lte=until,
                        server_id__in={k[0] for k in keys}, query_id__in={k[1] for k in keys})
            .values_list("server_id", "query_id")
            .annotate(n=models.Count("id"))
        )
        return {(server_id, query_id): n for server_id, query_id, n in rows if (server_id, query_id) in keys}

    def slow_queries(self, since: datetime, sort: str = "max", server=None, service=None, datname: str = ""):
        """Long-query episodes since `since`, one row per query fingerprint, sorted by `sort`."""
        episodes = self.filter(kind=ep.LONG_QUERY, first_seen__gte=since, query__isnull=False)
        if server is not None:
            episodes = episodes.filter(server=server)
        if datname:
            episodes = episodes.filter(datname=datname)
        if service is not None:
            episodes = episodes.filter(service=service)
        return (
            episodes.values("query", "query__fingerprint", "query__text")
            .annotate(
                episodes=models.Count("id"),
                max_s=models.Max("peak_age_s"),
                p95_s=Percentile("peak_age_s", 0.95),
                last=models.Max("last_seen"),
                open=models.Count("id", filter=models.Q(ended=None)),
                services=ArrayAgg("service__name", distinct=True, filter=models.Q(service__isnull=False), default=[]),
            )
            .order_by(SLOW_QUERY_ORDER[sort], "query")
        )


class Episode(models.Model):
    KIND_CHOICES = [
        (ep.IDLE_IN_TRANSACTION, "idle in transaction"),
        (ep.LONG_TRANSACTION, "long transaction"),
        (ep.LONG_QUERY, "long query"),
    ]
    # The foreign keys have no single-column indexes of their own: the composite
    # indexes below lead with each of them, and every index is rewritten by each
    # non-HOT update of the open episodes (every snapshot).
    server = models.ForeignKey(MonitoredServer, on_delete=models.CASCADE, related_name="episodes", db_index=False)
    kind = models.CharField(max_length=30, choices=KIND_CHOICES)
    pid = models.IntegerField()
    backend_start = models.DateTimeField(null=True, blank=True)
    started = models.DateTimeField(help_text="state_change, xact_start or query_start, by kind")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    ended = models.DateTimeField(
        null=True, blank=True,
        help_text="First snapshot that no longer saw it (gone, idle or on another query): it ended by then",
    )
    # The session's transaction when first seen: with (server, pid, backend_start) it names
    # the one problem an idle-in-transaction and a long-transaction episode both describe.
    xact_start = models.DateTimeField(null=True, blank=True)
    peak_age_s = models.FloatField()
    application_name = models.CharField(max_length=200, blank=True)
    usename = models.CharField(max_length=200, blank=True)
    client_addr = models.CharField(max_length=100, blank=True)
    datname = models.CharField(max_length=200, blank=True)
    state = models.CharField(max_length=50, blank=True)
    wait_event = models.CharField(max_length=100, blank=True)
    service = models.ForeignKey(
        Service, null=True, blank=True, on_delete=models.SET_NULL, related_name="db_episodes", db_index=False
    )
    query = models.ForeignKey(
        QueryFingerprint, null=True, blank=True, on_delete=models.SET_NULL, related_name="episodes", db_index=False
    )

    objects = EpisodeQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["server", "kind", "pid", "backend_start", "started"], name="episode_identity"
            )
        ]
        indexes = [
            # store_snapshot(): the open episodes of one server, read every snapshot.
            models.Index(fields=["server"], condition=models.Q(ended=None), name="episode_open"),
            # The slow-queries page and its drill-down: episodes by fingerprint, newest first.
            models.Index(fields=["query", "-first_seen"], name="episode_query"),
            # /api/v1/episodes/?service= and the service panel.
            models.Index(fields=["service", "-first_seen"], name="episode_service"),
            # /api/v1/episodes/ and the server page's recent episodes.
            models.Index(fields=["server", "-first_seen"], name="episode_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} pid {self.pid} from {self.started:%Y-%m-%d %H:%M:%S}"

    def key(self) -> ep.EpisodeKey:
        return ep.EpisodeKey(self.kind, self.pid, self.backend_start, self.started)

    @property
    def duration_s(self) -> float:
        """At least this long: its age when last seen."""
        return self.peak_age_s

    @property
    def duration_max_s(self) -> float | None:
        """At most this long: it was over by the first snapshot that no longer saw it
        (None while open). Snapshots come every DATABASE_SNAPSHOT_INTERVAL seconds, so
        the truth lies between duration_s and this."""
        if self.ended is None:
            return None
        return max((self.ended - self.started).total_seconds(), self.peak_age_s)


class BackendAction(models.Model):
    """Audit entry for every cancel/terminate attempt, successful or not."""

    server = models.ForeignKey(MonitoredServer, on_delete=models.PROTECT, related_name="actions")
    created = models.DateTimeField(default=timezone.now)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    action = models.CharField(max_length=20, choices=[("cancel", "cancel"), ("terminate", "terminate")])
    pid = models.IntegerField()
    backend_start = models.DateTimeField(null=True, blank=True)
    application_name = models.CharField(max_length=200, blank=True)
    usename = models.CharField(max_length=200, blank=True)
    query_text = models.TextField(blank=True)
    succeeded = models.BooleanField(default=False)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.action} pid {self.pid} by {self.user_id}"
