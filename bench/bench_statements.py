"""Benchmark: a pg_stat_statements reading (sources.pgstatements.read) vs a bare SELECT of the same rows.

1. Start a throwaway PostgreSQL cluster (poolboard.pgcluster) with pg_stat_statements preloaded
   and pg_stat_statements.max = 10000, so the machine's server is never touched.
2. Fill pg_stat_statements with BENCH_STATEMENTS (default 5 000) distinct statements: one
   column of one of 100 tables of 50 columns each (different parse trees, different queryids).
3. Take one reading and store it (the baseline: every text normalised and fingerprinted once,
   as the first collection on a server does), then BENCH_ROUNDS rounds (default 15), each in a
   new 1 s slot so every store really stores, alternating which goes first:
   - bare: connect, SELECT * FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT <top>
     (the rows a reading asks for), fetch every row, close;
   - sample: what the collection task reads (sources.pgstatements.read: the status check, the
     top N by total time plus the tracked queryids, counters without text, text only for new
     queryids, pg_stat_statements_info), then stored (statements.collection.store_reading).
   statements_ratio = median(sample) / median(bare) (target <= 2); statements_store_ms is the
   median of the store alone (deltas, baselines, interval rows), not part of the ratio.

Runs against a throwaway poolboard database (poolboard_bench_statements_<pid>, dropped after).
Prints `name: value` lines (make bench).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ["STATEMENTS_INTERVAL"] = "1"

from throwaway_db import drop_throwaway_database, use_throwaway_database  # noqa: E402

BENCH_DB = f"poolboard_bench_statements_{os.getpid()}"
STATEMENTS = int(os.getenv("BENCH_STATEMENTS", "5000"))
ROUNDS = int(os.getenv("BENCH_ROUNDS", "15"))
TABLES, COLUMNS = 100, 50


def fill(cluster, dbname: str) -> None:
    """STATEMENTS distinct statements in pg_stat_statements (plus the setup's own few)."""
    with cluster.connect(dbname, application_name="bench-fill") as conn:
        columns = ", ".join(f"c{j} int" for j in range(COLUMNS))
        for t in range(TABLES):
            conn.execute(f"CREATE TABLE t{t} ({columns})")
        with conn.pipeline():
            for i in range(STATEMENTS):
                conn.execute(f"SELECT c{(i // TABLES) % COLUMNS} FROM t{i % TABLES} WHERE c0 = {i}")


def bare(cluster, dbname: str, top: int) -> float:
    t0 = time.perf_counter()
    with cluster.connect(dbname, application_name="bench-bare") as conn:
        rows = conn.execute(f"SELECT * FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT {top}").fetchall()
    elapsed = time.perf_counter() - t0
    assert len(rows) == top, len(rows)
    return elapsed


def main() -> None:
    import django

    use_throwaway_database(BENCH_DB)
    django.setup()
    from django.core.management import call_command

    from poolboard.databases.models import MonitoredServer
    from poolboard.pgcluster import PgCluster
    from poolboard.sources import pgstatements
    from poolboard.statements import collection
    from poolboard.statements.models import Statement, StatementInterval

    call_command("migrate", verbosity=0)
    cluster = PgCluster(statements=True, statements_max=max(10_000, STATEMENTS * 2))
    cluster.start()
    server = None
    try:
        dbname = cluster.create_database("bench")
        fill(cluster, dbname)
        server = MonitoredServer.objects.create(
            name=f"bench-{os.getpid()}", host=cluster.host, port=cluster.port, dbname=dbname, user=cluster.superuser
        )
        top = collection.top_n()
        t0 = time.perf_counter()
        first = collection.collect_server(server)
        baseline_s = time.perf_counter() - t0
        assert first.status == "ok", first
        view_entries = pgstatements.read(server.target(), None, server.limits(), top=1).view_entries
        assert view_entries >= STATEMENTS, view_entries
        for _ in range(2):  # warm up both paths alike; nothing stored
            bare(cluster, dbname, top)
            pgstatements.read(server.target(), None, server.limits(), top=top)

        bares, samples, stores, read_rows = [], [], [], []

        def sample_and_store() -> None:
            known = Statement.objects.filter(server=server)
            tracked = set(known.filter(last_calls__isnull=False).values_list("queryid", flat=True))
            with_text = set(known.filter(query__isnull=False).values_list("queryid", flat=True))
            t0 = time.perf_counter()
            reading = pgstatements.read(server.target(), None, server.limits(), top=top, tracked=tracked,
                                        with_text=with_text)
            t1 = time.perf_counter()
            result = collection.store_reading(server, reading)
            t2 = time.perf_counter()
            assert result.status == "ok", result
            samples.append(t1 - t0)
            stores.append(t2 - t1)
            read_rows.append(len(reading.entries))

        with cluster.connect(dbname, application_name="bench-load") as load:
            for i in range(ROUNDS):
                for j in range(50):  # some statements run between readings: real deltas to store
                    load.execute(f"SELECT c{j % COLUMNS} FROM t{j % TABLES} WHERE c0 = {i}")
                time.sleep(1.0 - time.time() % 1.0 + 0.01)  # a new 1 s slot: every store really stores
                if i % 2:
                    sample_and_store()
                    bares.append(bare(cluster, dbname, top))
                else:
                    bares.append(bare(cluster, dbname, top))
                    sample_and_store()
        median = statistics.median
        print(f"statements_view_entries: {view_entries}")
        print(f"statements_top: {top}")
        print(f"statements_rows_read: {median(read_rows):.0f}")
        print(f"statements_rounds: {ROUNDS}")
        print(f"statements_first_collect_ms: {baseline_s * 1000:.1f}")
        print(f"statements_bare_select_ms: {median(bares) * 1000:.1f}")
        print(f"statements_sample_ms: {median(samples) * 1000:.1f}")
        print(f"statements_store_ms: {median(stores) * 1000:.1f}")
        print(f"statements_ratio: {median(samples) / median(bares):.2f}")
        print(f"statements_intervals_stored: {StatementInterval.objects.filter(statement__server=server).count()}")
    finally:
        if server is not None:
            server.delete()
        cluster.stop()
        from django.db import connections

        connections.close_all()
        drop_throwaway_database(BENCH_DB)


if __name__ == "__main__":
    main()
