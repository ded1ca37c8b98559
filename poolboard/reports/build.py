"""Compute one week's report from the stored history, and store it.

A fixed number of SQL queries whatever the fleet size (bench_report checks 10 services and
1 000 cost the same): the heavy lifting (percentiles over a week of 5-minute buckets per
service, daily peaks per local day) is done by PostgreSQL in one statement whose definitions
are those of poolboard.lib.capacity.week_figures (a test holds the two together).

Sections whose source is missing (no monitored server, no sizing app yet) are left out with
a note saying why, so a report never shows an empty table as "all is well".
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Count, IntegerField, Max, Q, Value, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from poolboard.databases.models import Episode, MonitoredServer, Percentile, Snapshot
from poolboard.diagnosis.models import Finding
from poolboard.fleet.models import CustomPreset, Pool, Service
from poolboard.history.rollup import RES_5M
from poolboard.lib import capacity
from poolboard.lib.budget import WARN_FRACTION
from poolboard.lib.episodes import IDLE_IN_TRANSACTION, LONG_QUERY

from .models import Report, report_time_zone

log = logging.getLogger(__name__)

# Bumped when a figure's definition changes: stored with every report (its inputs), so an
# old report says which definitions made it. 2: saturation minutes are minutes with callers
# waiting (pending > 0); version 1 also counted minutes with every connection in use.
FIGURES_VERSION = 2
FINDING_KINDS = ("leak", "stuck", "saturation", "slow_queries", "churn")
TOP_FINGERPRINTS = 3

# Per service per 5-minute bucket, its pools added up: the lib.capacity.Bucket fields.
BUCKETS_CTE = """
    SELECT p.service_id, r.bucket,
           sum(r.in_use_avg) AS in_use, sum(r.in_use_max) AS in_use_peak, sum(r.max_avg) AS max,
           max(r.pending_max) AS pending_peak,
           -- the busiest pool's: two pools with callers waiting in the same minute are one
           -- saturation minute (the report's "minutes with waiters > 0"; rollups.waiting_seconds)
           max(r.waiting_s) AS waiting_s,
           sum(r.timeouts) AS timeouts, sum(r.acquisitions) AS acquisitions, avg(r.acquire_s_avg) AS acquire_s
    FROM {table} r JOIN fleet_pool p ON p.id = r.pool_id
    WHERE r.bucket >= %(start)s AND r.bucket < %(end)s {only}
    GROUP BY p.service_id, r.bucket
"""

# Each service's two weeks (wk 0 = the week before, 1 = the report's) and their local days.
WEEK_SQL = """
WITH b AS ({buckets}),
d AS (
    SELECT *, CASE WHEN bucket >= %(mid)s THEN 1 ELSE 0 END AS wk,
           (bucket AT TIME ZONE %(tz)s)::date AS day,
           coalesce(in_use_peak, in_use) AS peak,
           in_use / nullif(max, 0) AS util,
           coalesce(in_use_peak, in_use) / nullif(max, 0) AS peak_util,
           timeouts IS NOT NULL AND acquisitions IS NOT NULL AS paired
    FROM b
)
SELECT service_id, wk, day, count(*), max(peak), percentile_cont(0.95) WITHIN GROUP (ORDER BY in_use), max(max),
       max(peak_util), percentile_cont(0.95) WITHIN GROUP (ORDER BY util),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY util),
       sum(waiting_s), sum(timeouts), sum(acquisitions),
       sum(timeouts) FILTER (WHERE paired), sum(acquisitions) FILTER (WHERE paired),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY acquire_s),
       (array_agg(max ORDER BY bucket) FILTER (WHERE max IS NOT NULL))[1],
       (array_agg(max ORDER BY bucket DESC) FILTER (WHERE max IS NOT NULL))[1]
FROM d
GROUP BY GROUPING SETS ((service_id, wk), (service_id, wk, day))
"""


def service_buckets(service_ids: list[int] | None, start: datetime, end: datetime) -> dict[int, list[capacity.Bucket]]:
    """The Bucket rows the report's SQL works on, for the tests and small charts."""
    only = "AND p.service_id = ANY(%(ids)s)" if service_ids is not None else ""
    sql = BUCKETS_CTE.format(table=RES_5M.table, only=only) + " ORDER BY 1, 2"
    out: dict[int, list[capacity.Bucket]] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute(sql, {"start": start, "end": end, "ids": service_ids})
        for sid, *values in cursor.fetchall():
            out[sid].append(capacity.Bucket(*values))
    return out


def _week_rows(period: capacity.Period) -> dict[int, dict[int, capacity.WeekFigures]]:
    """{service_id: {wk: WeekFigures}} for the week before (0) and the report's week (1)."""
    previous = period.previous()
    sql = WEEK_SQL.format(buckets=BUCKETS_CTE.format(table=RES_5M.table, only=""))
    params = {"start": previous.start, "mid": period.start, "end": period.end, "tz": period.tz}
    with transaction.atomic(), connection.cursor() as cursor:
        # Two weeks of every pool's buckets are sorted twice (per bucket, per service): in memory,
        # not in temporary files (4 MB is PostgreSQL's default).
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    weeks = {0: previous, 1: period}
    day_index = {wk: {d: i for i, (d, _, _) in enumerate(p.days())} for wk, p in weeks.items()}
    out: dict[int, dict[int, capacity.WeekFigures]] = defaultdict(dict)
    days: dict[tuple[int, int], list] = {}
    for (sid, wk, day, n, peak, p95, mx, peak_util, p95_util, p99_util, sat, timeouts, acqs, paired_t, paired_a,
         acquire_p95, first_max, last_max) in rows:
        if day is not None:
            days[(sid, wk, day)] = (peak, p95)
            continue
        fig = capacity.WeekFigures(
            coverage=min(n * RES_5M.width_s / weeks[wk].seconds, 1.0),
            peak_in_use=peak, p95_in_use=p95, max=mx, peak_util=peak_util, p95_util=p95_util, p99_util=p99_util,
            saturation_minutes=sat / 60 if sat is not None else None, timeouts=timeouts, acquisitions=acqs,
            timeouts_per_1k=1000 * paired_t / paired_a if paired_a else None, acquire_p95_s=acquire_p95,
            first_max=first_max, last_max=last_max,
        )
        out[sid][wk] = fig
    for sid, by_wk in out.items():
        for wk, fig in by_wk.items():
            fig.daily_peak = [None] * 7
            fig.daily_p95 = [None] * 7
            for day, i in day_index[wk].items():
                if (sid, wk, day) in days:
                    fig.daily_peak[i], fig.daily_p95[i] = days[(sid, wk, day)]
    return out


CHANGED_FIGURES = ("peak_util", "p95_util", "p99_util", "saturation_minutes", "timeouts_per_1k", "acquire_p95_s")


def _service_section(period, services, weeks, findings, episodes, sizing) -> list[dict]:
    rows = []
    for svc in services:
        by_wk = weeks.get(svc.pk, {})
        cur = by_wk.get(1) or capacity.WeekFigures(daily_peak=[None] * 7, daily_p95=[None] * 7)
        prev = by_wk.get(0) or capacity.WeekFigures(daily_peak=[None] * 7, daily_p95=[None] * 7)
        changes = {name: capacity.change(getattr(cur, name), getattr(prev, name)).as_dict() for name in CHANGED_FIGURES}
        rows.append({
            "id": svc.pk,
            "name": svc.name,
            "preset": svc.preset,
            "pools": svc.pool_count,
            "figures": cur.as_dict(),
            "enough_data": cur.enough_data,
            "previous": prev.as_dict(),
            "changes": changes,
            "findings": findings.get(svc.pk, []),
            "episodes": episodes.get(svc.pk, {}),
            "sizing": sizing.get(svc.name) if sizing is not None else None,
            "created": svc.created.isoformat(),
        })
    return rows


def _findings(period, service_ids) -> dict[int, list[dict]]:
    """Findings open at some time in the week, with when they were first seen."""
    out: dict[int, list[dict]] = defaultdict(list)
    rows = (
        Finding.objects.filter(service_id__in=service_ids, opened_at__lt=period.end)
        .filter(Q(closed_at__isnull=True) | Q(closed_at__gte=period.start))
        .order_by("service_id", "opened_at")
        .values("service_id", "kind", "severity", "summary", "opened_at", "closed_at")
    )
    for f in rows:
        still_open = f["closed_at"] is None or f["closed_at"] >= period.end
        out[f["service_id"]].append({
            "kind": f["kind"], "severity": f["severity"], "summary": f["summary"],
            "opened_at": f["opened_at"].isoformat(),
            "closed_at": None if still_open else f["closed_at"].isoformat(),
            "open": still_open,
        })
    return out


def _episodes(period) -> dict[int, dict]:
    """Per service: idle-in-transaction and long-query episodes seen in the week."""
    seen = Episode.objects.filter(
        service__isnull=False, kind__in=[IDLE_IN_TRANSACTION, LONG_QUERY], first_seen__lt=period.end
    ).filter(Q(ended__isnull=True) | Q(ended__gte=period.start))
    out: dict[int, dict] = defaultdict(dict)
    for row in seen.values("service_id", "kind").annotate(n=Count("id"), longest=Max("peak_age_s")):
        out[row["service_id"]][row["kind"]] = {"count": row["n"], "longest_s": row["longest"], "top": []}
    tops = (
        seen.filter(query__isnull=False)
        .values("service_id", "kind", "query__fingerprint", "query__text")
        .annotate(n=Count("id"), longest=Max("peak_age_s"))
        .order_by("service_id", "kind", "-n", "-longest")
    )
    for row in tops:
        entry = out[row["service_id"]][row["kind"]]
        if len(entry["top"]) < TOP_FINGERPRINTS:
            entry["top"].append({"fingerprint": row["query__fingerprint"], "text": (row["query__text"] or "")[:200],
                                 "count": row["n"], "longest_s": row["longest"]})
    return out


def _database_section(period, servers) -> list[dict]:
    """Per monitored server: peak and p95 connections, usable and the 80 % line, the forecast."""
    if not servers:
        return []
    previous = period.previous()
    in_week = Snapshot.objects.filter(taken_at__gte=previous.start, taken_at__lt=period.end)
    stats = {
        (r["server_id"], r["wk"]): r
        for r in in_week.annotate(wk=_week_of(period.start))
        .values("server_id", "wk")
        .annotate(peak=Max("total"), p95=Percentile("total", 0.95), n=Count("id"))
    }
    fit_start = period.end - timedelta(days=capacity.FORECAST_MAX_DAYS + 1)
    tz = ZoneInfo(period.tz)
    daily = defaultdict(dict)
    for r in (
        Snapshot.objects.filter(taken_at__gte=fit_start, taken_at__lt=period.end)
        .annotate(day=TruncDate("taken_at", tzinfo=tz))
        .values("server_id", "day")
        .annotate(peak=Max("total"))
    ):
        daily[r["server_id"]][r["day"]] = r["peak"]
    newest = {
        s.server_id: s
        for s in Snapshot.objects.filter(taken_at__lt=period.end).order_by("server_id", "-slot").distinct("server_id")
    }
    last_day = period.days()[-1][0]
    week_days = [d for d, _, _ in period.days()]
    prev_days = [d for d, _, _ in previous.days()]
    rows = []
    for server in servers:
        snap = newest.get(server.pk)
        usable = snap.server_settings().usable if snap else None
        cur, prev = stats.get((server.pk, 1)), stats.get((server.pk, 0))
        peaks = daily.get(server.pk, {})
        points = [((day - last_day).days, peak) for day, peak in sorted(peaks.items()) if day <= last_day]
        fc = capacity.forecast(points, usable)
        peak = cur["peak"] if cur else None
        rows.append({
            "name": server.name,
            "usable": usable,
            "max_connections": snap.max_connections if snap else None,
            "warn_line": round(usable * WARN_FRACTION, 1) if usable else None,
            "peak": peak,
            "p95": cur["p95"] if cur else None,
            "snapshots": cur["n"] if cur else 0,
            "peak_pct": 100.0 * peak / usable if peak is not None and usable else None,
            "previous_peak": prev["peak"] if prev else None,
            "change": capacity.change(peak, prev["peak"] if prev else None).as_dict(),
            "daily_peak": [peaks.get(d) for d in week_days],
            "previous_daily_peak": [peaks.get(d) for d in prev_days],
            "forecast": fc.as_dict(),
        })
    return rows


def _week_of(mid: datetime) -> Case:
    """1 for a snapshot in the report's week, 0 for the week before."""
    return Case(When(taken_at__gte=mid, then=Value(1)), default=Value(0), output_field=IntegerField())


def _sizing(period) -> tuple[dict | None, dict | None, str | None]:
    """Per-service recommendation and per-server committed capacity from the sizing app,
    or a note when it is not there (it is built alongside this report)."""
    try:
        from poolboard.sizing.recommend import fleet_sizing
    except ImportError:
        return None, None, "Sizing recommendations are not in this report: this poolboard has no sizing yet."
    try:
        result = fleet_sizing(period.end)
    except Exception as exc:  # a sizing bug must not cost the whole report
        log.exception("sizing failed for the weekly report")
        return None, None, f"Sizing recommendations are missing: the sizing failed ({type(exc).__name__})."
    return sizing_adapter(result)


def sizing_adapter(result) -> tuple[dict, dict, str | None]:
    """fleet_sizing()'s answer as plain JSON: ({service: {text, items}}, {server: ledger}, None)."""
    services: dict[str, dict] = {}
    for name, pairs in result.by_service.items():
        items = []
        for _, rec in pairs:
            items.append({
                "pool": rec.pool.pool, "action": rec.action, "label": rec.label, "current": rec.current,
                "recommended": rec.recommended, "change": rec.change, "reason": rec.reason,
            })
        changing = [i for i in items if i["change"]]
        # Only the pools whose size should change: "keep" or "max unknown" for every pool is noise.
        text = "; ".join(f"{i['label']} {i['pool'] or 'pool'} {i['current']} → {i['recommended']}" for i in changing)
        services[name] = {"text": text, "items": items}
    servers = {}
    for ss in result.servers:
        ledger = ss.sizing.ledger
        servers[ss.name] = {"committed": ledger.committed, "usable": ledger.usable, "warn_line": ledger.warn_line,
                            "verdict": ledger.verdict(), "overcommitted": ledger.overcommitted}
    return services, servers, None


def _changes(period, services, weeks, previous_report: Report | None) -> dict:
    prev_services = {s["name"]: s for s in (previous_report.numbers.get("services", []) if previous_report else [])}
    new, vanished, max_changes, preset_changes = [], [], [], []
    for svc in services:
        by_wk = weeks.get(svc.pk, {})
        had_prev = 0 in by_wk and by_wk[0].coverage > 0
        has_cur = 1 in by_wk and by_wk[1].coverage > 0
        if (period.start <= svc.created < period.end) or (has_cur and not had_prev):
            new.append(svc.name)
        elif had_prev and not has_cur:
            vanished.append(svc.name)
        if has_cur:
            cur = by_wk[1]
            before = by_wk[0].last_max if had_prev else cur.first_max
            after = cur.last_max
            if before is not None and after is not None and round(before, 3) != round(after, 3):
                max_changes.append({"service": svc.name, "from": before, "to": after})
        old = prev_services.get(svc.name)
        if old and old.get("preset") and old["preset"] != svc.preset:
            preset_changes.append({"service": svc.name, "from": old["preset"], "to": svc.preset})
    new_presets = list(
        CustomPreset.objects.filter(created__gte=period.start, created__lt=period.end).values_list("name", flat=True)
    )
    return {"new_services": new, "vanished_services": vanished, "max_changes": max_changes,
            "preset_changes": preset_changes, "new_presets": new_presets}


def _actions(services: list[dict], databases: list[dict]) -> list[dict]:
    """Candidates for "the three things most worth doing", scored by urgency."""
    actions = []
    for db in databases:
        fc = db["forecast"]
        if fc["status"] == "exhausted":
            actions.append(capacity.Action(100, f"{db['name']}: daily peaks are at the connection budget "
                                                f"({db['usable']} usable): raise max_connections or shrink pools.",
                                           db["name"], "budget"))
        elif fc["status"] == "rising" and fc["days"] <= 90:
            actions.append(capacity.Action(100 - fc["days"] / 3, f"{db['name']}: connections reach the budget in "
                                           f"{fc['label']} at this trend: plan pool sizes or max_connections now.",
                                           db["name"], "budget"))
        if db["peak_pct"] is not None and db["peak_pct"] >= 100 * WARN_FRACTION:
            actions.append(capacity.Action(50 + db["peak_pct"] / 10, f"{db['name']}: peaked at {db['peak_pct']:.0f} % "
                                           f"of usable connections ({db['peak']} of {db['usable']}).",
                                           db["name"], "budget"))
    for svc in services:
        name = svc["name"]
        open_kinds = {f["kind"]: f for f in svc["findings"] if f["open"]}
        if "leak" in open_kinds:
            actions.append(capacity.Action(90, f"{name}: fix the connection leak suspected since "
                                           f"{open_kinds['leak']['opened_at'][:16].replace('T', ' ')} UTC.", name, "leak"))
        fig = svc["figures"]
        minutes = fig["saturation_minutes"] or 0
        if minutes >= 1:
            extra = ""
            if svc.get("sizing") and svc["sizing"].get("text"):
                extra = f" Sizing: {svc['sizing']['text']}"
            actions.append(capacity.Action(min(85, 20 + minutes / 10), f"{name}: saturated {minutes:,.0f} min this week "
                                           f"(callers waited for a connection).{extra}", name, "saturation"))
        idle = svc["episodes"].get(IDLE_IN_TRANSACTION)
        if idle and idle["count"]:
            actions.append(capacity.Action(30 + min(idle["count"], 40), f"{name}: {idle['count']} idle-in-transaction "
                                           f"episodes (longest {idle['longest_s']:.0f} s): commit or roll back before "
                                           "slow work.", name, "idle"))
        slow = svc["episodes"].get(LONG_QUERY)
        if slow and slow["count"]:
            actions.append(capacity.Action(25 + min(slow["count"], 20), f"{name}: {slow['count']} long queries "
                                           f"(longest {slow['longest_s']:.0f} s) held its connections.", name, "slow"))
        if "churn" in open_kinds:
            actions.append(capacity.Action(20, f"{name}: connections are opened and closed too fast for its pool "
                                           "(churn): raise its max lifetime.", name, "churn"))
    return [{"text": a.text, "subject": a.subject, "kind": a.kind} for a in capacity.top_actions(actions)]


def compute(period: capacity.Period, now: datetime) -> tuple[dict, dict]:
    """(numbers, inputs) of the report of `period`."""
    services = list(Service.objects.annotate(pool_count=Count("pools")).order_by("name"))
    weeks = _week_rows(period)
    findings = _findings(period, [s.pk for s in services])
    episodes = _episodes(period)
    servers = list(MonitoredServer.objects.order_by("name"))
    sizing_services, sizing_servers, sizing_note = _sizing(period)
    service_rows = _service_section(period, services, weeks, findings, episodes, sizing_services)
    database_rows = _database_section(period, servers)
    if sizing_servers is not None:
        for row in database_rows:
            row["sizing"] = sizing_servers.get(row["name"])
    previous_report = Report.objects.of_week(period.previous().key)
    notes = []
    if sizing_note:
        notes.append(sizing_note)
    if not servers:
        notes.append("No monitored PostgreSQL server: the per-database section (connections against the budget and "
                      "days until it runs out) needs one (Admin › Monitored servers).")
    if not services:
        notes.append("No service is watched yet: add a Prometheus source (manage.py init).")
    numbers = {
        "period": {
            "week": period.key, "time_zone": period.tz, "start": period.start.isoformat(),
            "end": period.end.isoformat(), "real_hours": period.real_hours,
            "days": [d.isoformat() for d, _, _ in period.days()],
        },
        "generated_at": now.isoformat(),
        "headline": {
            "services": len(services),
            "pools": sum(s.pool_count for s in services),
            "databases": len(servers),
            "saturated_services": sum(1 for s in service_rows if (s["figures"]["saturation_minutes"] or 0) >= 1),
            "leak_suspects": sum(1 for s in service_rows if any(f["kind"] == "leak" and f["open"] for f in s["findings"])),
            "actions": _actions(service_rows, database_rows),
        },
        "databases": database_rows,
        "services": service_rows,
        "changes": _changes(period, services, weeks, previous_report),
        "sections": {"sizing": sizing_services is not None, "databases": bool(servers)},
        "notes": notes,
    }
    inputs = {
        "figures_version": FIGURES_VERSION,
        "rollups": RES_5M.table,
        "newest_bucket": _newest_bucket(period),
        "previous_report": str(previous_report) if previous_report else None,
        "sizing": "present" if sizing_services is not None else "absent",
        "pools": Pool.objects.count(),
    }
    return numbers, inputs


def _newest_bucket(period) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT max(bucket) FROM {RES_5M.table} WHERE bucket >= %s AND bucket < %s", [period.start, period.end]
        )
        value = cursor.fetchone()[0]
    return value.isoformat() if value else None


def build(period: capacity.Period, now: datetime | None = None, created_by: str = "beat", demo: bool = False) -> Report:
    """Compute and store a new version of `period`'s report (call inside a transaction to
    make it part of a claim)."""
    now = now or timezone.now()
    numbers, inputs = compute(period, now)
    for attempt in range(3):
        try:
            with transaction.atomic():
                # Two builds of a week that has no report yet both read version 1 (there is no row
                # to lock): the unique (week, version) constraint refuses the second, which numbers again.
                return Report.objects.create(
                    week=period.key, version=Report.next_version(period.key), time_zone=period.tz,
                    period_start=period.start, period_end=period.end, created=now, created_by=created_by,
                    numbers=numbers, inputs=inputs, demo=demo,
                )
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def default_period(now: datetime) -> capacity.Period:
    return capacity.last_complete_period(now, report_time_zone())
