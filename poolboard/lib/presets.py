"""Presets: how one exporter dialect maps onto the canonical pool model.

A preset is a named set of PromQL templates (one per canonical field it can give)
plus which labels carry the service, the instance and the pool. Fields a preset
cannot give are simply missing from `queries`: absent, never 0.

Template placeholders (see `promql.render`): `$by` = the identity labels,
`$sel` = extra matchers, `$w` = the rate window. Exact metric names come from
research/pool-metrics.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from . import promql
from .pools import FIELDS, PoolKey


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    # A series whose presence says this dialect is exported (used by discovery).
    marker: str
    queries: Mapping[str, str]
    pool_label: str | None = None
    service_label: str = "job"
    instance_label: str = "instance"
    # Per-field notes shown to users: derivations, units, caveats.
    notes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.queries) - set(FIELDS)
        if unknown:
            raise ValueError(f"preset {self.name}: unknown canonical fields {sorted(unknown)}")

    @property
    def identity_labels(self) -> list[str]:
        labels = [self.service_label, self.instance_label]
        if self.pool_label:
            labels.append(self.pool_label)
        return labels

    def query(self, canonical_field: str, *, window: str = "5m", sel: str = "") -> str:
        return promql.render(self.queries[canonical_field], by=self.identity_labels, sel=sel, window=window)

    def key_for(self, labels: Mapping[str, str]) -> PoolKey | None:
        """The pool identity of one result series, or None when it has no service."""
        service = labels.get(self.service_label, "")
        if not service:
            return None
        instance = labels.get(self.instance_label, "")
        pool = labels.get(self.pool_label, "") if self.pool_label else ""
        return PoolKey(service=service, instance=instance, pool=pool or "default")

    def missing_fields(self) -> list[str]:
        return [f for f in FIELDS if f not in self.queries]


def _ratio_of_rates(numerator: str, denominator: str, scale: str = "") -> str:
    """Average over the rate window: rate(sum) / rate(count), optionally rescaled."""
    text = f"sum by ($by) (rate({numerator}{{$sel}}[$w])) / sum by ($by) (rate({denominator}{{$sel}}[$w]))"
    return f"{text}{scale}"


DB_POOL = Preset(
    name="db_pool",
    title="Go-style db_pool_* gauges (seed write-ups)",
    marker="db_pool_in_use_connections",
    pool_label="pool_name",
    queries={
        "max": "sum by ($by) (db_pool_max_open_connections{$sel})",
        "in_use": "sum by ($by) (db_pool_in_use_connections{$sel})",
        "idle": "sum by ($by) (db_pool_idle_connections{$sel})",
        "pending": "sum by ($by) (db_pool_pending_requests{$sel})",
        "timeouts": "sum by ($by) (increase(db_pool_exhausted_total{$sel}[$w]))",
        "acquire_s": _ratio_of_rates("db_pool_wait_duration_seconds_total", "db_pool_wait_total"),
        "hold_s": _ratio_of_rates(
            "db_connection_hold_duration_seconds_sum", "db_connection_hold_duration_seconds_count"
        ),
        "created": "sum by ($by) (increase(db_pool_connections_created_total{$sel}[$w]))",
        "closed": "sum by ($by) (increase(db_pool_connections_closed_total{$sel}[$w]))",
    },
    notes={
        "acquire_s": "average wait of the acquires that had to wait (db_pool_wait_duration_seconds ÷ db_pool_wait_total)",
        "timeouts": "db_pool_exhausted_total, increase over the rate window",
    },
)

HIKARICP_MICROMETER = Preset(
    name="hikaricp",
    title="HikariCP via Micrometer (Spring Boot actuator)",
    marker="hikaricp_connections_active",
    pool_label="pool",
    queries={
        "max": "sum by ($by) (hikaricp_connections_max{$sel})",
        "min": "sum by ($by) (hikaricp_connections_min{$sel})",
        "in_use": "sum by ($by) (hikaricp_connections_active{$sel})",
        "idle": "sum by ($by) (hikaricp_connections_idle{$sel})",
        "pending": "sum by ($by) (hikaricp_connections_pending{$sel})",
        "timeouts": "sum by ($by) (increase(hikaricp_connections_timeout_total{$sel}[$w]))",
        "acquire_s": _ratio_of_rates(
            "hikaricp_connections_acquire_seconds_sum", "hikaricp_connections_acquire_seconds_count"
        ),
        "hold_s": _ratio_of_rates("hikaricp_connections_usage_seconds_sum", "hikaricp_connections_usage_seconds_count"),
        "created": "sum by ($by) (increase(hikaricp_connections_creation_seconds_count{$sel}[$w]))",
    },
    notes={
        "overflow": "HikariCP has no overflow concept",
        "closed": "HikariCP does not export closed connections",
        "created": "one creation-timer sample per physical connection opened",
    },
)

OTEL_NEW_SEMCONV = Preset(
    name="otel",
    title="OpenTelemetry db.client.connection.* (semconv ≥ 1.27)",
    marker="db_client_connection_count",
    pool_label="db_client_connection_pool_name",
    queries={
        "max": "sum by ($by) (db_client_connection_max{$sel})",
        "min": "sum by ($by) (db_client_connection_idle_min{$sel})",
        "in_use": 'sum by ($by) (db_client_connection_count{db_client_connection_state="used",$sel})',
        "idle": 'sum by ($by) (db_client_connection_count{db_client_connection_state="idle",$sel})',
        "pending": "sum by ($by) (db_client_connection_pending_requests{$sel})",
        "timeouts": "sum by ($by) (increase(db_client_connection_timeouts_total{$sel}[$w]))",
        "acquire_s": _ratio_of_rates(
            "db_client_connection_wait_time_seconds_sum", "db_client_connection_wait_time_seconds_count"
        ),
        "hold_s": _ratio_of_rates(
            "db_client_connection_use_time_seconds_sum", "db_client_connection_use_time_seconds_count"
        ),
        "created": "sum by ($by) (increase(db_client_connection_create_time_seconds_count{$sel}[$w]))",
    },
    notes={"created": "count of the create_time histogram (one observation per connection opened)"},
)

BUILTIN_PRESETS: dict[str, Preset] = {p.name: p for p in (DB_POOL, HIKARICP_MICROMETER, OTEL_NEW_SEMCONV)}


def get_builtin(name: str) -> Preset | None:
    return BUILTIN_PRESETS.get(name)


def assemble_readings(
    preset: Preset,
    results_by_field: Mapping[str, list[tuple[Mapping[str, str], float | None]]],
    ts: float,
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
