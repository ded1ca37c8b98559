"""DEMO DATA: a few weeks of made-up history for the demo fleet, so `make demo` has reports.

The demo fleet only starts producing samples when `make demo` starts; a weekly report needs
complete past weeks. This writes, for the two weeks before the current one, 5-minute rollups
of each demo service shaped like its scenario (poolboard.demo: healthy, busy, leaking, idle in
transaction, slow queries, churn) with a daily cycle and a little growth week over week, six
weeks of snapshots of the demo server whose daily peaks rise (so the forecast has a trend),
the scenarios' episodes and findings — then builds last week's report, flagged `demo`, and
queues its email to a demo team subscription (DEMO_REPORT_ADDRESS) through the outbox, so the
demo's mail directory holds the email as subscribers get it.

Everything it makes is marked: findings' and episodes' text starts with DEMO_MARK, episodes'
application_name is "demo-history", and every report built from it has demo=True (the page
shows a banner). It never touches a week that has begun: live data takes over from there.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

from django.db import connection, transaction

from poolboard.databases.models import Episode, MonitoredServer, QueryFingerprint, Snapshot, snapshot_interval
from poolboard.demo.fleet import SERVICES, instance_ports
from poolboard.diagnosis.models import Finding
from poolboard.fleet.models import Pool, PrometheusSource, Service
from poolboard.history.models import PoolRollup5m
from poolboard.lib import capacity
from poolboard.lib.episodes import IDLE_IN_TRANSACTION, LONG_QUERY

from . import build, delivery
from .models import Report, ReportSchedule, Subscription, report_time_zone

DEMO_MARK = "[demo history]"
DEMO_APP = "demo-history"
# The demo's team subscription (example.org: reserved, never delivered anywhere real).
DEMO_REPORT_ADDRESS = "capacity-team@example.org"
BUCKET = timedelta(seconds=capacity.BUCKET_S)
# Weeks of made-up history: rollups for the report's week and the one before (week over week),
# snapshots for the forecast's 4–8 weeks of daily peaks.
ROLLUP_WEEKS = 2
SNAPSHOT_WEEKS = 6
DEMO_SERVER = "demo"
DEMO_DBNAME = "poolboard_demo"
DEMO_MAX_CONNECTIONS = 100
SLOW_QUERY = "SELECT pg_sleep($1)"
IDLE_QUERY = "UPDATE orders SET status = $1 WHERE id = $2"


class DemoHistoryError(Exception):
    pass


def load(hour: float) -> float:
    """0 at 04:00, 1 at 16:00 local: the daily cycle of the demo's traffic (as in ROLLUPS_SQL)."""
    return 0.5 - 0.5 * math.cos(2 * math.pi * (hour - 4) / 24)


# Every demo pool's 5-minute rollups in one statement (a Python loop and the ORM took ~20 s of
# `make demo`'s start). Traffic f follows the day (0 at 04:00, 1 at 16:00 local, 55 % at
# weekends) and grows 5 % a week; each scenario turns it into in use, waiting and timeouts.
ROLLUPS_SQL = """
INSERT INTO history_rollup_5m (pool_id, bucket, samples, in_use_avg, in_use_max, in_use_p95, max_avg, util_avg,
                               pending_max, saturated_s, waiting_s, timeouts, acquisitions, acquire_s_avg)
SELECT pool_id, b, 30, in_use, least(mx, in_use + 1), least(mx, in_use + 1), mx, in_use / mx,
       waiting_peak, saturated_s, waiting_s, timeouts, (20 + 200 * f) * growth * noise * 5, acquire_s
FROM unnest(%(pools)s::bigint[], %(scenarios)s::text[], %(maxes)s::float8[]) AS p(pool_id, scenario, mx)
CROSS JOIN generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '5 minutes', interval '5 minutes') AS b
CROSS JOIN LATERAL (
    SELECT (0.5 - 0.5 * cos(2 * pi() * (extract(hour FROM b AT TIME ZONE %(tz)s)
                                        + extract(minute FROM b AT TIME ZONE %(tz)s) / 60 - 4) / 24))
             * CASE WHEN extract(isodow FROM b AT TIME ZONE %(tz)s) >= 6 THEN 0.55 ELSE 1 END AS f,
           1 + 0.05 * extract(epoch FROM b - %(start)s::timestamptz) / 604800 AS growth,
           0.9 + 0.2 * random() AS noise,
           -- billing leaks a connection every ~15 s and is restarted once all are gone: a 6-minute saw
           ((extract(epoch FROM b)::bigint / 60) %% 6) / 6.0 AS phase
) AS t
CROSS JOIN LATERAL (
    SELECT CASE scenario
             WHEN 'busy' THEN (1.5 + 5 * f) * growth * noise
             WHEN 'leaking' THEN 1 + (mx - 1) * phase
             WHEN 'healthy' THEN (0.5 + 2.5 * f) * growth * noise
             WHEN 'idle_in_transaction' THEN (1.0 + 2.5 * f) * growth * noise
             WHEN 'slow_queries' THEN (1.0 + 3.5 * f) * growth * noise
             ELSE (0.5 + 1.5 * f) * growth * noise
           END AS demand
) AS d
CROSS JOIN LATERAL (
    SELECT least(mx, demand) AS in_use,
           CASE WHEN scenario = 'leaking' THEN (phase > 0.8)::int ELSE round(greatest(demand - mx, 0) * 2) END AS waiting_peak,
           -- Full (saturated) a little longer than callers queue (waiting): a pool at exactly max
           -- with nobody waiting yet is the first, not the second.
           CASE WHEN scenario = 'leaking' THEN 75.0 * (phase > 0.75)::int
                ELSE least(300, 200 * greatest(demand - mx, 0)) END AS saturated_s,
           CASE WHEN scenario = 'leaking' THEN 60.0 * (phase > 0.8)::int
                ELSE least(300, 150 * greatest(demand - mx, 0)) END AS waiting_s,
           CASE WHEN scenario = 'busy' AND random() < greatest(demand - mx, 0) / 6 THEN 1 ELSE 0 END AS timeouts,
           CASE WHEN scenario = 'leaking' THEN 0.01 + 0.5 * (phase > 0.8)::int
                WHEN scenario = 'busy' THEN 0.005 + 0.4 * greatest(demand - mx, 0)
                ELSE 0.002 + 0.01 * f END AS acquire_s
) AS v
"""


def _pools(source: PrometheusSource, server: MonitoredServer | None, base_port: int, start: datetime,
           end: datetime) -> dict[str, list[Pool]]:
    pools: dict[str, list[Pool]] = {}
    for spec, _instance, port in instance_ports(base_port):
        # On the demo server (what the sizing ledger needs to place it before any live snapshot).
        service, _ = Service.objects.get_or_create(
            name=spec.name, defaults={"source": source, "preset": spec.dialect, "server": server, "datname": DEMO_DBNAME},
        )
        # A pool made here gets its size (what the sizing ledger counts) as of the end of the
        # made-up history; the live collection overwrites it within seconds.
        pool, _ = Pool.objects.get_or_create(
            service=service, instance=f"127.0.0.1:{port}", name=spec.pool_label_value,
            defaults={"max": float(spec.pool_max), "first_seen_at": start, "sampled_at": end},
        )
        pools.setdefault(spec.name, []).append(pool)
    return pools


def seed(now: datetime, weeks: int = ROLLUP_WEEKS, base_port: int = 9201, seed_value: float = 0.7) -> dict:
    """Write demo history before the current week and build last week's report.

    Rollups cover `weeks` weeks (the report's and the one before it, for week-over-week);
    the server's snapshots cover SNAPSHOT_WEEKS, what the forecast fits.
    """
    tz = report_time_zone()
    current = capacity.period_containing(now, tz)
    last = current.previous()
    if Report.objects.filter(week=last.key).exists():
        return {"seeded": False, "reason": f"{last.key} already has a report"}
    source = PrometheusSource.objects.filter(name="demo").first() or PrometheusSource.objects.first()
    if source is None:
        raise DemoHistoryError("No Prometheus source: run `manage.py ensuresource demo URL` (make demo does) first.")
    rng = random.Random(seed_value)
    start = current.start - timedelta(days=7 * weeks)
    end = current.start
    zone = capacity.zone(tz)
    specs = {s.name: s for s in SERVICES}
    with transaction.atomic():
        server = MonitoredServer.objects.filter(name=DEMO_SERVER).first()
        pools = _pools(source, server, base_port, start, end)
        all_pools = [(pool, specs[name]) for name, ps in pools.items() for pool in ps]
        PoolRollup5m.objects.filter(pool__in=[p for p, _ in all_pools], bucket__gte=start, bucket__lt=end).delete()
        with connection.cursor() as cursor:
            cursor.execute("SELECT setseed(%s)", [seed_value])
            cursor.execute(ROLLUPS_SQL, {
                "pools": [p.pk for p, _ in all_pools], "scenarios": [spec.scenario for _, spec in all_pools],
                "maxes": [float(spec.pool_max) for _, spec in all_pools], "start": start, "end": end, "tz": tz,
            })
            rollups = cursor.rowcount
        episodes = findings = snapshots = 0
        if server is not None:
            snapshots = _snapshots(server, end - timedelta(days=7 * SNAPSHOT_WEEKS), end, zone, rng)
            episodes = _episodes(server, pools, start, end, rng)
        findings = _findings(pools, start, end)
    report = build.build(last, now, created_by="seeddemohistory", demo=True)
    ReportSchedule.claim(last)  # the beat must not build last week again
    # Due now: queued at once (the beat's weekly job would only look in up to 10 minutes), then
    # weekly on this weekday like any subscriber's.
    local_now = now.astimezone(zone)
    Subscription.objects.get_or_create(
        email=DEMO_REPORT_ADDRESS, user=None,
        defaults={"weekday": local_now.weekday(), "hour": local_now.hour, "time_zone": tz, "next_send_at": now},
    )
    emails = delivery.send_due(now)
    return {"seeded": True, "rollups": rollups, "snapshots": snapshots, "episodes": episodes, "findings": findings,
            "reports": [report.week], "emails": emails}


def _snapshots(server: MonitoredServer, start: datetime, end: datetime, zone, rng: random.Random) -> int:
    """One snapshot every 30 minutes; the fleet's connections plus a daily peak rising ~0.7 a day."""
    Snapshot.objects.filter(server=server, taken_at__gte=start, taken_at__lt=end).delete()
    interval = snapshot_interval()
    rows = []
    at = start
    while at < end:
        local = at.astimezone(zone)
        days = (at - start).total_seconds() / 86400
        total = int(18 + 0.7 * days + 22 * load(local.hour + local.minute / 60) + rng.randint(0, 3))
        # Slots count snapshot intervals as the live snapshots' do: "newest by slot" stays the newest.
        rows.append(Snapshot(server=server, slot=int(at.timestamp()) // interval, taken_at=at, created=at, total=total,
                             max_connections=DEMO_MAX_CONNECTIONS, superuser_reserved_connections=3))
        at += timedelta(minutes=30)
    Snapshot.objects.bulk_create(rows, batch_size=5000)
    return len(rows)


def _episodes(server, pools, start, end, rng) -> int:
    Episode.objects.filter(server=server, application_name=DEMO_APP, first_seen__gte=start, first_seen__lt=end).delete()
    fps = {
        kind: QueryFingerprint.objects.get_or_create(fingerprint=fp, defaults={
            "text": text, "first_seen": start, "last_seen": end})[0]
        for kind, fp, text in ((LONG_QUERY, "demo0000slow0001", SLOW_QUERY), (IDLE_IN_TRANSACTION, "demo0000idle0001",
                                                                               IDLE_QUERY))
    }
    owners = {LONG_QUERY: pools["reports"][0].service, IDLE_IN_TRANSACTION: pools["notifications"][0].service}
    rows = []
    at, pid = start, 10_000
    while at < end:
        for kind, every, ages in ((LONG_QUERY, 3, (35, 45)), (IDLE_IN_TRANSACTION, 2, (90, 120))):
            if rng.random() < 1 / every:
                pid += 1
                age = rng.uniform(*ages)
                began = at + timedelta(minutes=rng.uniform(0, 50))
                rows.append(Episode(server=server, kind=kind, pid=pid, started=began, first_seen=began,
                                    last_seen=began + timedelta(seconds=age), ended=began + timedelta(seconds=age + 10),
                                    peak_age_s=age, application_name=DEMO_APP, service=owners[kind], query=fps[kind],
                                    datname=DEMO_DBNAME, state=f"{DEMO_MARK} {kind}"[:50]))
        at += timedelta(hours=1)
    Episode.objects.bulk_create(rows, batch_size=5000)
    return len(rows)


def _findings(pools, start, end) -> int:
    Finding.objects.filter(summary__startswith=DEMO_MARK).delete()
    service = {name: ps[0].service for name, ps in pools.items()}
    rows = [
        Finding(service=service["billing"], kind="leak", severity="crit", confidence=0.9, opened_at=start + timedelta(days=3),
                last_seen_at=end, closed_at=end, summary=f"{DEMO_MARK} in use climbs 1 connection every ~15 s while "
                "throughput stays flat", fix="Return the connection taken in Leaking.leaky_refund_export."),
        Finding(service=service["sessions"], kind="churn", severity="warn", confidence=0.7, opened_at=start + timedelta(days=1),
                last_seen_at=end, closed_at=end, summary=f"{DEMO_MARK} connections live a few seconds: opened and closed "
                "faster than the pool's size explains", fix="Raise the pool's max lifetime."),
    ]
    day = start
    while day < end:
        rows.append(Finding(service=service["search"], kind="saturation", severity="warn", confidence=0.8,
                            opened_at=day + timedelta(hours=13), last_seen_at=day + timedelta(hours=18),
                            closed_at=day + timedelta(hours=18), summary=f"{DEMO_MARK} all 5 connections in use with "
                            "callers waiting, short queries", fix="Give search more connections."))
        day += timedelta(days=1)
    Finding.objects.bulk_create(rows)
    return len(rows)
