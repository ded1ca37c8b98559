"""The canonical pool model every exporter is mapped onto.

Pure: no Django, no I/O, no clock reads (`now` is passed in). Instants are
timezone-aware datetimes, durations float seconds (`stale_after_s`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

T = TypeVar("T", float, datetime)

# Canonical fields, in display order. Gauges: max, min, in_use, idle, pending,
# overflow. Per-interval (increase over the source's rate window): timeouts,
# acquisitions (connections checked out: the pool's throughput), conns_opened,
# conns_closed (physical connections opened / closed: counts, not row timestamps).
# Seconds (averages over the rate window): acquire_s, hold_s.
FIELDS: tuple[str, ...] = (
    "max",
    "min",
    "in_use",
    "idle",
    "pending",
    "overflow",
    "timeouts",
    "acquisitions",
    "acquire_s",
    "hold_s",
    "conns_opened",
    "conns_closed",
)
# Former names of canonical fields, for messages about files written before a rename.
RENAMED_FIELDS: Mapping[str, str] = {"created": "conns_opened", "closed": "conns_closed"}
FIELD_LABELS: Mapping[str, str] = {
    "max": "max size",
    "min": "min size",
    "in_use": "in use",
    "idle": "idle",
    "pending": "waiting",
    "overflow": "overflow",
    "timeouts": "timeouts",
    "acquisitions": "acquisitions",
    "acquire_s": "acquire time (s)",
    "hold_s": "hold time (s)",
    "conns_opened": "connections opened",
    "conns_closed": "connections closed",
}

STATUS_ORDER = ("crit", "warn", "ok", "stale", "unknown")


@dataclass(frozen=True, order=True)
class PoolKey:
    """Identity of one pool: (service, instance, pool)."""

    service: str
    instance: str
    pool: str


def parse_sample_value(raw: object) -> float | None:
    """Parse a Prometheus sample value ("1.5", "NaN", "+Inf") into a float or None.

    NaN and ±Inf count as no sample: a pool size of +Inf means nothing a human can
    act on, and storing it would poison averages and charts.
    """
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if math.isnan(value) or math.isinf(value):
        return None
    return value


def effective_max(max_value: float | None) -> float | None:
    """Go's database/sql reports max_open = 0 for "unlimited": treat as absent."""
    if max_value is None or max_value <= 0:
        return None
    return max_value


def utilization(in_use: float | None, max_value: float | None) -> float | None:
    """in_use / max as a fraction, or None when either side is absent."""
    limit = effective_max(max_value)
    if in_use is None or limit is None:
        return None
    return in_use / limit


@dataclass(frozen=True)
class PoolStatus:
    status: str  # one of STATUS_ORDER
    reason: str


def pool_status(
    values: Mapping[str, float | None],
    sampled_at: datetime | None,
    now: datetime,
    stale_after_s: float,
    *,
    warn_utilization: float = 0.9,
) -> PoolStatus:
    """Classify one pool's latest values.

    1. No sample at all: unknown. A sample older than stale_after_s: stale.
    2. Timeouts in the window, or every connection in use with callers waiting: crit.
    3. Callers waiting, or utilization at or above warn_utilization: warn.
    4. Otherwise ok.
    """
    if sampled_at is None:
        return PoolStatus("unknown", "no sample yet")
    age = (now - sampled_at).total_seconds()
    if age > stale_after_s:
        return PoolStatus("stale", f"no sample for {format_age(age)}")
    in_use = values.get("in_use")
    pending = values.get("pending") or 0.0
    timeouts = values.get("timeouts") or 0.0
    used = utilization(in_use, values.get("max"))
    if timeouts > 0:
        return PoolStatus("crit", f"{timeouts:g} acquire timeouts")
    if used is not None and used >= 1.0 and pending > 0:
        return PoolStatus("crit", f"exhausted: all connections in use, {pending:g} waiting")
    if pending > 0:
        return PoolStatus("warn", f"{pending:g} callers waiting")
    if used is not None and used >= warn_utilization:
        return PoolStatus("warn", f"{used:.0%} of max in use")
    return PoolStatus("ok", "healthy")


def sum_present(values: Iterable[float | None]) -> float | None:
    """Sum of the values that are present; None when none is (absent is not 0)."""
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def max_present(values: Iterable[T | None]) -> T | None:
    """Largest of the values that are present (numbers or datetimes); None when none is."""
    present = [v for v in values if v is not None]
    return max(present) if present else None


def format_age(seconds: float) -> str:
    """A short human age: 45s, 3m, 2h 5m, 4d 2h."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


@dataclass(frozen=True)
class Verdict:
    """An open diagnosis finding as the summary needs it (lib.diagnosis decides them)."""

    kind: str  # leak | stuck | saturation | slow_queries | churn | not_enough_data
    label: str  # "leak suspected"
    severity: str  # crit | warn | info
    since: datetime
    text: str  # its first piece of evidence


# Verdicts that say something about the data rather than the pool: they never colour a row.
UNCOLOURED_VERDICTS = ("not_enough_data",)


@dataclass(frozen=True)
class ServiceSummary:
    """One overview row: a service's pools added up, and what the diagnosis concluded."""

    in_use: float | None
    max: float | None
    idle: float | None
    pending: float | None
    timeouts: float | None
    utilization: float | None
    status: str
    reason: str
    last_sample: datetime | None  # newest sample time of any pool
    pool_count: int
    verdict: Verdict | None = None  # the one the row leads with
    verdicts: tuple[Verdict, ...] = ()


def summarize_service(
    pools: Iterable[tuple[Mapping[str, float | None], datetime | None]],
    now: datetime,
    stale_after_s: float,
    verdicts: Iterable[Verdict] = (),
) -> ServiceSummary:
    """Add up a service's pools (values, sampled_at) into one row.

    Utilization is Σin_use ÷ Σmax over the pools that report both, so one pool with
    an unknown max does not hide the others. Without verdicts the status is the worst
    pool's. With verdicts (most actionable first) the row leads with the first: a leak
    is no longer "healthy" while in use is below 90 %, and "leak suspected" replaces
    "exhausted" as the reason — unless the data is stale, which comes first because
    then no verdict can be trusted.
    """
    pools = list(pools)
    statuses = [pool_status(values, sampled, now, stale_after_s) for values, sampled in pools]
    both = [(v.get("in_use"), effective_max(v.get("max"))) for v, _ in pools]
    both = [(u, m) for u, m in both if u is not None and m is not None]
    worst = min(statuses, key=lambda s: STATUS_ORDER.index(s.status)) if statuses else PoolStatus("unknown", "no pools")
    verdicts = tuple(verdicts)
    coloured = [v for v in verdicts if v.kind not in UNCOLOURED_VERDICTS]
    lead = coloured[0] if coloured else None
    status, reason = worst.status, worst.reason
    if lead is not None and status not in ("stale", "unknown"):
        ranks = [STATUS_ORDER.index(status)] + [STATUS_ORDER.index(v.severity) for v in coloured if v.severity in ("crit", "warn")]
        status = STATUS_ORDER[min(ranks)]
        reason = lead.label
    return ServiceSummary(
        in_use=sum_present(v.get("in_use") for v, _ in pools),
        max=sum_present(effective_max(v.get("max")) for v, _ in pools),
        idle=sum_present(v.get("idle") for v, _ in pools),
        pending=sum_present(v.get("pending") for v, _ in pools),
        timeouts=sum_present(v.get("timeouts") for v, _ in pools),
        utilization=(sum(u for u, _ in both) / sum(m for _, m in both)) if both else None,
        status=status,
        reason=reason,
        last_sample=max_present(sampled for _, sampled in pools),
        pool_count=len(pools),
        verdict=lead if status not in ("stale", "unknown") else None,
        verdicts=verdicts,
    )
