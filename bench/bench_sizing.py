"""Sizing page: SQL queries at 10 and 1 000 services, and its server time over a week of rollups.

Prints:
  sizing_queries_10 / sizing_queries_1000   SQL queries for `/sizing/` (must be equal)
  sizing_page_ms_1000   server time of the full `/sizing/` page (test client, median of 5) at
                        1 000 services of 2 instances each on one monitored server, with 7 days
                        of rollups: 5-minute (2 000 pools × 2 016 = 4 032 000 rows; the last
                        24 h give the instance counts) and 1-hour (336 000 rows; the demand)
  sizing_api_ms_1000    the same for /api/v1/sizing/

Runs against a throwaway database (poolboard_bench_sizing, dropped and re-created).
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throwaway_db import run_then_drop, use_throwaway_database  # noqa: E402

BENCH_DB = "poolboard_bench_sizing"
use_throwaway_database(BENCH_DB)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from poolboard.api.models import ApiToken  # noqa: E402
from poolboard.databases.models import MonitoredServer, Snapshot  # noqa: E402
from poolboard.diagnosis.models import Finding  # noqa: E402
from poolboard.fleet.models import Pool, PrometheusSource, Service  # noqa: E402
from poolboard.lib.rollups import FIVE_MINUTES, ONE_HOUR, bucket_start  # noqa: E402

setup_test_environment()
call_command("migrate", verbosity=0)

INSTANCES = 2
DAYS = 7
PAGE_RUNS = 5

# A week of buckets per pool, in one statement: demand that varies by pool and hour. Rows go in
# bucket order, as the rollup task writes them (the tables' BRIN indexes on bucket rely on it).
ROLLUPS_SQL = """
INSERT INTO {table} (pool_id, bucket, samples, in_use_min, in_use_avg, in_use_max, in_use_p95,
                               pending_min, pending_avg, pending_max, pending_p95, max_avg, acquisitions,
                               hold_s_avg, timeouts, saturated_s)
SELECT p.id, b, %(samples)s, 0, u / 2, u + 1, u, 0, w / 2, w, w, p.max, 3000, 0.02, 0, CASE WHEN w > 0 THEN 60 ELSE 0 END
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - %(step)s::interval, %(step)s::interval) AS b
CROSS JOIN fleet_pool p
JOIN fleet_service s ON s.id = p.service_id
CROSS JOIN LATERAL (SELECT (p.id %% 7) + 2 * (extract(hour FROM b)::int %% 3) AS u,
                           CASE WHEN p.id %% 5 = 0 AND extract(hour FROM b)::int = 12 THEN 2 ELSE 0 END AS w) AS d
WHERE s.name >= %(first)s AND s.name <= %(last)s
ORDER BY b, p.id
"""


def add_services(source, server, start: int, count: int, now) -> None:
    services = Service.objects.bulk_create(
        [Service(name=f"svc-{i:04d}", source=source, preset="db_pool", last_seen_at=now, server=server)
         for i in range(start, start + count)],
        batch_size=1000,
    )
    Pool.objects.bulk_create(
        [Pool(service=s, instance=f"10.0.{i}.1:8080", name="main", sampled_at=now, max=10, in_use=3)
         for s in services for i in range(INSTANCES)],
        batch_size=1000,
    )
    Finding.objects.bulk_create(
        [Finding(service=s, kind="leak", severity="warn", confidence=0.8, opened_at=now, last_seen_at=now,
                 summary="leak", fix="fix it") for s in services[::10]]
    )
    with connection.cursor() as cursor:
        for table, width, samples in (("history_rollup_5m", FIVE_MINUTES, 20), ("history_rollup_1h", ONE_HOUR, 240)):
            end = bucket_start(now, width) + timedelta(seconds=width)
            cursor.execute(ROLLUPS_SQL.format(table=table), {
                "start": end - timedelta(days=DAYS), "end": end, "step": f"{width} seconds", "samples": samples,
                "first": f"svc-{start:04d}", "last": f"svc-{start + count - 1:04d}",
            })
            cursor.execute(f"ANALYZE {table}")


def count_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(ctx.captured_queries)


def main() -> None:
    from django.contrib.auth import get_user_model

    now = timezone.now()
    user = get_user_model().objects.create_user("bench", "bench@example.org", "bench-password")
    client = Client()
    client.force_login(user)
    source = PrometheusSource.objects.create(name="bench", url="http://127.0.0.1:9", presets=["db_pool"])
    server = MonitoredServer.objects.create(name="main", host="db.invalid")
    Snapshot.objects.create(server=server, slot=1, taken_at=now, total=800, max_connections=5000,
                            superuser_reserved_connections=3)

    add_services(source, server, 0, 10, now)
    client.get("/sizing/")  # warm the session
    queries_10 = count_queries(client, "/sizing/")
    add_services(source, server, 10, 990, now)
    queries_1000 = count_queries(client, "/sizing/")
    print(f"sizing_queries_10: {queries_10}")
    print(f"sizing_queries_1000: {queries_1000}", flush=True)

    times = []
    for _ in range(PAGE_RUNS):
        started = time.perf_counter()
        response = client.get("/sizing/")
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    print(f"sizing_page_ms_1000: {statistics.median(times) * 1000:.0f}", flush=True)
    token = ApiToken.issue(user, name="bench")[1]
    times = []
    for _ in range(PAGE_RUNS):
        started = time.perf_counter()
        response = client.get("/api/v1/sizing/", headers={"Authorization": f"Bearer {token}"})
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    print(f"sizing_api_ms_1000: {statistics.median(times) * 1000:.0f}", flush=True)


if __name__ == "__main__":
    run_then_drop(main, BENCH_DB)
