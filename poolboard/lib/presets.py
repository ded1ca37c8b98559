"""Presets: how one exporter dialect maps onto the canonical pool model.

A preset is a named set of PromQL templates (one per canonical field it can give)
plus which labels carry the service, the instance and the pool. Fields a preset
cannot give are simply missing from `queries`: absent, never 0 (no `vector(0)`).

Template placeholders (see `promql.render`): `$by` = the identity labels,
`$sel` = extra matchers, `$w` = the rate window. Exact metric names, types, units
and labels come from each exporter's own source code, not from its README.

Conventions shared by every built-in preset:

- gauges are `sum by ($by)`: it only drops labels outside the identity (otel_scope_*,
  `user` for PgBouncer pools, ...); with the pool label kept there is one series per group;
- `timeouts`, `acquisitions`, `conns_opened`, `conns_closed` are counts *per rate window*
  (`increase`); `acquisitions` only where the exporter counts checkouts (or returns),
  never derived from wait counters (those count only the acquires that waited);
- `acquire_s` and `hold_s` are averages over the rate window in **seconds**
  (rate(sum) / rate(count), rescaled from ns/µs/ms where the exporter uses them);
  no acquires in the window gives NaN, i.e. absent;
- the identity always includes `exported_instance`: when an exporter sets its own
  `instance` label (an OpenTelemetry Collector, a Pushgateway, a federation),
  Prometheus renames it to `exported_instance` at scrape, and that is the instance
  we want; `sum by` keeps it when present and it is simply missing otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from . import promql
from .pools import FIELD_LABELS, FIELDS, PoolKey

# Label that carries the exporter's own `instance` after Prometheus renamed it.
EXPORTED_INSTANCE = "exported_instance"
# A metric-name regex as used in a marker or a `{__name__=~"..."}` selector.
NAME_REGEX_RE = re.compile(r"^[a-zA-Z_:()|?*+.\[\]0-9]+$")


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    # A metric-name regex whose presence says this dialect is exported (discovery).
    marker: str
    queries: Mapping[str, str]
    pool_label: str | None = None
    service_label: str = "job"
    instance_label: str = "instance"
    # Further labels that tell pools apart (node-postgres: the same database on two hosts).
    extra_pool_labels: tuple[str, ...] = ()
    # Presets this one is a more specific form of: a service whose series match both
    # markers gets this one (Spring + HikariCP also exports jdbc_connections_*).
    supersedes: tuple[str, ...] = ()
    # Per-field notes shown to users: derivations, units, caveats.
    notes: Mapping[str, str] = field(default_factory=dict)
    builtin: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.queries) - set(FIELDS)
        if unknown:
            raise ValueError(f"preset {self.name}: unknown canonical fields {sorted(unknown)}")
        if not NAME_REGEX_RE.match(self.marker or ""):
            raise ValueError(f"preset {self.name}: marker {self.marker!r} is not a metric-name regex")
        for label in self.identity_labels:
            promql.check_label_name(label)

    @property
    def pool_labels(self) -> list[str]:
        return ([self.pool_label] if self.pool_label else []) + list(self.extra_pool_labels)

    @property
    def identity_labels(self) -> list[str]:
        labels = [self.service_label, self.instance_label]
        if self.instance_label == "instance":
            labels.append(EXPORTED_INSTANCE)
        labels += [label for label in self.pool_labels if label not in labels]
        return labels

    def with_service_label(self, label: str | None) -> Preset:
        """The same preset reading the service name from another label (per-source override)."""
        if not label or label == self.service_label:
            return self
        return replace(self, service_label=promql.check_label_name(label))

    def query(self, canonical_field: str, *, window: str = "5m", sel: str = "") -> str:
        return promql.render(self.queries[canonical_field], by=self.identity_labels, sel=sel, window=window)

    def identity_query(self, *, sel: str = "") -> str:
        """One series per pool: the pools discovery creates (in_use, else the first field)."""
        canonical_field = "in_use" if "in_use" in self.queries else next(iter(self.queries))
        return self.query(canonical_field, sel=sel)

    def key_for(self, labels: Mapping[str, str]) -> PoolKey | None:
        """The pool identity of one result series, or None when it has no service."""
        service = labels.get(self.service_label, "")
        if not service:
            return None
        instance = labels.get(self.instance_label, "")
        if self.instance_label == "instance" and labels.get(EXPORTED_INSTANCE):
            instance = labels[EXPORTED_INSTANCE]
        parts = [labels.get(label, "") for label in self.pool_labels]
        pool = "/".join(part for part in parts if part)
        return PoolKey(service=service, instance=instance, pool=pool or "default")

    def missing_fields(self, latest: Iterable[Mapping[str, float | None]] | None = None) -> list[str]:
        """The canonical fields a service on this preset shows as absent, in FIELDS order.

        Without `latest`: the fields the preset has no query for. With the newest values
        of the service's pools: also the fields it queries but no pool reported, because
        an exporter may lack a metric its dialect defines (many db_pool sets have no
        max; a Spring app may export only some of HikariCP's meters). A page that lists
        only the first kind says a pool lacks "overflow, closed" while max, waiting,
        timeouts, acquire and hold time are all blank too.
        """
        reported: set[str] = set()
        if latest is not None:
            reported = {f for values in latest for f, value in values.items() if value is not None}
        return [f for f in FIELDS if f not in self.queries or (latest is not None and f not in reported)]

    def field_note(self, name: str) -> str:
        """Why a field is missing, in the preset's words when it has them (pages and API).

        A field the preset queries is missing because the exporter sent no value for it
        (see `missing_fields(latest)`), not because the preset cannot give it.
        """
        if name in self.notes:
            return self.notes[name]
        if name in self.queries:
            return f"No {FIELD_LABELS[name]} reported: the exporter sends none of the series the {self.name} preset reads for it"
        return f"The {self.name} preset gives no {FIELD_LABELS[name]}"

    def marker_matches(self, metric_name: str) -> bool:
        return re.fullmatch(self.marker, metric_name) is not None


# --- template builders -------------------------------------------------------------
# Plain names render as `name{..., $sel}`; names with regex syntax as
# `{__name__=~"name", ..., $sel}` (the OTel `_connections` suffix, both PgBouncer
# stats generations).


def _series(metric: str, matchers: str = "") -> str:
    extra = f"{matchers}," if matchers else ""
    if re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", metric):
        return f"{metric}{{{extra}$sel}}"
    return f'{{__name__=~"{metric}",{extra}$sel}}'


def _gauge(metric: str, matchers: str = "") -> str:
    return f"sum by ($by) ({_series(metric, matchers)})"


def _increase(*metrics: str) -> str:
    """Counted events per rate window; several counters are added up (all must exist)."""
    return " + ".join(f"sum by ($by) (increase({_series(m)}[$w]))" for m in metrics)


def _rate(metric: str, scale: str = "") -> str:
    return f"sum by ($by) (rate({_series(metric)}[$w])){scale}"


def _ratio_of_rates(numerator: str, denominator: str, scale: str = "") -> str:
    """Average over the rate window: rate(sum) / rate(count), optionally rescaled to seconds."""
    return f"{_rate(numerator)} / {_rate(denominator)}{scale}"


def _pool_size_times_user_pools(size_metric: str, pools_metric: str, relabel_from: str | None) -> str:
    """PgBouncer: pool_size applies to each (database, user) pool; we show one pool per database."""
    size = _series(size_metric)
    if relabel_from:
        size = f'label_replace({size}, "database", "$1", "{relabel_from}", "(.*)")'
    return f"sum by ($by) ({size}) * on ($by) count by ($by) ({_series(pools_metric)})"


# --- the built-in presets ----------------------------------------------------------

DB_POOL = Preset(
    name="db_pool",
    title="Go-style custom db_pool_* set",
    marker="db_pool_in_use_connections",
    pool_label="pool_name",
    queries={
        "max": _gauge("db_pool_max_open_connections"),
        "in_use": _gauge("db_pool_in_use_connections"),
        "idle": _gauge("db_pool_idle_connections"),
        "pending": _gauge("db_pool_pending_requests"),
        "timeouts": _increase("db_pool_exhausted_total"),
        "acquisitions": _increase("db_connection_hold_duration_seconds_count"),
        # Some sets make the wait a histogram (_sum), others (the demo fleet) a counter (_total).
        "acquire_s": _ratio_of_rates("db_pool_wait_duration_seconds_(sum|total)", "db_pool_wait_total"),
        "hold_s": _ratio_of_rates(
            "db_connection_hold_duration_seconds_sum", "db_connection_hold_duration_seconds_count"
        ),
        "conns_opened": _increase("db_pool_connections_created_total"),
        "conns_closed": _increase("db_pool_connections_closed_total"),
    },
    notes={
        "max": "db_pool_max_open_connections, when the exporter sets it (many such sets have none)",
        "pending": "db_pool_pending_requests, when the exporter sets it",
        "acquire_s": "average wait of the acquires that had to wait (db_pool_wait_duration_seconds ÷ db_pool_wait_total)",
        "timeouts": "db_pool_exhausted_total, increase over the rate window",
        "acquisitions": "connections returned (the hold histogram's count): a connection never returned is not counted",
        "overflow": "no overflow concept",
    },
)

ASYNCPG = Preset(
    name="asyncpg",
    title="asyncpg pool gauges db_pool_size / db_pool_available (custom collector)",
    marker="db_pool_available",
    pool_label="pool_name",
    queries={
        "in_use": f"{_gauge('db_pool_size')} - {_gauge('db_pool_available')}",
        "idle": _gauge("db_pool_available"),
    },
    notes={
        "in_use": "derived: db_pool_size (asyncpg get_size(), the connections open now) − db_pool_available (get_idle_size())",
        "idle": "db_pool_available = asyncpg get_idle_size()",
        "max": "not exported: db_pool_size is the current size, not max_size",
        "pending": "asyncpg does not expose its waiters",
    },
)

SQLALCHEMY = Preset(
    name="sqlalchemy",
    title="SQLAlchemy QueuePool gauges (size / checkedout / checkedin / overflow)",
    marker="db_pool_checked_out",
    supersedes=("asyncpg",),
    pool_label="pool_name",
    queries={
        "max": _gauge("db_pool_size"),
        "in_use": _gauge("db_pool_checked_out"),
        "idle": _gauge("db_pool_checked_in"),
        "overflow": f"clamp_min({_gauge('db_pool_overflow')}, 0)",
    },
    notes={
        "max": "db_pool_size = pool.size(), the core pool_size; up to max_overflow more may open, so in use can exceed it",
        "in_use": "db_pool_checked_out = pool.checkedout()",
        "idle": "db_pool_checked_in = pool.checkedin()",
        "overflow": "pool.overflow() starts at −pool_size; shown as max(overflow, 0)",
        "pending": "SQLAlchemy does not expose waiters",
    },
)

HIKARICP_MICROMETER = Preset(
    name="hikaricp",
    title="HikariCP via Micrometer (Spring Boot actuator)",
    marker="hikaricp_connections_active",
    supersedes=("spring_jdbc",),
    pool_label="pool",
    queries={
        "max": _gauge("hikaricp_connections_max"),
        "min": _gauge("hikaricp_connections_min"),
        "in_use": _gauge("hikaricp_connections_active"),
        "idle": _gauge("hikaricp_connections_idle"),
        "pending": _gauge("hikaricp_connections_pending"),
        "timeouts": _increase("hikaricp_connections_timeout_total"),
        "acquisitions": _increase("hikaricp_connections_acquire_seconds_count"),
        "acquire_s": _ratio_of_rates(
            "hikaricp_connections_acquire_seconds_sum", "hikaricp_connections_acquire_seconds_count"
        ),
        "hold_s": _ratio_of_rates("hikaricp_connections_usage_seconds_sum", "hikaricp_connections_usage_seconds_count"),
        "conns_opened": _increase("hikaricp_connections_creation_seconds_count"),
    },
    notes={
        "overflow": "HikariCP has no overflow concept",
        "conns_closed": "HikariCP does not export closed connections",
        "conns_opened": "one creation-timer sample per physical connection opened",
        "acquisitions": "one acquire-timer sample per getConnection()",
    },
)

HIKARICP_SIMPLECLIENT = Preset(
    name="hikaricp_tracker",
    title="HikariCP's own Prometheus tracker (simpleclient)",
    marker="hikaricp_active_connections",
    pool_label="pool",
    queries={
        "max": _gauge("hikaricp_max_connections"),
        "min": _gauge("hikaricp_min_connections"),
        "in_use": _gauge("hikaricp_active_connections"),
        "idle": _gauge("hikaricp_idle_connections"),
        "pending": _gauge("hikaricp_pending_threads"),
        "timeouts": _increase("hikaricp_connection_timeout_total"),
        "acquisitions": _increase("hikaricp_connection_acquired_nanos_count"),
        "acquire_s": _ratio_of_rates(
            "hikaricp_connection_acquired_nanos_sum", "hikaricp_connection_acquired_nanos_count", " / 1e9"
        ),
        "hold_s": _ratio_of_rates(
            "hikaricp_connection_usage_millis_sum", "hikaricp_connection_usage_millis_count", " / 1e3"
        ),
        "conns_opened": _increase("hikaricp_connection_creation_millis_count"),
    },
    notes={
        "acquire_s": "hikaricp_connection_acquired_nanos (ns) sum ÷ count, converted to seconds",
        "acquisitions": "count of hikaricp_connection_acquired_nanos (one sample per getConnection())",
        "hold_s": "hikaricp_connection_usage_millis (ms) sum ÷ count, converted to seconds",
        "max": "hikaricp_max_connections (missing before HikariCP 3.x)",
        "overflow": "HikariCP has no overflow concept",
        "conns_closed": "HikariCP does not export closed connections",
    },
)

SPRING_JDBC = Preset(
    name="spring_jdbc",
    title="Spring Boot generic DataSource gauges jdbc_connections_*",
    marker="jdbc_connections_active",
    pool_label="name",
    queries={
        "max": _gauge("jdbc_connections_max"),
        "min": _gauge("jdbc_connections_min"),
        "in_use": _gauge("jdbc_connections_active"),
        "idle": _gauge("jdbc_connections_idle"),
    },
    notes={
        "in_use": "jdbc_connections_active; the pool is the DataSource bean name",
        "pending": "not in the generic set (use the HikariCP preset when the pool is HikariCP)",
    },
)

GO_SQL = Preset(
    name="go_sql",
    title="Go database/sql via client_golang DBStats (go_sql_*)",
    marker="go_sql_in_use_connections",
    pool_label="db_name",
    queries={
        "max": _gauge("go_sql_max_open_connections"),
        "in_use": _gauge("go_sql_in_use_connections"),
        "idle": _gauge("go_sql_idle_connections"),
        "pending": _rate("go_sql_wait_duration_seconds_total"),
        "acquire_s": _ratio_of_rates("go_sql_wait_duration_seconds_total", "go_sql_wait_count_total"),
        "conns_closed": _increase(
            "go_sql_max_idle_closed_total", "go_sql_max_idle_time_closed_total", "go_sql_max_lifetime_closed_total"
        ),
    },
    notes={
        "max": "go_sql_max_open_connections; 0 means unlimited (shown as no limit)",
        "pending": "derived by Little's law: rate(go_sql_wait_duration_seconds_total) = seconds waited per second "
        "= average number of callers waiting over the rate window",
        "acquire_s": "average wait of the acquires that blocked (fast-path acquires are not counted by database/sql)",
        "conns_closed": "closed by the max_idle / max_idle_time / max_lifetime limits only",
        "timeouts": "database/sql has no acquire timeout counter (context deadlines are the caller's)",
        "acquisitions": "database/sql counts only the acquires that waited (go_sql_wait_count_total), not every checkout",
    },
)

PGXPOOL = Preset(
    name="pgxpool",
    title="pgx v5 pgxpool via IBM/pgxpoolprometheus",
    marker="pgxpool_acquired_conns",
    pool_label="db_name",
    queries={
        "max": _gauge("pgxpool_max_conns"),
        "in_use": _gauge("pgxpool_acquired_conns"),
        "idle": _gauge("pgxpool_idle_conns"),
        "pending": _rate("pgxpool_empty_acquire_wait_time_ns", " / 1e9"),
        "timeouts": _increase("pgxpool_canceled_acquire_count"),
        "acquisitions": _increase("pgxpool_acquire_count"),
        "acquire_s": _ratio_of_rates("pgxpool_acquire_duration_ns", "pgxpool_acquire_count", " / 1e9"),
        "conns_opened": _increase("pgxpool_new_conns_count"),
        "conns_closed": _increase("pgxpool_max_lifetime_destroy_count", "pgxpool_max_idle_destroy_count"),
    },
    notes={
        "pending": "derived by Little's law: rate(pgxpool_empty_acquire_wait_time_ns) / 1e9 = average waiters",
        "timeouts": "pgxpool_canceled_acquire_count: acquires cancelled by their context (≈ timeouts)",
        "acquire_s": "pgxpool_acquire_duration_ns ÷ pgxpool_acquire_count (ns → s); counters have no _total suffix",
        "conns_closed": "destroyed for max lifetime + max idle time",
        "acquisitions": "pgxpool_acquire_count: successful acquires",
        "pool": "the pool label is the const label db_name passed to NewCollector; pools without it are 'default'",
    },
)

OTELSQL = Preset(
    name="otelsql",
    title="Go database/sql via OpenTelemetry XSAM/otelsql (db_sql_connection_*)",
    marker="db_sql_connection_open",
    pool_label="db_name",
    queries={
        "max": _gauge("db_sql_connection_max_open"),
        "in_use": _gauge("db_sql_connection_open", 'status="inuse"'),
        "idle": _gauge("db_sql_connection_open", 'status="idle"'),
        "pending": _rate("db_sql_connection_wait_duration_milliseconds_total", " / 1e3"),
        "acquire_s": _ratio_of_rates(
            "db_sql_connection_wait_duration_milliseconds_total", "db_sql_connection_wait_total", " / 1e3"
        ),
        "conns_closed": _increase(
            "db_sql_connection_closed_max_idle_total",
            "db_sql_connection_closed_max_idle_time_total",
            "db_sql_connection_closed_max_lifetime_total",
        ),
    },
    notes={
        "max": "db_sql_connection_max_open; 0 means unlimited",
        "pending": "derived by Little's law from the wait-duration counter (ms → s)",
        "acquire_s": "wait duration (ms) ÷ waits, converted to seconds; blocked acquires only",
        "pool": "pools are told apart by a db_name attribute (otelsql.WithAttributes); without it 'default'",
        "acquisitions": "otelsql counts only the acquires that waited (db_sql_connection_wait_total), not every checkout",
    },
)

OTEL_OLD_SEMCONV = Preset(
    name="otel_old",
    title="OpenTelemetry db.client.connections.* (semconv ≤ 1.25: Java agent default, SQLAlchemy)",
    marker="db_client_connections_usage(_connections)?",
    pool_label="pool_name",
    queries={
        "max": _gauge("db_client_connections_max"),
        "min": _gauge("db_client_connections_idle_min"),
        "in_use": _gauge("db_client_connections_usage(_connections)?", 'state="used"'),
        "idle": _gauge("db_client_connections_usage(_connections)?", 'state="idle"'),
        "pending": _gauge("db_client_connections_pending_requests"),
        "timeouts": _increase("db_client_connections_timeouts_total"),
        "acquisitions": _increase("db_client_connections_wait_time_milliseconds_count"),
        "acquire_s": _ratio_of_rates(
            "db_client_connections_wait_time_milliseconds_sum", "db_client_connections_wait_time_milliseconds_count", " / 1e3"
        ),
        "hold_s": _ratio_of_rates(
            "db_client_connections_use_time_milliseconds_sum", "db_client_connections_use_time_milliseconds_count", " / 1e3"
        ),
        "conns_opened": _increase("db_client_connections_create_time_milliseconds_count"),
    },
    notes={
        "in_use": "usage{state=used}; the Python in-process exporter names it db_client_connections_usage_connections",
        "acquire_s": "wait_time histogram in ms, sum ÷ count converted to seconds",
        "hold_s": "use_time histogram in ms, sum ÷ count converted to seconds",
        "max": "absent for SQLAlchemy's instrumentation, which only exports usage",
        "acquisitions": "count of the wait_time histogram (one observation per connection obtained)",
    },
)

OTEL_NEW_SEMCONV = Preset(
    name="otel",
    title="OpenTelemetry db.client.connection.* (semconv ≥ 1.27)",
    marker="db_client_connection_count",
    pool_label="db_client_connection_pool_name",
    queries={
        "max": _gauge("db_client_connection_max"),
        "min": _gauge("db_client_connection_idle_min"),
        "in_use": _gauge("db_client_connection_count", 'db_client_connection_state="used"'),
        "idle": _gauge("db_client_connection_count", 'db_client_connection_state="idle"'),
        "pending": _gauge("db_client_connection_pending_requests"),
        "timeouts": _increase("db_client_connection_timeouts_total"),
        "acquisitions": _increase("db_client_connection_wait_time_seconds_count"),
        "acquire_s": _ratio_of_rates(
            "db_client_connection_wait_time_seconds_sum", "db_client_connection_wait_time_seconds_count"
        ),
        "hold_s": _ratio_of_rates(
            "db_client_connection_use_time_seconds_sum", "db_client_connection_use_time_seconds_count"
        ),
        "conns_opened": _increase("db_client_connection_create_time_seconds_count"),
    },
    notes={
        "conns_opened": "count of the create_time histogram (one observation per connection opened)",
        "acquisitions": "count of the wait_time histogram (one observation per connection obtained)",
    },
)

NPGSQL_8 = Preset(
    name="npgsql",
    title="Npgsql 8.x / 9.x (.NET, old db.client.connections.* names, seconds)",
    marker="db_client_connections_create_time_seconds_count",
    supersedes=("otel_old",),
    pool_label="pool_name",
    queries={
        "max": _gauge("db_client_connections_max"),
        "in_use": _gauge("db_client_connections_usage", 'state="used"'),
        "idle": _gauge("db_client_connections_usage", 'state="idle"'),
        "pending": _gauge("db_client_connections_pending_requests"),
        "timeouts": _increase("db_client_connections_timeouts_total"),
        "conns_opened": _increase("db_client_connections_create_time_seconds_count"),
    },
    notes={
        "conns_opened": "count of create_time, which Npgsql records in seconds (not ms like the Java agent)",
        "acquire_s": "Npgsql never emits wait_time",
        "hold_s": "Npgsql never emits use_time",
        "acquisitions": "Npgsql counts no checkouts (no wait_time or use_time)",
    },
)

NPGSQL_10 = Preset(
    name="npgsql10",
    title="Npgsql 10 (.NET, db.client.connection.* and npgsql-specific names)",
    marker="db_client_connection_npgsql_pending_requests",
    supersedes=("otel",),
    pool_label="db_client_connection_pool_name",
    queries={
        "max": _gauge("db_client_connection_max"),
        "in_use": _gauge("db_client_connection_count", 'db_client_connection_state="used"'),
        "idle": _gauge("db_client_connection_count", 'db_client_connection_state="idle"'),
        "pending": _gauge("db_client_connection_npgsql_pending_requests"),
        "timeouts": _increase("db_client_connection_npgsql_timeouts_total"),
        "conns_opened": _increase("db_client_connection_npgsql_create_time_seconds_count"),
    },
    notes={
        "conns_opened": "count of db_client_connection_npgsql_create_time_seconds",
        "acquire_s": "Npgsql never emits wait_time",
        "hold_s": "Npgsql never emits use_time",
        "acquisitions": "Npgsql counts no checkouts (no wait_time or use_time)",
    },
)

NODE_POSTGRES = Preset(
    name="node_postgres",
    title="node-postgres pg.Pool via node-postgres-prometheus-exporter (pg_pool_*)",
    marker="pg_pool_active_connections",
    pool_label="database",
    extra_pool_labels=("host",),
    queries={
        "max": _gauge("pg_pool_max"),
        "in_use": _gauge("pg_pool_active_connections"),
        "idle": _gauge("pg_pool_idle_connections"),
        "pending": _gauge("pg_pool_waiting_connections"),
        "conns_opened": _increase("pg_pool_connections_created_total"),
        "conns_closed": _increase("pg_pool_connections_removed_total"),
    },
    notes={
        "pool": "database/host (host is the server's host:port), so a primary and a replica pool stay apart",
        "pending": "pg_pool_waiting_connections: queued connect() requests",
        "timeouts": "pg.Pool rejects connect() after connectionTimeoutMillis without counting it",
        "acquisitions": "the exporter counts no acquires (pg_pool_active_connections is only a gauge)",
    },
)

PGBOUNCER = Preset(
    name="pgbouncer",
    title="PgBouncer via prometheus-community/pgbouncer_exporter",
    marker="pgbouncer_stats(_totals)?_client_wait_seconds_total",
    pool_label="database",
    queries={
        "max": _pool_size_times_user_pools(
            "pgbouncer_databases_pool_size", "pgbouncer_pools_server_active_connections", relabel_from="name"
        ),
        "in_use": _gauge("pgbouncer_pools_server_active_connections"),
        "idle": f"{_gauge('pgbouncer_pools_server_idle_connections')} + {_gauge('pgbouncer_pools_server_used_connections')}",
        "pending": _gauge("pgbouncer_pools_client_waiting_connections"),
        "acquisitions": _increase("pgbouncer_stats(_totals)?_sql_transactions_pooled_total"),
        "acquire_s": _ratio_of_rates(
            "pgbouncer_stats(_totals)?_client_wait_seconds_total", "pgbouncer_stats(_totals)?_sql_transactions_pooled_total"
        ),
        "hold_s": _ratio_of_rates(
            "pgbouncer_stats(_totals)?_server_in_transaction_seconds_total",
            "pgbouncer_stats(_totals)?_sql_transactions_pooled_total",
        ),
    },
    notes={
        "pool": "one pool per PgBouncer database, summed over its users; server-side connections",
        "max": "databases pool_size × the number of (database, user) pools, since pool_size applies to each; "
        "pgbouncer_databases_* is joined on its `name` label",
        "idle": "server idle + server used (idle, awaiting the reset/check query)",
        "pending": "clients waiting for a server connection",
        "acquire_s": "client wait seconds ÷ pooled transactions; matches both pgbouncer_stats_* (≤ 0.10.2) "
        "and pgbouncer_stats_totals_* (≥ 0.11)",
        "hold_s": "server time in transaction ÷ pooled transactions",
        "acquisitions": "pooled transactions: each takes a server connection in transaction pooling "
        "(in session pooling this is throughput, not checkouts)",
        "overflow": "the reserve pool is not exported as in use",
    },
)

PGBOUNCER_SPREAKER = Preset(
    name="pgbouncer_spreaker",
    title="PgBouncer via spreaker/prometheus-pgbouncer-exporter",
    marker="pgbouncer_stats_transactions_total",
    pool_label="database",
    queries={
        "max": _pool_size_times_user_pools(
            "pgbouncer_databases_database_pool_size", "pgbouncer_pools_server_active_connections", relabel_from=None
        ),
        "in_use": _gauge("pgbouncer_pools_server_active_connections"),
        "idle": f"{_gauge('pgbouncer_pools_server_idle_connections')} + {_gauge('pgbouncer_pools_server_used_connections')}",
        "pending": _gauge("pgbouncer_pools_client_waiting_connections"),
        "acquisitions": _increase("pgbouncer_stats_transactions_total"),
        "acquire_s": _ratio_of_rates(
            "pgbouncer_stats_waiting_duration_microseconds_total", "pgbouncer_stats_transactions_total", " / 1e6"
        ),
        "hold_s": _ratio_of_rates(
            "pgbouncer_stats_transactions_duration_microseconds_total", "pgbouncer_stats_transactions_total", " / 1e6"
        ),
    },
    notes={
        "pool": "one pool per PgBouncer database, summed over its users; server-side connections",
        "max": "database_pool_size × the number of (database, user) pools, since pool_size applies to each",
        "idle": "server idle + server used",
        "acquire_s": "waiting duration (µs) ÷ transactions, converted to seconds",
        "hold_s": "transaction duration (µs) ÷ transactions, converted to seconds",
        "acquisitions": "pooled transactions (server-connection checkouts in transaction pooling)",
    },
)

BUILTIN_PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        DB_POOL,
        HIKARICP_MICROMETER,
        OTEL_NEW_SEMCONV,
        ASYNCPG,
        SQLALCHEMY,
        HIKARICP_SIMPLECLIENT,
        SPRING_JDBC,
        GO_SQL,
        PGXPOOL,
        OTELSQL,
        OTEL_OLD_SEMCONV,
        NPGSQL_8,
        NPGSQL_10,
        NODE_POSTGRES,
        PGBOUNCER,
        PGBOUNCER_SPREAKER,
    )
}


def marker_query(presets: list[Preset], service_labels: list[str]) -> str:
    """One query that says, per service, which presets' markers have series.

    `count by (__name__, <service labels>) ({__name__=~"m1|m2|..."})`: one series per
    (metric, service), whatever the number of pools or instances.
    """
    markers = "|".join(f"(?:{p.marker})" for p in presets)
    by = ", ".join(["__name__", *dict.fromkeys(promql.check_label_name(label) for label in service_labels)])
    return f"count by ({by}) ({{__name__=~{promql.quote(markers)}}})"


def choose_presets(found: Mapping[str, set[str]], presets: Mapping[str, Preset]) -> dict[str, str]:
    """Pick one preset per service from the presets whose markers it exports.

    `found` maps a service to the preset names seen for it. A preset superseded by
    another one also found wins nothing (HikariCP over Spring's generic jdbc set);
    among the rest the first in `presets` order wins, so the choice is stable.
    """
    chosen: dict[str, str] = {}
    order = list(presets)
    for service, names in found.items():
        superseded = {s for name in names for s in presets[name].supersedes}
        candidates = [n for n in order if n in names and n not in superseded]
        if candidates:
            chosen[service] = candidates[0]
    return chosen


def assemble_readings(
    preset: Preset,
    results_by_field: Mapping[str, list[tuple[Mapping[str, str], float | None]]],
) -> dict[PoolKey, dict[str, float | None]]:
    """Join one tick's per-field query results into canonical values per pool.

    `results_by_field` maps a canonical field to the (labels, value) pairs its query
    returned. A pool missing from one field's result simply lacks that field (absent,
    not 0); series without a service label are ignored.
    """
    pools: dict[PoolKey, dict[str, float | None]] = {}
    for canonical_field, series in results_by_field.items():
        for labels, value in series:
            key = preset.key_for(labels)
            if key is None:
                continue
            pools.setdefault(key, {})[canonical_field] = value
    return pools
