"""Pages: SQL queries per page at 10 and 1 000 services; the 7-day chart against Prometheus.

Prints:
  overview_queries_10 / overview_queries_1000   SQL queries for `/` (must be equal)
  service_queries_10 / service_queries_1000     SQL queries for `/services/<pk>/` (must be equal)
  overview_ms_1000 / service_ms_1000   server time of each full page at 1 000 services (test
                    client, median of 21); target < 50. overview_poll_ms_1000 and
                    service_poll_ms_1000: the same for the partial each page polls every 10 s;
                    overview_first_after_tick_ms_1000: the overview when its rows must be
                    computed afresh (once per collection tick per web process, fleet.overview)
  chart_7d_ratio    server time of the 7-day chart partial ÷ Prometheus query_range for the same
                    series (in use, idle, max, waiting of the same 5 pools) at the same step and
                    number of points; target ≤ 1.0

Runs against a throwaway database (poolboard_bench_pages, dropped and re-created) and a
real Prometheus started on 7 days of data backfilled with `promtool tsdb
create-blocks-from openmetrics`.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throwaway_db import run_then_drop, use_throwaway_database  # noqa: E402

BENCH_DB = "poolboard_bench_pages"
use_throwaway_database(BENCH_DB)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from poolboard.fleet.models import Pool, PrometheusSource, Service  # noqa: E402
from poolboard.fleet.overview import forget_overview_rows  # noqa: E402
from poolboard.history.queries import RANGES, step_for  # noqa: E402
from poolboard.lib.rollups import grid_for  # noqa: E402
from poolboard.sources.prometheus import PrometheusClient  # noqa: E402
from tests.prom import PROMETHEUS_BIN, free_port  # noqa: E402

setup_test_environment()
call_command("migrate", verbosity=0)

INSTANCES = 5
PAGE_RUNS = 21
CHART_SERVICE = "chart-svc"


def add_services(source, start: int, count: int) -> None:
    now = timezone.now()
    services = Service.objects.bulk_create(
        [Service(name=f"svc-{i:04d}", source=source, preset="db_pool", last_seen_at=now) for i in range(start, start + count)],
        batch_size=1000,
    )
    Pool.objects.bulk_create(
        [
            Pool(service=s, instance=f"10.0.{i}.1:8080", name="main", sampled_at=now, max=10, in_use=i + 2, idle=8 - i,
                 pending=0, timeouts=0, acquire_s=0.002, hold_s=0.04)
            for s in services
            for i in range(INSTANCES)
        ],
        batch_size=1000,
    )


def count_queries(client: Client, url: str, **headers) -> int:
    forget_overview_rows()  # count what a request after a collection tick runs, whatever came before
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, headers=headers)
    assert response.status_code == 200, (url, response.status_code)
    return len(ctx.captured_queries)


def seed_rollups(pool_ids: list[int], start: float, end: float) -> None:
    """7 days of 5-minute rollups for these pools: a daily wave with a few saturated spells."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO history_rollup_5m (pool_id, bucket, samples, in_use_min, in_use_avg, in_use_max, in_use_p95,
                pending_min, pending_avg, pending_max, pending_p95, util_min, util_avg, util_max, util_p95,
                max_avg, idle_avg, acquire_s_avg, hold_s_avg, timeouts, timeouts_max, saturated_s)
            SELECT p, b, 20, v - 1, v, v + 1, v + 1, 0, w, w, w, (v - 1) / 10, v / 10, (v + 1) / 10, (v + 1) / 10,
                   10, 10 - v, 0.002 + w / 100, 0.04, 0, 0, CASE WHEN w > 0 THEN 60 ELSE 0 END
            FROM (
                SELECT p, b, round(5 + 4 * sin(extract(epoch FROM b) / 13751.0 + p))::float AS v,
                       CASE WHEN (extract(epoch FROM b)::bigint / 300) %% 97 = 0 THEN 3.0 ELSE 0.0 END AS w
                FROM unnest(%s::bigint[]) AS p,
                     generate_series(to_timestamp(%s), to_timestamp(%s), interval '5 minutes') AS b
            ) AS g
            ON CONFLICT DO NOTHING
            """,
            [pool_ids, start, end],
        )


def write_openmetrics(path: Path, start: float, end: float) -> None:
    """The same wave as the rollups, as raw gauges every 15 s, for promtool to backfill."""
    import math

    with path.open("w") as out:
        for metric, fn in (
            ("db_pool_in_use_connections", lambda t, p: round(5 + 4 * math.sin(t / 13751.0 + p))),
            ("db_pool_idle_connections", lambda t, p: 10 - round(5 + 4 * math.sin(t / 13751.0 + p))),
            ("db_pool_max_open_connections", lambda t, p: 10),
            ("db_pool_pending_requests", lambda t, p: 3 if (int(t) // 300) % 97 == 0 else 0),
        ):
            out.write(f"# TYPE {metric} gauge\n")
            for p in range(INSTANCES):
                labels = f'{{job="{CHART_SERVICE}",instance="10.0.{p}.1:8080",pool_name="main"}}'
                t = start
                lines = []
                while t <= end:
                    lines.append(f"{metric}{labels} {fn(t, p)} {t:.0f}\n")
                    t += 15
                out.write("".join(lines))
        out.write("# EOF\n")


def start_prometheus(data_dir: Path) -> tuple[subprocess.Popen, str]:
    config = data_dir.parent / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    port = free_port()
    proc = subprocess.Popen(
        [PROMETHEUS_BIN, f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
         "--storage.tsdb.retention.time=30d", f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("prometheus did not become ready")


def median_time(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("bench", "bench@example.org", "bench-password")
    client = Client()
    client.force_login(user)
    source = PrometheusSource.objects.create(name="bench", url="http://127.0.0.1:9", presets=["db_pool"])

    add_services(source, 0, 10)
    first = Service.objects.order_by("name").first()
    client.get("/")  # warm the session
    overview_10 = count_queries(client, "/")
    service_10 = count_queries(client, f"/services/{first.pk}/")
    add_services(source, 10, 990)
    overview_1000 = count_queries(client, "/")
    service_1000 = count_queries(client, f"/services/{first.pk}/")
    print(f"overview_queries_10: {overview_10}")
    print(f"overview_queries_1000: {overview_1000}")
    print(f"service_queries_10: {service_10}")
    print(f"service_queries_1000: {service_1000}", flush=True)

    # Server time at 1 000 services: the whole request through Django's test client
    # (middleware, session, view, template), median of PAGE_RUNS; full pages and the
    # partials their htmx polls ask for every 10 s.
    def page_ms(url: str, headers: dict | None = None, after_tick: bool = False) -> float:
        def get() -> None:
            if after_tick:
                forget_overview_rows()
            response = client.get(url, headers=headers)
            assert response.status_code == 200, (url, response.status_code)

        return median_time(get, PAGE_RUNS) * 1000

    service_url = f"/services/{first.pk}/"
    print(f"overview_ms_1000: {page_ms('/'):.1f}")
    print(f"overview_poll_ms_1000: {page_ms('/', {'HX-Request': 'true', 'HX-Target': 'fleet-table'}):.1f}")
    print(f"overview_first_after_tick_ms_1000: {page_ms('/', after_tick=True):.1f}")
    print(f"service_ms_1000: {page_ms(service_url):.1f}")
    print(f"service_poll_ms_1000: {page_ms(service_url, {'HX-Request': 'true', 'HX-Target': 'pool-current'}):.1f}", flush=True)

    # --- 7-day chart: rollups in PostgreSQL vs query_range in Prometheus ----------------
    now = time.time()
    rng = RANGES["7d"]
    step = step_for(rng)
    grid = grid_for(timezone.now(), rng.seconds, step)
    grid_start = grid.start.timestamp()  # the seeding and Prometheus below speak epoch seconds
    chart_service = Service.objects.create(name=CHART_SERVICE, source=source, preset="db_pool")
    Pool.objects.bulk_create(
        [Pool(service=chart_service, instance=f"10.0.{p}.1:8080", name="main") for p in range(INSTANCES)]
    )
    # Other services' rollups share the table, as they would in a real fleet.
    pool_ids = list(Pool.objects.filter(service__name__lte="svc-0049").values_list("id", flat=True))
    chart_pools = list(Pool.objects.filter(service=chart_service).values_list("id", flat=True))
    data_start, data_end = grid_start - 3600, now
    seed_rollups(pool_ids + chart_pools, data_start, data_end)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE history_rollup_5m")
        cursor.execute("SELECT count(*) FROM history_rollup_5m")
        rollup_rows = cursor.fetchone()[0]

    work = Path(tempfile.mkdtemp(prefix="pb-bench-pages-"))
    try:
        om = work / "data.om"
        write_openmetrics(om, data_start, data_end - 60)
        subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(work / "data")],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        om.unlink()
        proc, url = start_prometheus(work / "data")
        try:
            prom = PrometheusClient(url, timeout=30)
            q_start, q_end = grid_start, grid_start + (grid.count - 1) * step
            queries = [
                f'sum(db_pool_in_use_connections{{job="{CHART_SERVICE}"}})',
                f'sum(db_pool_idle_connections{{job="{CHART_SERVICE}"}})',
                f'sum(db_pool_max_open_connections{{job="{CHART_SERVICE}"}})',
                f'sum(db_pool_pending_requests{{job="{CHART_SERVICE}"}})',
            ]
            answers = [prom.range(q, start=q_start, end=q_end, step=step) for q in queries]
            prom_points = len(answers[0][0].points) if answers[0] else 0

            def ask_prometheus() -> None:
                for q in queries:
                    prom.range(q, start=q_start, end=q_end, step=step)

            url_7d = f"/services/{chart_service.pk}/?range=7d"

            def ask_poolboard() -> None:
                response = client.get(url_7d, headers={"HX-Request": "true", "HX-Target": "pool-charts"})
                assert response.status_code == 200 and b"chart-data" in response.content

            response = client.get(url_7d, headers={"HX-Request": "true", "HX-Target": "pool-charts"})
            ours = response.content.decode()
            import json
            import re

            data = json.loads(re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', ours, re.S).group(1))
            our_points = len(data["x"])
            prom_s = median_time(ask_prometheus, 15)
            ours_s = median_time(ask_poolboard, 15)
            prom.close()
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"chart_7d_points_poolboard: {our_points}")
    print(f"chart_7d_points_prometheus: {prom_points}")
    print(f"chart_7d_rollup_rows_in_table: {rollup_rows}")
    print(f"chart_7d_poolboard_ms: {ours_s * 1000:.1f}")
    print(f"chart_7d_prometheus_ms: {prom_s * 1000:.1f}")
    print(f"chart_7d_ratio: {ours_s / prom_s:.2f}", flush=True)


if __name__ == "__main__":
    run_then_drop(main, BENCH_DB)
