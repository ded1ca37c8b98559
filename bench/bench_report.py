"""Weekly report: build time and SQL queries at 10 and 1 000 services, and the PDF's render time.

Prints:
  report_queries_10 / report_queries_1000   SQL queries to compute one week's report (must be equal)
  report_build_s_1000   seconds to compute and store the report of 1 000 services (one pool each)
                        over 4 weeks of 5-minute rollups (1 000 × 8 064 = 8 064 000 rows; the
                        report reads its week and the one before), one monitored server with
                        8 weeks of snapshots, findings on every tenth service
  report_pdf_s_1000     seconds to render that report's PDF (WeasyPrint: every service in the tables,
                        charts for the first 100)
  report_pdf_pages_1000 its pages
  report_rollup_rows    rollup rows in the database

Runs against a throwaway database (poolboard_bench_report, dropped and re-created).
BENCH_REPORT_SERVICES=N changes the 1 000 (for a quick run).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throwaway_db import run_then_drop, use_throwaway_database  # noqa: E402

BENCH_DB = "poolboard_bench_report"
use_throwaway_database(BENCH_DB)
os.environ.setdefault("REPORT_TIME_ZONE", "Europe/Paris")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from poolboard.databases.models import MonitoredServer, Snapshot  # noqa: E402
from poolboard.diagnosis.models import Finding  # noqa: E402
from poolboard.fleet.models import Pool, PrometheusSource, Service  # noqa: E402
from poolboard.lib import capacity  # noqa: E402
from poolboard.reports import build, pdf  # noqa: E402

call_command("migrate", verbosity=0)

SERVICES = int(os.environ.get("BENCH_REPORT_SERVICES", "1000"))
WEEKS = 4
NOW = datetime(2026, 12, 2, 10, tzinfo=UTC)
PERIOD = capacity.last_complete_period(NOW, os.environ["REPORT_TIME_ZONE"])

# 4 weeks of 5-minute buckets per pool, in one statement: load that varies by pool and hour,
# saturation and timeouts on some pools at noon.
ROLLUPS_SQL = """
INSERT INTO history_rollup_5m (pool_id, bucket, samples, in_use_min, in_use_avg, in_use_max, in_use_p95,
                               pending_min, pending_avg, pending_max, pending_p95, max_avg, acquisitions,
                               acquire_s_avg, hold_s_avg, timeouts, saturated_s, waiting_s)
SELECT p.id, b, 20, 0, u / 2, u + 1, u, 0, w / 2, w, w, 10, 3000, 0.002 + w / 10, 0.02, w,
       CASE WHEN w > 0 THEN 90 ELSE 0 END, CASE WHEN w > 0 THEN 60 ELSE 0 END
FROM fleet_pool p
JOIN fleet_service s ON s.id = p.service_id
CROSS JOIN generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '5 minutes', interval '5 minutes') AS b
CROSS JOIN LATERAL (SELECT (p.id %% 7) + (extract(hour FROM b)::int %% 3) AS u,
                           CASE WHEN p.id %% 5 = 0 AND extract(hour FROM b)::int = 12 THEN 2 ELSE 0 END AS w) AS d
WHERE s.name >= %(first)s AND s.name <= %(last)s
"""


def add_services(source, start: int, count: int) -> None:
    services = Service.objects.bulk_create(
        [Service(name=f"svc-{i:04d}", source=source, preset="db_pool", last_seen_at=NOW) for i in range(start, start + count)],
        batch_size=1000,
    )
    Pool.objects.bulk_create([Pool(service=s, instance="10.0.0.1:8080", name="main", sampled_at=NOW, max=10, in_use=3)
                              for s in services], batch_size=1000)
    Finding.objects.bulk_create(
        [Finding(service=s, kind="saturation", severity="warn", confidence=0.8, opened_at=PERIOD.start + timedelta(days=1),
                 last_seen_at=PERIOD.end, summary="saturated at noon", fix="more connections") for s in services[::10]]
    )
    with connection.cursor() as cursor:
        cursor.execute(ROLLUPS_SQL, {"start": PERIOD.end - timedelta(weeks=WEEKS), "end": PERIOD.end,
                                     "first": f"svc-{start:04d}", "last": f"svc-{start + count - 1:04d}"})


def queries() -> int:
    with CaptureQueriesContext(connection) as ctx:
        build.compute(PERIOD, NOW)
    return len(ctx.captured_queries)


def main() -> None:
    source = PrometheusSource.objects.create(name="bench", url="http://127.0.0.1:9")
    server = MonitoredServer.objects.create(name="orders-db", host="127.0.0.1", port=1, dbname="postgres", user="x")
    snapshots, at = [], PERIOD.end - timedelta(weeks=8)
    while at < PERIOD.end:
        days = (PERIOD.end - at).days
        snapshots.append(Snapshot(server=server, slot=int(at.timestamp()) // 300, taken_at=at, total=200 - days,
                                  max_connections=500, superuser_reserved_connections=3))
        at += timedelta(minutes=5)
    Snapshot.objects.bulk_create(snapshots, batch_size=5000)
    add_services(source, 0, 10)
    print(f"report_queries_10: {queries()}", flush=True)
    add_services(source, 10, SERVICES - 10)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        cursor.execute("SELECT count(*) FROM history_rollup_5m")
        rows = cursor.fetchone()[0]
    print(f"report_queries_{SERVICES}: {queries()}", flush=True)
    print(f"report_rollup_rows: {rows}", flush=True)
    started = time.perf_counter()
    report = build.build(PERIOD, NOW, created_by="bench")
    print(f"report_build_s_{SERVICES}: {time.perf_counter() - started:.2f}", flush=True)
    started = time.perf_counter()
    document = pdf.render_pdf(report)
    print(f"report_pdf_s_{SERVICES}: {time.perf_counter() - started:.2f}", flush=True)
    path = Path(f"/tmp/{BENCH_DB}.pdf")
    path.write_bytes(document)
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True).stdout
    pages = next((line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")), "?")
    path.unlink()
    print(f"report_pdf_pages_{SERVICES}: {pages}", flush=True)


run_then_drop(main, BENCH_DB)
