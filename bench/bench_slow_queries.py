"""The slow-queries pages: SQL queries at 10 and 1 000 statements, and server time at 1 000.

Prints:
  slow_page_queries_10 / slow_page_queries_1000   SQL queries for `/queries/slow/` (must be equal)
  statements_api_queries_10 / _1000                 the same for /api/v1/statements/
  service_statements_queries_10 / _1000             the service page's "queries holding this pool" panel
  statement_page_queries_10 / _1000                 one statement's page (/statements/<pk>/)
  slow_page_ms_1000       server time of the full page at 1 000 statements (test client, median of 21)

Each statement has 12 five-minute intervals (the last hour, read by the default 24 h range)
and every tenth is held by one of five services in 60 snapshots (10 minutes at 10 s).
Runs against a throwaway database (poolboard_bench_slow_queries_<pid>, created and dropped).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throwaway_db import run_then_drop, use_throwaway_database  # noqa: E402

BENCH_DB = f"poolboard_bench_slow_queries_{os.getpid()}"
use_throwaway_database(BENCH_DB)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from poolboard.databases.models import MonitoredServer, QueryFingerprint, QueryHold, Snapshot  # noqa: E402
from poolboard.fleet.models import Pool, PrometheusSource, Service  # noqa: E402
from poolboard.statements.models import Statement, StatementInterval, StatementsStatus  # noqa: E402

setup_test_environment()
call_command("migrate", verbosity=0)

INTERVALS = 12
SNAPSHOTS = 60
PAGE_RUNS = 21


def add_statements(server, services, start: int, count: int, now) -> None:
    queries = QueryFingerprint.objects.bulk_create(
        [QueryFingerprint(fingerprint=f"{i:016x}", text=f"SELECT * FROM t{i} WHERE id = $1", first_seen=now, last_seen=now)
         for i in range(start, start + count)],
        batch_size=1000,
    )
    statements = Statement.objects.bulk_create(
        [Statement(server=server, datname="app", rolname="app", queryid=1_000_000 + i, query=q,
                   first_seen=now - timedelta(hours=2), last_seen=now)
         for i, q in zip(range(start, start + count), queries)],
        batch_size=1000,
    )
    StatementInterval.objects.bulk_create(
        [StatementInterval(statement=s, start=now - timedelta(minutes=5 * (k + 1)), end=now - timedelta(minutes=5 * k),
                           calls=10 + i % 50, total_exec_ms=(10 + i % 50) * (1 + i % 7), rows=10, shared_blks_hit=5,
                           shared_blks_read=1, max_exec_ms=20.0)
         for i, s in enumerate(statements) for k in range(INTERVALS)],
        batch_size=5000,
    )
    snapshots = list(Snapshot.objects.filter(server=server).order_by("taken_at"))
    QueryHold.objects.bulk_create(
        [QueryHold(snapshot=snap, datname="app", query_id=s.queryid, service=services[i % len(services)],
                   application_name=services[i % len(services)].name, count=1 + i % 3)
         for i, s in enumerate(statements) if i % 10 == 0 for snap in snapshots],
        batch_size=5000,
    )


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
    services = [Service.objects.create(name=f"svc-{i}", source=source, preset="db_pool", last_seen_at=now) for i in range(5)]
    Pool.objects.bulk_create(Pool(service=s, instance="10.0.0.1:8080", name="main", sampled_at=now, max=10) for s in services)
    server = MonitoredServer.objects.create(name="bench-db", host="127.0.0.1", port=5432, dbname="app", user="bench")
    StatementsStatus.objects.create(server=server, state="ok", checked_at=now)
    Snapshot.objects.bulk_create(
        Snapshot(server=server, slot=int((now - timedelta(seconds=10 * k)).timestamp()) // 10,
                 taken_at=now - timedelta(seconds=10 * k), total=20, max_connections=100, superuser_reserved_connections=3)
        for k in range(SNAPSHOTS)
    )
    panel = f"/services/{services[0].pk}/statements/"

    add_statements(server, services, 0, 10, now)
    client.get("/queries/slow/")  # warm the session
    statement = f"/statements/{Statement.objects.order_by('pk').first().pk}/"
    figures = {
        "slow_page_queries_10": count_queries(client, "/queries/slow/"),
        "statements_api_queries_10": count_queries(client, "/api/v1/statements/"),
        "service_statements_queries_10": count_queries(client, panel),
        "statement_page_queries_10": count_queries(client, statement),
    }
    add_statements(server, services, 10, 990, now)
    figures |= {
        "slow_page_queries_1000": count_queries(client, "/queries/slow/"),
        "statements_api_queries_1000": count_queries(client, "/api/v1/statements/"),
        "service_statements_queries_1000": count_queries(client, panel),
        "statement_page_queries_1000": count_queries(client, statement),
    }
    for name in ("slow_page_queries", "statements_api_queries", "service_statements_queries", "statement_page_queries"):
        print(f"{name}_10: {figures[name + '_10']}")
        print(f"{name}_1000: {figures[name + '_1000']}")

    def get() -> None:
        assert client.get("/queries/slow/").status_code == 200

    get()
    times = []
    for _ in range(PAGE_RUNS):
        t0 = time.perf_counter()
        get()
        times.append(time.perf_counter() - t0)
    print(f"slow_page_ms_1000: {statistics.median(times) * 1000:.1f}", flush=True)


if __name__ == "__main__":
    run_then_drop(main, BENCH_DB)
