"""Collection at fleet scale, and storage size per row.

A synthetic fleet of 2 000 pool series (400 services × 5 instances, Go-style db_pool_*
metrics, 11 series per pool) served by 5 exposition servers and scraped every second
by a real Prometheus (`honor_labels: true`, so each series keeps its own job/instance).

Prints:
  collect_tick_ratio     median poolboard tick (poolboard.fleet.collection.collect_source)
                         ÷ median bare tick (the same preset queries through the same client,
                         plus a COPY of the same rows into a scratch table), interleaved in
                         one run; target ≤ 1.5
  bytes_per_raw_sample   on-disk size of fleet_poolsample (all partitions, indexes included)
                         ÷ rows, after inserting ~1 M rows
  bytes_per_rollup_row   on-disk size of history_rollup_5m ÷ rows, after rolling those up
                         (~100 k rows)

Runs against a throwaway database (poolboard_bench_collect, dropped and re-created).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throwaway_db import drop_throwaway_database, use_throwaway_database  # noqa: E402

BENCH_DB = "poolboard_bench_collect"
# A 2 000-pool answer must fit under the series cap.
os.environ.setdefault("PROMETHEUS_MAX_SERIES", "20000")
SERVICES = 400
INSTANCES = 5
RUNS = int(os.environ.get("BENCH_COLLECT_RUNS", "7"))
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
from tests.prom import PROMETHEUS_BIN, free_port  # noqa: E402

call_command("migrate", verbosity=0)


class FleetExporter:
    """One instance's /metrics for all 400 services: gauges that move, counters that grow."""

    def __init__(self, instance: int) -> None:
        self.instance = instance
        self.port = free_port()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                body = exporter.text(time.time()).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # Prometheus gave up on this scrape (timeout or shutdown)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def text(self, now: float) -> str:
        lines = []
        tick = int(now)
        for metric, kind in (
            ("db_pool_max_open_connections", "gauge"),
            ("db_pool_in_use_connections", "gauge"),
            ("db_pool_idle_connections", "gauge"),
            ("db_pool_pending_requests", "gauge"),
            ("db_pool_exhausted_total", "counter"),
            ("db_pool_wait_total", "counter"),
            ("db_pool_wait_duration_seconds_total", "counter"),
            ("db_connection_hold_duration_seconds_sum", "counter"),
            ("db_connection_hold_duration_seconds_count", "counter"),
            ("db_pool_connections_created_total", "counter"),
            ("db_pool_connections_closed_total", "counter"),
        ):
            lines.append(f"# TYPE {metric} {'untyped' if kind == 'counter' else 'gauge'}")
            for s in range(SERVICES):
                labels = f'{{job="svc-{s:03d}",instance="10.1.{self.instance}.{s % 250}:8080",pool_name="main"}}'
                in_use = (s + tick + self.instance) % 11
                value = {
                    "db_pool_max_open_connections": 10,
                    "db_pool_in_use_connections": min(in_use, 10),
                    "db_pool_idle_connections": 10 - min(in_use, 10),
                    "db_pool_pending_requests": max(in_use - 10, 0),
                    "db_pool_exhausted_total": tick // 97,
                    "db_pool_wait_total": tick * 3,
                    "db_pool_wait_duration_seconds_total": tick * 0.006,
                    "db_connection_hold_duration_seconds_sum": tick * 2.5,
                    "db_connection_hold_duration_seconds_count": tick * 50,
                    "db_pool_connections_created_total": tick // 30,
                    "db_pool_connections_closed_total": tick // 31,
                }[metric]
                lines.append(f"{metric}{labels} {value}")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_prometheus(targets: list[str], work: Path) -> tuple[subprocess.Popen, str]:
    config = work / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
        "  - job_name: fleet\n    honor_labels: true\n    static_configs:\n"
        f"      - targets: {json.dumps(targets)}\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [PROMETHEUS_BIN, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


def prom_count(url: str, promql: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}), timeout=5) as r:
            result = json.load(r)["data"]["result"]
    except OSError:
        return 0
    return int(float(result[0]["value"][1])) if result else 0


def wait_for_fleet(url: str) -> None:
    deadline = time.monotonic() + 90
    want = SERVICES * INSTANCES
    while time.monotonic() < deadline:
        if (
            prom_count(url, "count(db_pool_in_use_connections)") == want
            and prom_count(url, "count(rate(db_pool_wait_total[10s]) > 0)") == want
        ):
            return
        time.sleep(0.5)
    raise RuntimeError("Prometheus did not get the whole synthetic fleet within 90 s")


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
            for key, values in assemble_readings(preset, results, at).items():
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


def main() -> None:
    exporters = [FleetExporter(i) for i in range(INSTANCES)]
    work = Path(tempfile.mkdtemp(prefix="pb-bench-collect-"))
    proc, url = start_prometheus([f"127.0.0.1:{e.port}" for e in exporters], work)
    try:
        wait_for_fleet(url)
        source = PrometheusSource.objects.create(name="fleet", url=url, presets=["db_pool"], rate_window="10s", timeout_s=30)
        ensure_partitions(datetime.now(timezone.utc))
        first = collect_source(source, 1)  # creates the 400 services and 2 000 pools: not timed
        assert first.status == "ok", first.error
        assert first.samples == SERVICES * INSTANCES, first.samples
        source.refresh_from_db()
        pool_ids = {(p.service.name, p.instance, p.name): p.id for p in Pool.objects.select_related("service")}
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE bench_scratch (LIKE fleet_poolsample INCLUDING DEFAULTS)")
            cursor.execute("ALTER TABLE bench_scratch ADD PRIMARY KEY (pool_id, ts)")
            cursor.execute("CREATE INDEX ON bench_scratch USING brin (ts)")
        bare_tick(source, pool_ids)  # warm-up

        ticks, bares = [], []
        for run in range(RUNS):
            time.sleep(1.0)
            started = time.perf_counter()
            assert bare_tick(source, pool_ids) == SERVICES * INSTANCES
            bares.append(time.perf_counter() - started)
            time.sleep(1.0)
            started = time.perf_counter()
            result = collect_source(source, 2 + run)
            ticks.append(time.perf_counter() - started)
            assert result.status == "ok" and result.samples == SERVICES * INSTANCES, (result.status, result.error)
        tick_s, bare_s = statistics.median(ticks), statistics.median(bares)
        print(f"collect_pool_series: {SERVICES * INSTANCES}")
        print(f"collect_tick_ms: {tick_s * 1000:.0f}")
        print(f"collect_bare_ms: {bare_s * 1000:.0f}")
        print(f"collect_tick_ratio: {tick_s / bare_s:.2f}", flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
        for exporter in exporters:
            exporter.close()
        shutil.rmtree(work, ignore_errors=True)

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
            INSERT INTO fleet_poolsample (pool_id, ts, max, in_use, idle, pending, timeouts, acquire_s, hold_s, created, closed)
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
    try:
        main()
    finally:
        connection.close()
        drop_throwaway_database(BENCH_DB)
