"""Collection at fleet scale, and storage size per row.

A synthetic fleet of 2 000 pool series (400 services × 5 instances, Go-style db_pool_*
metrics, 11 series per pool) served by 5 exposition servers and scraped every second
by a real Prometheus (`honor_labels: true`, so each series keeps its own job/instance).

Then the same at 10 000 pool series (2 000 services × 5, scraped every 2 s), the scale one
15 s tick must carry on 2 cores.

The exporters run in a child process (bench/synthetic_fleet.py).

Prints:
  collect_tick_ratio     median poolboard tick (poolboard.fleet.collection.collect_source)
                         ÷ median bare tick (the same preset queries through the same client,
                         plus a COPY of the same rows into a scratch table), interleaved in
                         one run; target ≤ 1.5
  collect_tick_ratio_10000, collect_tick_ms_10000   the same at 10 000 pool series; target
                         ≤ 1.5, and the tick well inside the 15 s interval
  bytes_per_raw_sample   on-disk size of fleet_poolsample (all partitions, indexes included)
                         ÷ rows, after inserting ~1 M rows
  bytes_per_rollup_row   on-disk size of history_rollup_5m ÷ rows, after rolling those up
                         (~100 k rows)

Runs against a throwaway database (poolboard_bench_collect, dropped and re-created).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throwaway_db import run_then_drop, use_throwaway_database  # noqa: E402

BENCH_DB = "poolboard_bench_collect"
# A 2 000-pool answer must fit under the series cap.
os.environ.setdefault("PROMETHEUS_MAX_SERIES", "20000")
SERVICES = 400
INSTANCES = 5
RUNS = int(os.environ.get("BENCH_COLLECT_RUNS", "7"))
BIG_POOLS = 10_000
BIG_RUNS = int(os.environ.get("BENCH_COLLECT_BIG_RUNS", "5"))
RAW_ROWS = 1_000_000

use_throwaway_database(BENCH_DB)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from poolboard.fleet.collection import collect_source  # noqa: E402
from poolboard.fleet.models import Pool, PrometheusSource  # noqa: E402
from poolboard.fleet.partitions import ensure_partitions  # noqa: E402
from poolboard.history import rollup  # noqa: E402
from poolboard.lib.pools import FIELDS  # noqa: E402
from poolboard.lib.presets import assemble_readings  # noqa: E402
from synthetic_fleet import SyntheticFleet  # noqa: E402

call_command("migrate", verbosity=0)


COPY_SCRATCH = "COPY bench_scratch (pool_id, ts, {}) FROM STDIN".format(", ".join(FIELDS))


def bare_tick(source: PrometheusSource, pool_ids: dict) -> int:
    """What a tick cannot avoid: the same queries through the same client, then one COPY."""
    at = round(time.time(), 3)
    ts = datetime.fromtimestamp(at, tz=timezone.utc)
    rows = []
    with source.client() as client:
        for preset in source.preset_objects():
            results = {}
            for canonical_field in preset.queries:
                series = client.instant(preset.query(canonical_field, window=source.rate_window), at=at)
                results[canonical_field] = [(s.labels, s.value) for s in series]
            for key, values in assemble_readings(preset, results).items():
                rows.append((pool_ids[key.service, key.instance, key.pool], ts, *(values.get(f) for f in FIELDS)))
    with transaction.atomic(), connection.cursor() as cursor:
        with cursor.cursor.copy(COPY_SCRATCH) as copy:
            for row in rows:
                copy.write_row(row)
    return len(rows)


def relation_bytes(sql_from: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM {sql_from}")
        return int(cursor.fetchone()[0])


def measure_ticks(services: int, scrape_interval: str, rate_window: str, runs: int) -> tuple[float, float, dict]:
    """Median poolboard tick and median bare tick (seconds) at services × INSTANCES pools."""
    pools = services * INSTANCES
    # Each scale is its own source with its own job names (service names are unique across sources).
    with SyntheticFleet(services, INSTANCES, scrape_interval, rate_window, prefix=f"s{pools}-") as fleet:
        source = PrometheusSource.objects.create(
            name=f"fleet-{pools}", url=fleet.url, presets=["db_pool"], rate_window=rate_window, timeout_s=30
        )
        first = collect_source(source, 1)  # creates the services and pools: not timed
        assert first.status == "ok", first.error
        assert first.samples == pools, first.samples
        source.refresh_from_db()
        pool_ids = {(p.service.name, p.instance, p.name): p.id for p in Pool.objects.filter(service__source=source).select_related("service")}
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE bench_scratch")
        bare_tick(source, pool_ids)  # warm-up

        ticks, bares = [], []
        for run in range(runs):
            time.sleep(1.0)
            started = time.perf_counter()
            assert bare_tick(source, pool_ids) == pools
            bares.append(time.perf_counter() - started)
            time.sleep(1.0)
            started = time.perf_counter()
            result = collect_source(source, 2 + run)
            ticks.append(time.perf_counter() - started)
            assert result.status == "ok" and result.samples == pools, (result.status, result.error)
    return statistics.median(ticks), statistics.median(bares), pool_ids


def main() -> None:
    ensure_partitions(datetime.now(timezone.utc))
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_scratch (LIKE fleet_poolsample INCLUDING DEFAULTS)")
        cursor.execute("ALTER TABLE bench_scratch ADD PRIMARY KEY (pool_id, ts)")
        cursor.execute("CREATE INDEX ON bench_scratch USING brin (ts)")

    tick_s, bare_s, pool_ids = measure_ticks(SERVICES, "1s", "10s", RUNS)
    print(f"collect_pool_series: {SERVICES * INSTANCES}")
    print(f"collect_tick_ms: {tick_s * 1000:.0f}")
    print(f"collect_bare_ms: {bare_s * 1000:.0f}")
    print(f"collect_tick_ratio: {tick_s / bare_s:.2f}", flush=True)

    # The scale one 15 s tick must carry on 2 cores. Scraped every 2 s: one process
    # writing 110 000 lines every second would be the benchmark's own bottleneck.
    big_services = BIG_POOLS // INSTANCES
    tick_s, bare_s, _ = measure_ticks(big_services, "2s", "20s", BIG_RUNS)
    print(f"collect_tick_ms_{BIG_POOLS}: {tick_s * 1000:.0f}")
    print(f"collect_bare_ms_{BIG_POOLS}: {bare_s * 1000:.0f}")
    print(f"collect_tick_ratio_{BIG_POOLS}: {tick_s / bare_s:.2f}", flush=True)

    # --- storage: ~1 M raw samples, then their 5-minute rollups -------------------------
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE bench_scratch")
        cursor.execute("SELECT count(*) FROM fleet_poolsample")
        existing = cursor.fetchone()[0]
    ids = sorted(pool_ids.values())
    steps = (RAW_ROWS - existing) // len(ids)
    end = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
    start = end - timedelta(seconds=30 * steps)
    ensure_partitions(start)
    ensure_partitions(end)
    with transaction.atomic(), connection.cursor() as cursor:
        # Realistic values: integer gauges, a few waiters, small float timings; min and
        # overflow absent as with db_pool (NULL).
        cursor.execute(
            """
            INSERT INTO fleet_poolsample (pool_id, ts, max, in_use, idle, pending, timeouts, acquire_s, hold_s, conns_opened, conns_closed)
            SELECT p, t, 10, u, 10 - u, CASE WHEN u = 10 THEN floor(random() * 4) ELSE 0 END,
                   CASE WHEN random() < 0.01 THEN 1 ELSE 0 END, random() / 100, 0.02 + random() / 10,
                   floor(random() * 2), floor(random() * 2)
            FROM unnest(%s::bigint[]) AS p,
                 generate_series(%s::timestamptz, %s::timestamptz - interval '1 second', interval '30 seconds') AS t,
                 LATERAL (SELECT least(10, floor(random() * 12))::float AS u OFFSET 0) AS r
            """,
            [ids, start, end],
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE fleet_poolsample")
        cursor.execute("SELECT count(*) FROM fleet_poolsample")
        raw_rows = cursor.fetchone()[0]
    raw_bytes = relation_bytes("pg_partition_tree('fleet_poolsample')")
    started = time.perf_counter()
    rollup.rollup(rollup.RES_5M, start, end)
    rollup_s = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE history_rollup_5m")
        cursor.execute("SELECT count(*) FROM history_rollup_5m")
        rollup_rows = cursor.fetchone()[0]
    rollup_bytes = relation_bytes("(SELECT 'history_rollup_5m'::regclass AS relid) AS r")
    print(f"raw_rows: {raw_rows}")
    print(f"bytes_per_raw_sample: {raw_bytes / raw_rows:.1f}")
    print(f"rollup_5m_rows: {rollup_rows}")
    print(f"rollup_5m_seconds_for_raw_rows: {rollup_s:.2f}")
    print(f"bytes_per_rollup_row: {rollup_bytes / rollup_rows:.1f}", flush=True)


if __name__ == "__main__":
    run_then_drop(main, BENCH_DB)
