"""Statement statistics from pg_stat_statements: what each normalised statement cost, per interval.

- Statement: one pg_stat_statements entry of a monitored server (database, role, queryid,
  toplevel), its text through the same redaction and fingerprint as episodes
  (databases.QueryFingerprint), and the counters of the newest reading (the baseline the
  next interval is measured from).
- StatementSample: one reading of one server, unique per (server, slot) so a redelivered task
  stores nothing twice; it carries the reading's notes (reset, eviction).
- StatementInterval: the deltas of one statement between two readings (kept 14 days);
  StatementHourly: the same summed per hour (kept 400 days).
- StatementsStatus: per server, whether pg_stat_statements can be read and how to enable it
  (`server.statements_status`; StatementsStatus.for_server() when there is none yet).

The pure maths (deltas, resets, hours) is poolboard.lib.statements; reading is
poolboard.sources.pgstatements; storing is poolboard.statements.collection.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, models

from poolboard.databases.models import MonitoredServer, QueryFingerprint
from poolboard.fleet.models import Service
from poolboard.lib import statements as st
from poolboard.lib.pools import sum_present

# Ranges longer than this are read from the hourly table (a week of 5-minute intervals of
# 500 statements is a million rows).
HOURLY_AFTER = timedelta(hours=48)
SORTS = {
    "total": lambda r: r["total_ms"],
    "mean": lambda r: r["mean_ms"] or 0.0,
    "calls": lambda r: r["calls"],
    "held": lambda r: r["held_conn_s"],
}


def statements_interval() -> int:
    return int(getattr(settings, "STATEMENTS_INTERVAL", 300))


def snapshot_interval() -> int:
    return int(getattr(settings, "DATABASE_SNAPSHOT_INTERVAL", 10))


class StatementsStatus(models.Model):
    """Whether pg_stat_statements can be read on a server, as the newest check or reading found it."""

    server = models.OneToOneField(MonitoredServer, on_delete=models.CASCADE, related_name="statements_status")
    # sources.pgstatements states: ok, unreadable (own statements only), not_installed,
    # not_preloaded, not_available, error; "" = not checked yet.
    state = models.CharField(max_length=30, blank=True)
    message = models.TextField(blank=True, help_text="What is wrong and the exact lines that enable it.")
    checked_at = models.DateTimeField(null=True, blank=True)
    extension_version = models.CharField(max_length=20, blank=True)
    track = models.CharField(max_length=10, blank=True)
    max_entries = models.PositiveIntegerField(null=True, blank=True)

    NOT_CHECKED = "pg_stat_statements has not been checked on this server yet."

    def __str__(self) -> str:
        return f"{self.server_id}: {self.state or 'not checked'}"

    @classmethod
    def for_server(cls, server: MonitoredServer) -> StatementsStatus:
        """The stored status, or an unsaved "not checked yet" one."""
        found = cls.objects.filter(server=server).first()
        return found or cls(server=server, state="", message=cls.NOT_CHECKED)

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    @property
    def collecting(self) -> bool:
        return self.state in ("ok", "unreadable")


class StatementSampleQuerySet(models.QuerySet):
    def notes(self, since: datetime, until: datetime, server=None) -> list[tuple[datetime, str, str]]:
        """(taken_at, server name, note) of the readings in the range that had something to say."""
        samples = self.filter(taken_at__gt=since, taken_at__lte=until).exclude(notes=[])
        if server is not None:
            samples = samples.filter(server=server)
        return [
            (s.taken_at, s.server.name, note)
            for s in samples.select_related("server").order_by("taken_at")
            for note in s.notes
        ]


class StatementSample(models.Model):
    server = models.ForeignKey(MonitoredServer, on_delete=models.CASCADE, related_name="statement_samples", db_index=False)
    # Slot = the server's now() // STATEMENTS_INTERVAL: a redelivered task cannot store the same slot twice.
    slot = models.BigIntegerField()
    taken_at = models.DateTimeField(help_text="The monitored server's now()")
    entries = models.PositiveIntegerField(default=0, help_text="Entries read (top N + tracked)")
    view_entries = models.PositiveIntegerField(default=0, help_text="Visible entries in the whole view")
    complete = models.BooleanField(default=False, help_text="Every entry of the view was read")
    stats_reset = models.DateTimeField(null=True, blank=True)
    dealloc = models.BigIntegerField(null=True, blank=True)
    intervals = models.PositiveIntegerField(default=0)
    notes = models.JSONField(default=list, blank=True)
    elapsed_ms = models.FloatField(default=0)

    objects = StatementSampleQuerySet.as_manager()

    class Meta:
        constraints = [
            # Idempotency per slot; also "the newest reading of a server" (slot grows with taken_at).
            models.UniqueConstraint(fields=["server", "slot"], name="statementsample_server_slot"),
        ]
        indexes = [
            # Notes of every server in a time range (the slow-queries page), and retention.
            models.Index(fields=["taken_at"], name="statementsample_taken_at"),
        ]

    def __str__(self) -> str:
        return f"{self.server_id} at {self.taken_at:%Y-%m-%d %H:%M:%S}"


class StatementQuerySet(models.QuerySet):
    def top(
        self,
        since: datetime,
        until: datetime,
        sort: str = "total",
        server: MonitoredServer | int | None = None,
        datname: str | None = None,
        service: Service | int | None = None,
        limit: int | None = 50,
    ) -> list[dict]:
        """The statements that cost most in (since, until], one dict per statement, sorted by `sort`.

        sort: "total" (total execution time, default), "mean", "calls", "held" (connection-seconds held).
        Filters: server, datname (a database on it), service (only statements that service's
        sessions were seen running, with that service's holds only). `limit` None: all.
        Ranges longer than 48 h read the hourly rollup (hours overlapping the range).

        Each row:
          id, server_id, server (name), datname, rolname, queryid, toplevel,
          query_id (databases.QueryFingerprint pk, or None), fingerprint, text (normalised; HTML-escape it),
          calls, calls_per_s (over the whole range), total_ms, total_share (0..1 of the total of every
          top-level statement matching the filters; a nested one's time is inside its caller's),
          mean_ms (None without calls), max_ms (highest per-interval maximum known, None if none
          known: pg_stat_statements keeps only a lifetime maximum),
          rows, rows_per_call, shared_blks_hit, shared_blks_read, hit_ratio (None without blocks),
          held_conn_s (connection-seconds its sessions held: Σ active sessions seen per snapshot ×
          DATABASE_SNAPSHOT_INTERVAL; holds carry no role, so every role's row of one queryid shows
          them), peak_held (most sessions seen running it in one snapshot),
          services: [{"id", "name", "held_conn_s", "peak_held", "pool_max"}] most held first
          (pool_max: Σ the service's pools' max, None if unknown),
          last_week_mean_ms, trend_vs_last_week (relative change of mean_ms against the same range a
          week earlier: 0.25 = 25 % slower; None without data then).

        Queries: the sums (one), the holds (one), the services' pools (one), last week (one); a queryset
        narrowed by a filter (e.g. `.filter(pk=...)`) first reads its queryids (one more).
        """
        if sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}")
        server_id = getattr(server, "pk", server)
        service_id = getattr(service, "pk", service)
        seconds = max((until - since).total_seconds(), 1.0)
        # A queryset narrowed to some statements (a statement's page) reads only their holds, by
        # the (query_id, snapshot) index, instead of every statement's over the whole range.
        queryids = list(self.values_list("queryid", flat=True).distinct()) if self.query.has_filters() else None
        holds = _holds(since, until, server_id, datname, service_id, queryids)
        sums = _sums(self, since, until, server_id, datname, None)
        if service_id is not None:
            sums = {k: v for k, v in sums.items() if (v["server_id"], v["datname"], v["queryid"]) in holds}
        # Top-level statements only: with pg_stat_statements.track = all a function's inner statements
        # are counted again inside their caller's time, and would inflate the total every share is of.
        grand_total = sum(v["total_ms"] for v in sums.values() if v["toplevel"]) or sum(
            v["total_ms"] for v in sums.values())
        pools = _pool_max({sid for by_service in holds.values() for sid in by_service}, until)
        rows = []
        for pk, v in sums.items():
            held = holds.get((v["server_id"], v["datname"], v["queryid"]), {})
            services = sorted(
                (
                    {"id": sid, "name": name, "held_conn_s": held_s, "peak_held": peak, "pool_max": pools.get(sid)}
                    for sid, (name, held_s, peak) in held.items()
                    if sid is not None
                ),
                key=lambda s: (-s["held_conn_s"], s["name"]),
            )
            calls = v["calls"]
            blocks = v["shared_blks_hit"] + v["shared_blks_read"]
            rows.append(
                {
                    **v,
                    "id": pk,
                    "calls_per_s": calls / seconds,
                    "total_share": v["total_ms"] / grand_total if grand_total else 0.0,
                    "mean_ms": v["total_ms"] / calls if calls else None,
                    "rows_per_call": v["rows"] / calls if calls else None,
                    "hit_ratio": v["shared_blks_hit"] / blocks if blocks else None,
                    "held_conn_s": sum(h[1] for h in held.values()),
                    "peak_held": max((h[2] for h in held.values()), default=0),
                    "services": services,
                }
            )
        rows.sort(key=lambda r: (-SORTS[sort](r), r["id"]))
        if limit is not None:
            rows = rows[:limit]
        before = st.week_before(since, until)
        earlier = _sums(self, before[0], before[1], server_id, datname, [r["id"] for r in rows]) if rows else {}
        for r in rows:
            then = earlier.get(r["id"])
            r["last_week_mean_ms"] = then["total_ms"] / then["calls"] if then and then["calls"] else None
            r["trend_vs_last_week"] = st.change(r["mean_ms"], r["last_week_mean_ms"])
        return rows


def _sums(statements, since, until, server_id, datname, ids) -> dict[int, dict]:
    """Per statement: the counters summed over the range, with the statement's own fields."""
    hourly = until - since > HOURLY_AFTER
    if hourly:
        source = StatementHourly.objects.filter(hour__gte=st.hour_of(since, since), hour__lt=until)
    else:
        source = StatementInterval.objects.filter(end__gt=since, end__lte=until)
    if statements.query.where:  # a filtered queryset (one statement's page): only those
        source = source.filter(statement__in=statements)
    if server_id is not None:
        source = source.filter(statement__server_id=server_id)
    if datname:
        source = source.filter(statement__datname=datname)
    if ids is not None:
        source = source.filter(statement_id__in=ids)
    grouped = source.values("statement_id").annotate(
        calls=models.Sum("calls"),
        total_ms=models.Sum("total_exec_ms"),
        rows=models.Sum("rows"),
        shared_blks_hit=models.Sum("shared_blks_hit"),
        shared_blks_read=models.Sum("shared_blks_read"),
        max_ms=models.Max("max_exec_ms"),
        server_id=models.F("statement__server_id"),
        server=models.F("statement__server__name"),
        datname=models.F("statement__datname"),
        rolname=models.F("statement__rolname"),
        queryid=models.F("statement__queryid"),
        toplevel=models.F("statement__toplevel"),
        query_id=models.F("statement__query_id"),
        fingerprint=models.F("statement__query__fingerprint"),
        text=models.F("statement__query__text"),
    )
    out = {}
    for g in grouped:
        pk = g.pop("statement_id")
        g["text"] = g["text"] or ""
        out[pk] = g
    return out


def _holds(since, until, server_id, datname, service_id, queryids=None) -> dict[tuple[int, str, int], dict[int | None, tuple]]:
    """{(server_id, datname, query_id): {service_id: (service name, held connection-seconds, peak)}}
    in the range: per snapshot the sessions per service are summed (one service may run under
    several application names), then summed × the snapshot interval and maximised over the
    snapshots; `queryids`: only those statements. One query.

    Up to 48 h from databases.QueryHold itself; longer ranges from HoldHourly (the hours
    overlapping the range, as Statement.objects.top() reads StatementHourly), which also covers
    the weeks whose snapshots have been pruned."""
    from poolboard.databases.models import QueryHold, Snapshot

    hourly = until - since > HOURLY_AFTER
    where = ["h.query_id IS NOT NULL"]
    if hourly:
        where += ["h.hour >= %s", "h.hour < %s"]
        params: list = [st.hour_of(since, since), until]
        server_col = "h.server_id"
    else:
        where += ["s.taken_at > %s", "s.taken_at <= %s"]
        params = [since, until]
        server_col = "s.server_id"
    if server_id is not None:
        where.append(f"{server_col} = %s")
        params.append(server_id)
    if datname:
        where.append("h.datname = %s")
        params.append(datname)
    if service_id is not None:
        where.append("h.service_id = %s")
        params.append(service_id)
    if queryids is not None:
        where.append("h.query_id = ANY(%s)")
        params.append(queryids)
    if hourly:
        per_row = f"""SELECT h.server_id, h.datname, h.query_id, h.service_id, h.held_s AS held_s, h.peak AS n
                      FROM {HoldHourly._meta.db_table} h WHERE {' AND '.join(where)}"""
    else:
        per_row = f"""SELECT s.server_id, h.datname, h.query_id, h.service_id, sum(h.count) * %s AS held_s,
                             sum(h.count) AS n
                      FROM {QueryHold._meta.db_table} h JOIN {Snapshot._meta.db_table} s ON s.id = h.snapshot_id
                      WHERE {' AND '.join(where)}
                      GROUP BY s.server_id, h.datname, h.query_id, h.service_id, s.id"""
        params.insert(0, snapshot_interval())
    sql = f"""
        SELECT r.server_id, r.datname, r.query_id, r.service_id, svc.name, sum(r.held_s), max(r.n)
        FROM ({per_row}) r
        LEFT JOIN {Service._meta.db_table} svc ON svc.id = r.service_id
        GROUP BY 1, 2, 3, 4, 5"""
    out: dict[tuple[int, str, int], dict[int | None, tuple]] = {}
    with connection.cursor() as cur:
        cur.execute(sql, params)
        for sid, db, qid, svc_id, svc_name, held_s, peak in cur.fetchall():
            out.setdefault((sid, db, qid), {})[svc_id] = (svc_name or "", float(held_s), int(peak))
    return out


def _pool_max(service_ids: set[int], until: datetime) -> dict[int, int | None]:
    """Per service: the connections its pools may open, Σ (max + the service's configured overflow),
    over the instances sampled in the 24 h before `until` (all its pools when none was).

    Pool rows are never deleted and every deploy on Kubernetes brings new instance names: summed
    over every row a service ever had, the "of N in its pool" would grow with each deploy and the
    share shrink (sizing's ledger counts live instances the same way)."""
    from poolboard.fleet.models import Pool

    if not any(sid is not None for sid in service_ids):
        return {}
    since = until - timedelta(hours=24)
    every: dict[int, list] = {}
    recent: dict[int, list] = {}
    rows = Pool.objects.filter(service_id__in=[sid for sid in service_ids if sid is not None]).values_list(
        "service_id", "max", "sampled_at", "service__pool_overflow")
    for sid, mx, sampled_at, overflow in rows:
        size = mx + (overflow or 0) if mx is not None else None
        every.setdefault(sid, []).append(size)
        if sampled_at is not None and since <= sampled_at:
            recent.setdefault(sid, []).append(size)
    return {sid: sum_present(recent.get(sid) or sizes) for sid, sizes in every.items()}


class Statement(models.Model):
    server = models.ForeignKey(MonitoredServer, on_delete=models.CASCADE, related_name="statements", db_index=False)
    datname = models.CharField("database", max_length=200)
    rolname = models.CharField("role", max_length=200)
    queryid = models.BigIntegerField()
    toplevel = models.BooleanField(default=True, help_text="False: run inside a function (pg_stat_statements.track = all)")
    query = models.ForeignKey(
        QueryFingerprint, null=True, blank=True, on_delete=models.SET_NULL, related_name="statements", db_index=False
    )
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField(help_text="The newest reading in which it ran (its calls went up)")
    # The newest reading that had it, and its counters there: the next interval's baseline.
    # last_calls NULL: that reading looked for it and it was not in the view (evicted or reset).
    last_read_at = models.DateTimeField(null=True, blank=True)
    last_calls = models.BigIntegerField(null=True, blank=True)
    last_total_exec_ms = models.FloatField(null=True, blank=True)
    last_rows = models.BigIntegerField(null=True, blank=True)
    last_shared_blks_hit = models.BigIntegerField(null=True, blank=True)
    last_shared_blks_read = models.BigIntegerField(null=True, blank=True)
    last_max_exec_ms = models.FloatField(null=True, blank=True)

    objects = StatementQuerySet.as_manager()

    class Meta:
        constraints = [
            # The collector's upsert, and the join from databases.QueryHold (server, query_id, datname),
            # which is why queryid comes second.
            models.UniqueConstraint(
                fields=["server", "queryid", "datname", "rolname", "toplevel"], name="statement_identity"
            ),
        ]
        indexes = [
            # A statement page's "same text elsewhere", and episodes → statements by fingerprint.
            models.Index(fields=["query"], name="statement_query"),
        ]

    def __str__(self) -> str:
        return f"{self.queryid} on {self.datname} as {self.rolname}"

    def key(self) -> st.Key:
        return st.Key(self.datname, self.rolname, self.queryid, self.toplevel)

    def counters(self) -> st.Counters | None:
        if self.last_calls is None:
            return None
        return st.Counters(
            calls=self.last_calls, total_exec_ms=self.last_total_exec_ms or 0.0, rows=self.last_rows or 0,
            shared_blks_hit=self.last_shared_blks_hit or 0, shared_blks_read=self.last_shared_blks_read or 0,
            max_exec_ms=self.last_max_exec_ms,
        )

    def history(self, since: datetime, until: datetime) -> list[dict]:
        """Its chart: per interval (≤ 48 h) or per hour, {"start", "end", "calls", "total_ms", "mean_ms",
        "max_ms", "rows", "calls_per_s"} oldest first."""
        if until - since > HOURLY_AFTER:
            rows = self.hours.filter(hour__gte=st.hour_of(since, since), hour__lt=until).order_by("hour")
            points = [(h.hour, h.hour + timedelta(hours=1), h) for h in rows]
        else:
            rows = self.intervals.filter(end__gt=since, end__lte=until).order_by("end")
            points = [(i.start, i.end, i) for i in rows]
        return [
            {
                "start": start, "end": end, "calls": p.calls, "total_ms": p.total_exec_ms,
                "mean_ms": p.total_exec_ms / p.calls if p.calls else None, "max_ms": p.max_exec_ms, "rows": p.rows,
                "calls_per_s": st.per_second(p.calls, (end - start).total_seconds()),
            }
            for start, end, p in points
        ]


class StatementInterval(models.Model):
    """One statement's deltas between two readings; kept STATEMENTS_INTERVAL_DAYS (14) days."""

    statement = models.ForeignKey(Statement, on_delete=models.CASCADE, related_name="intervals", db_index=False)
    start = models.DateTimeField()
    end = models.DateTimeField()
    calls = models.BigIntegerField()
    total_exec_ms = models.FloatField()
    rows = models.BigIntegerField()
    shared_blks_hit = models.BigIntegerField()
    shared_blks_read = models.BigIntegerField()
    max_exec_ms = models.FloatField(null=True, blank=True, help_text="Known only when the lifetime maximum rose in it")
    restarted = models.BooleanField(default=False, help_text="Counted from a reset or the entry's return, not the previous reading")

    class Meta:
        constraints = [
            # One row per statement per reading; also serves a statement's history chart.
            models.UniqueConstraint(fields=["statement", "end"], name="statementinterval_statement_end"),
        ]
        indexes = [
            # Statement.objects.top(): every interval ending in a time range; and retention.
            models.Index(fields=["end"], name="statementinterval_end"),
        ]

    def __str__(self) -> str:
        return f"{self.statement_id} {self.start:%H:%M:%S}-{self.end:%H:%M:%S}: {self.calls} calls"


class StatementHourly(models.Model):
    """Intervals summed per hour (lib.statements.hour_of: the hour of each interval's midpoint);
    kept STATEMENTS_HOURLY_DAYS (400) days."""

    statement = models.ForeignKey(Statement, on_delete=models.CASCADE, related_name="hours", db_index=False)
    hour = models.DateTimeField()
    calls = models.BigIntegerField()
    total_exec_ms = models.FloatField()
    rows = models.BigIntegerField()
    shared_blks_hit = models.BigIntegerField()
    shared_blks_read = models.BigIntegerField()
    max_exec_ms = models.FloatField(null=True, blank=True)
    intervals = models.PositiveIntegerField()

    class Meta:
        constraints = [
            # The rollup's upsert, and a statement's long-range history chart.
            models.UniqueConstraint(fields=["statement", "hour"], name="statementhourly_statement_hour"),
        ]
        indexes = [
            # Statement.objects.top() over ranges longer than 48 h; and retention.
            models.Index(fields=["hour"], name="statementhourly_hour"),
        ]

    def __str__(self) -> str:
        return f"{self.statement_id} {self.hour:%Y-%m-%d %H}:00: {self.calls} calls"


class HoldHourly(models.Model):
    """databases.QueryHold summed per hour: the connection-seconds each statement held of each
    service's pool (kept STATEMENTS_HOURLY_DAYS, 400 days, like StatementHourly), so the slow-queries
    page's "held" over ranges longer than 48 h reads hours instead of every snapshot's holds, and
    still has them after the snapshots are pruned (RAW_RETENTION_DAYS, 14)."""

    server = models.ForeignKey(MonitoredServer, on_delete=models.CASCADE, related_name="+", db_index=False)
    datname = models.CharField("database", max_length=200, blank=True)
    query_id = models.BigIntegerField()
    service = models.ForeignKey(Service, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                db_index=False)
    hour = models.DateTimeField(help_text="Start of the hour (UTC) the snapshots were taken in")
    # Σ sessions running it per snapshot × the snapshot interval when rolled up.
    held_s = models.FloatField()
    peak = models.PositiveIntegerField(help_text="Most sessions seen running it in one snapshot of the hour")
    snapshots = models.PositiveIntegerField(help_text="Snapshots of the hour that saw it")

    class Meta:
        constraints = [
            # The rollup's upsert; NULLS NOT DISTINCT so the unattributed (service NULL) row of an
            # hour is one row, recomputed in place (PostgreSQL 15+).
            models.UniqueConstraint(fields=["server", "query_id", "datname", "service", "hour"],
                                    name="holdhourly_key", nulls_distinct=False),
        ]
        indexes = [
            # Statement.objects.top() over ranges longer than 48 h; and retention.
            models.Index(fields=["hour"], name="holdhourly_hour"),
        ]

    def __str__(self) -> str:
        return f"query {self.query_id} {self.hour:%Y-%m-%d %H}:00: {self.held_s:.0f} conn-s"
