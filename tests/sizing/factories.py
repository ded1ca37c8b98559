"""Stored inputs for the sizing: a server with a snapshot, pools with a week of rollups, findings."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from poolboard.databases.models import MonitoredServer, SessionCount, Snapshot
from poolboard.demo.fleet import SERVICES
from poolboard.diagnosis.models import Finding
from poolboard.fleet.models import Pool, Service
from poolboard.history.models import PoolRollup1h
from poolboard.lib.rollups import ONE_HOUR, bucket_start


def server_with_snapshot(name: str, now: datetime, *, max_connections: int = 100, total: int = 41,
                         superuser_reserved: int = 3, reserved: int | None = None) -> MonitoredServer:
    server = MonitoredServer.objects.create(name=name, host=f"{name}.invalid", port=5432)
    Snapshot.objects.create(server=server, slot=int(now.timestamp()) // 10, taken_at=now, total=total,
                            max_connections=max_connections, superuser_reserved_connections=superuser_reserved,
                            reserved_connections=reserved)
    return server


def seen_on(server: MonitoredServer, service: Service, now: datetime, count: int = 3, datname: str = "app") -> None:
    """A newer snapshot of `server` in which `service` holds `count` sessions on `datname`."""
    slot = server.snapshots.order_by("-slot").values_list("slot", flat=True).first() or 0
    snap = Snapshot.objects.create(server=server, slot=slot + 1, taken_at=now, total=count,
                                   max_connections=100, superuser_reserved_connections=3)
    SessionCount.objects.create(snapshot=snap, application_name=service.name, state="idle", count=count,
                                service=service, datname=datname)


def pools(service: Service, instances: int, *, max: float | None, min: float | None = None, now: datetime,
          name: str = "main") -> list[Pool]:
    return Pool.objects.bulk_create(
        Pool(service=service, instance=f"10.0.0.{i}:8080", name=name, max=max, min=min, in_use=0,
             sampled_at=now - timedelta(seconds=5))
        for i in range(instances)
    )


def week_of_rollups(pool_rows: list[Pool], now: datetime, *, in_use_p95: float, pending_p95: float = 0.0,
                    in_use_max: float | None = None, pending_max: float | None = None, hours: int = 7 * 24,
                    acquisitions: float | None = None, hold_s: float | None = None, timeouts: float = 0.0) -> int:
    """Every 1-hour bucket of the last `hours`, the same values in each, for each pool; samples every 15 s."""
    values = {
        "in_use_p95": in_use_p95, "in_use_max": in_use_max if in_use_max is not None else in_use_p95,
        "in_use_avg": in_use_p95 / 2, "in_use_min": 0, "pending_p95": pending_p95,
        "pending_max": pending_max if pending_max is not None else pending_p95, "pending_avg": pending_p95 / 2,
        "pending_min": 0, "hold_s_avg": hold_s, "timeouts": timeouts,
    }
    hourly = [
        PoolRollup1h(pool=p, bucket=bucket_start(now, ONE_HOUR) - timedelta(hours=i), samples=240, max_avg=p.max,
                     acquisitions=acquisitions, saturated_s=3600.0 if pending_p95 else 0.0, **values)
        for p in pool_rows for i in range(hours)
    ]
    PoolRollup1h.objects.bulk_create(hourly, batch_size=5000)
    return len(hourly)


def open_finding(service: Service, kind: str, now: datetime, **detail) -> Finding:
    return Finding.objects.create(service=service, kind=kind, severity="warn", confidence=0.9, opened_at=now,
                                  last_seen_at=now, summary=f"{kind} of {service.name}", fix="fix it", detail=detail)


# What each demo scenario asks of its pool, per instance, worked out from poolboard/demo/scenarios.py.
DEMO_LOAD = {
    # Healthy: 3 workers, ~15 ms held then 100-300 ms paused → rarely more than 2 at once, 3 at most.
    "checkout": {"in_use_p95": 2, "in_use_max": 3},
    # Busy: 12 workers on 5 connections, 50-150 ms held, ≤ 10 ms paused → 5 in use, 7 waiting.
    "search": {"in_use_p95": 5, "pending_p95": 7, "in_use_max": 5, "pending_max": 7},
    # Leaking: in use climbs to its 10; the leak finding is open.
    "billing": {"in_use_p95": 10, "pending_p95": 1},
    # Idle in transaction: 2 digests held 90-120 s + 3 pushes → up to 5 of 6; abandoned transactions (leak).
    "notifications": {"in_use_p95": 5},
    # Slow queries: 3 reports of 35-45 s + 3 lookups → 4-5 of 6, long queries hold most of the time.
    "reports": {"in_use_p95": 5},
    # Churn: 4 workers, short queries → 3 at most of 5.
    "sessions": {"in_use_p95": 3},
}


def demo_fleet_stored(source, name: str = "demo"):
    """The demo's six services as poolboard stores them after a week: pools, rollups, open findings."""
    now = timezone.now()
    server = server_with_snapshot(name, now, max_connections=100, total=45)
    for spec in SERVICES:
        svc = Service.objects.create(name=spec.name, source=source, preset="db_pool", server=server)
        rows = pools(svc, spec.instances, max=spec.pool_max, now=now)
        week_of_rollups(rows, now, **DEMO_LOAD[spec.name])
    by_name = {s.name: s for s in Service.objects.all()}
    open_finding(by_name["billing"], "leak", now)
    open_finding(by_name["notifications"], "leak", now)
    open_finding(by_name["reports"], "slow_queries", now, fingerprints=[{"fingerprint": "a1", "share": 0.62},
                                                                        {"fingerprint": "b2", "share": 0.08}])
    return server, now
