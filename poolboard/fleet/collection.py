"""One collection tick for one Prometheus source: query, map, store.

Cost is fixed per preset: one instant query per canonical field the preset gives,
whatever the number of services.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from poolboard.lib.pools import FIELDS, PoolKey
from poolboard.lib.presets import assemble_readings
from poolboard.sources.prometheus import PrometheusError

from .models import CollectionRun, Pool, PrometheusSource, Service
from .partitions import ensure_partitions_today

log = logging.getLogger(__name__)

COPY_SQL = "COPY fleet_poolsample (pool_id, ts, {}) FROM STDIN".format(", ".join(FIELDS))
LATEST_FROM_SAMPLES_SQL = (
    "UPDATE fleet_pool AS p SET sampled_at = s.ts, {} FROM fleet_poolsample AS s "
    "WHERE s.ts = %s AND s.pool_id = p.id"
).format(", ".join(f"{f} = s.{f}" for f in FIELDS))


# pg_advisory_lock key space: (LOCK_CLASS, source id). "pool" in ASCII.
LOCK_CLASS = 0x706F6F6C


@dataclass
class TickResult:
    source: str
    slot: int
    status: str  # ok | failed | skipped
    samples: int = 0
    queries: int = 0
    error: str = ""
    new_services: list[str] = field(default_factory=list)


def current_slot(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // settings.COLLECT_INTERVAL)


def slot_start(slot: int) -> datetime:
    """When collection slot `slot` begins (UTC)."""
    return datetime.fromtimestamp(slot * settings.COLLECT_INTERVAL, tz=dt_timezone.utc)


def claim_slot(source: PrometheusSource, slot: int) -> CollectionRun | None:
    """Insert the run row for (source, slot); None when another worker already has it."""
    try:
        with transaction.atomic():
            return CollectionRun.objects.create(source=source, slot=slot)
    except IntegrityError:
        return None


def fetch(source: PrometheusSource, at: float) -> tuple[dict[str, dict[PoolKey, dict[str, float | None]]], int]:
    """Run every preset query for this source at instant `at`. Raises PrometheusError.

    One instant query per canonical field per preset, whatever the number of services.
    The first failing query stops the tick: a tick is stored whole or not at all.
    """
    by_preset: dict[str, dict[PoolKey, dict[str, float | None]]] = {}
    queries = 0
    with source.client() as client:
        for preset in source.preset_objects():
            results = {}
            for canonical_field in preset.queries:
                try:
                    series = client.instant(preset.query(canonical_field, window=source.rate_window), at=at)
                except PrometheusError as exc:
                    # Name the query when the query is the problem: with a dozen presets
                    # "Prometheus rejected the query" alone is useless.
                    if exc.kind in ("rejected", "too_many_series"):
                        raise PrometheusError(exc.kind, f"{preset.name} {canonical_field}: {exc.message}") from None
                    raise
                queries += 1
                results[canonical_field] = [(s.labels, s.value) for s in series]
            by_preset[preset.name] = assemble_readings(preset, results)
    return by_preset, queries


@contextmanager
def source_lock(source: PrometheusSource) -> Iterator[bool]:
    """A session-level advisory lock on this source: True when we hold it.

    Two ticks of one source never overlap (a slow tick running into the next slot, two
    workers with different clocks). A session lock, not an xact lock, because the
    Prometheus queries run outside any transaction: a transaction held open across
    HTTP calls would be the very idle-in-transaction session poolboard hunts.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_CLASS, source.pk])
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_CLASS, source.pk])


def store(source: PrometheusSource, by_preset, ts: datetime) -> tuple[int, list[str]]:
    """Write one tick in one transaction: new services/pools, latest values, raw samples (COPY)."""
    services = {s.name: s for s in Service.objects.filter(source=source)}
    # Service names are unique across sources: a name another source owns is left alone.
    taken = set(Service.objects.exclude(source=source).values_list("name", flat=True))
    new_services: list[str] = []
    rows: list[tuple[PoolKey, Service, dict[str, float | None]]] = []
    seen_services: set[str] = set()
    for preset_name, readings in by_preset.items():
        for key, values in readings.items():
            if key.service in taken:
                continue
            service = services.get(key.service)
            if service is None:
                service = Service.objects.create(name=key.service, source=source, preset=preset_name)
                services[key.service] = service
                new_services.append(key.service)
            elif service.preset != preset_name:
                # The same job exporting a second dialect: keep the service's own preset.
                continue
            seen_services.add(key.service)
            rows.append((key, service, values))

    # Pool ids only, as tuples: 10 000 Pool instances cost more than the rest of the store.
    existing = {
        (service_id, instance, name): pool_id
        for service_id, instance, name, pool_id in Pool.objects.filter(service__source=source).values_list(
            "service_id", "instance", "name", "id"
        )
    }
    missing = {
        (service.id, key.instance, key.pool): Pool(service=service, instance=key.instance, name=key.pool, first_seen_at=ts)
        for key, service, _ in rows
        if (service.id, key.instance, key.pool) not in existing
    }
    # One INSERT for all new pools (PostgreSQL returns their ids), not one per pool.
    for pool in Pool.objects.bulk_create(list(missing.values()), batch_size=1000):
        existing[(pool.service_id, pool.instance, pool.name)] = pool.id
    copy_rows = [
        (existing[(service.id, key.instance, key.pool)], ts, *(values.get(f) for f in FIELDS))
        for key, service, values in rows
    ]
    with connection.cursor() as cursor:
        with cursor.cursor.copy(COPY_SQL) as copy:
            for row in copy_rows:
                copy.write_row(row)
        # The newest values go onto the pool rows straight from the samples just copied:
        # one statement joined on the primary key (pool_id, ts), instead of an ORM
        # bulk_update whose CASE expressions cost ~10x the whole tick at 2 000 pools.
        cursor.execute(LATEST_FROM_SAMPLES_SQL, [ts])

    Service.objects.filter(source=source, name__in=seen_services).update(last_seen_at=ts, stale_since=None)
    Service.objects.filter(source=source, stale_since__isnull=True).exclude(name__in=seen_services).update(
        stale_since=ts
    )
    return len(copy_rows), new_services


def collect_source(source: PrometheusSource, slot: int) -> TickResult:
    """Collect one source for one slot, once.

    1. Take the source's advisory lock; if another tick of it runs, skip.
    2. Claim (source, slot); if another worker has it, skip.
    3. Query Prometheus at one instant (outside any transaction).
    4. In one transaction: create services/pools, update latest values, COPY samples.
    5. On a Prometheus error nothing is stored but the failed run and the error.
    """
    with source_lock(source) as held:
        if not held:
            return TickResult(source.name, slot, "skipped", error="another collection of this source is running")
        return _collect_locked(source, slot)


def _collect_locked(source: PrometheusSource, slot: int) -> TickResult:
    run = claim_slot(source, slot)
    if run is None:
        when = slot_start(slot).strftime("%H:%M:%S")
        return TickResult(source.name, slot, "skipped", error=f"slot {when} UTC already collected by another run")
    if not source.preset_names() and source.discovered_at is None:
        # Nothing configured and never discovered: discover first (one marker query).
        from .discovery import discover_source

        discover_source(source)
        source.refresh_from_db()
    started = time.monotonic()
    # Evaluate at the moment of collection, not at the slot's start: a tick that runs
    # late in its slot must still see the newest scrape. One instant for every query
    # keeps the fields of one sample consistent with each other.
    at = round(time.time(), 3)
    ts = datetime.fromtimestamp(at, tz=dt_timezone.utc)
    try:
        by_preset, queries = fetch(source, at)
    except PrometheusError as exc:
        finish_failed(source, run, exc.message, started)
        return TickResult(source.name, slot, "failed", error=exc.message)
    try:
        ensure_partitions_today(ts)
        with transaction.atomic():
            samples, new_services = store(source, by_preset, ts)
            now = timezone.now()
            run.status, run.finished, run.samples, run.queries = CollectionRun.OK, now, samples, queries
            run.duration_s = time.monotonic() - started
            run.save(update_fields=["status", "finished", "samples", "queries", "duration_s"])
            PrometheusSource.objects.filter(pk=source.pk).update(last_success_at=now)
    except Exception as exc:  # a storage failure must be recorded, not crash the worker
        log.exception("storing collection of %s slot %s failed", source.name, slot)
        finish_failed(source, run, f"storing samples failed: {exc.__class__.__name__}: {exc}", started)
        return TickResult(source.name, slot, "failed", error=str(exc))
    return TickResult(source.name, slot, "ok", samples=samples, queries=queries, new_services=new_services)


def finish_failed(source: PrometheusSource, run: CollectionRun, message: str, started: float) -> None:
    now = timezone.now()
    CollectionRun.objects.filter(pk=run.pk).update(
        status=CollectionRun.FAILED, finished=now, error=message, duration_s=time.monotonic() - started
    )
    PrometheusSource.objects.filter(pk=source.pk).update(last_error_at=now, last_error=message)
    log.warning("collection of %s failed: %s", source.name, message)


def collect_all(slot: int | None = None) -> list[TickResult]:
    slot = current_slot() if slot is None else slot
    return [collect_source(source, slot) for source in PrometheusSource.objects.filter(enabled=True)]
