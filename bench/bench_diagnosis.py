"""Diagnosis: SQL queries per pass at 10 and 1 000 services, and the pass's time at 1 000.

Prints:
  diagnosis_queries_10 / diagnosis_queries_1000   SQL queries of one diagnosis pass (must be equal)
  diagnosis_tick_ms_1000   wall time of one pass over 1 000 services (median of 5), as the task
                           runs it in one transaction: read the window (30 min of raw samples at
                           a 15 s interval, 2 instances each; the server-side, episode and agent
                           queries run too but find nothing: no database is monitored here),
                           judge, record findings
  diagnosis_rows_1000      raw samples inside the window the pass reads

Runs against a throwaway database (poolboard_bench_diagnosis, dropped and re-created). The
fleet is a seeded mix: a third leaking (in use climbing while throughput stays flat), a third
saturated (in use = max, waiters), a third healthy.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throwaway_db import run_then_drop, use_throwaway_database  # noqa: E402

BENCH_DB = "poolboard_bench_diagnosis"
use_throwaway_database(BENCH_DB)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from poolboard.diagnosis.diagnose import diagnose_services  # noqa: E402
from poolboard.diagnosis.models import Finding  # noqa: E402
from poolboard.fleet.models import Pool, PrometheusSource, Service  # noqa: E402
from poolboard.fleet.partitions import ensure_partitions  # noqa: E402
from poolboard.lib.pools import FIELDS  # noqa: E402

call_command("migrate", verbosity=0)

INTERVAL_S = 15
WINDOW_S = 1800
POOLS_PER_SERVICE = 2
COPY_SQL = "COPY fleet_poolsample (pool_id, ts, {}) FROM STDIN".format(", ".join(FIELDS))


def values_for(kind: str, step: int, rng: random.Random) -> dict:
    """One pool's reading at tick `step` of a service of this kind.

    Per-window counts are over the source's 1-minute rate window, and the healthy and
    saturated pools obey Little's law (in use ≈ acquisitions per second × hold time), as
    real pools do; the leaking ones hold connections that never return.
    """
    if kind == "leak":
        in_use = min(10, 2 + step // 12 + rng.choice((0, 0, 1)))
        return {"max": 10, "in_use": in_use, "idle": 10 - in_use, "pending": 0, "timeouts": 0,
                "acquisitions": 60 + rng.uniform(-3, 3), "hold_s": 0.02, "acquire_s": 0.001}
    if kind == "saturated":
        return {"max": 5, "in_use": 5, "idle": 0, "pending": rng.randint(2, 6), "timeouts": 0,
                "acquisitions": 1800 + rng.uniform(-50, 50), "hold_s": 0.165, "acquire_s": 0.2}
    rate = rng.uniform(8, 12)  # acquisitions per second
    hold = 0.15
    in_use = max(0, round(rate * hold + rng.uniform(-1, 1)))
    return {"max": 10, "in_use": in_use, "idle": 10 - in_use, "pending": 0, "timeouts": 0,
            "acquisitions": rate * 60, "hold_s": hold, "acquire_s": 0.0005}


def build_fleet(count: int, prefix: str, now) -> list[Service]:
    rng = random.Random(count)
    source, _ = PrometheusSource.objects.get_or_create(
        name="bench", defaults={"url": "http://127.0.0.1:9", "presets": ["db_pool"], "rate_window": "1m"}
    )
    services = Service.objects.bulk_create(
        [Service(name=f"{prefix}-{i:04d}", source=source, preset="db_pool", last_seen_at=now) for i in range(count)]
    )
    pools = Pool.objects.bulk_create(
        [Pool(service=s, instance=f"10.0.0.{j}:8080", name="main") for s in services for j in range(POOLS_PER_SERVICE)]
    )
    kinds = {s.id: ("leak", "saturated", "healthy")[i % 3] for i, s in enumerate(services)}
    ticks = WINDOW_S // INTERVAL_S
    start = now - timedelta(seconds=WINDOW_S)
    with connection.cursor() as cursor:
        with cursor.cursor.copy(COPY_SQL) as copy:
            for pool in pools:
                for step in range(ticks):
                    v = values_for(kinds[pool.service_id], step, rng)
                    copy.write_row((pool.id, start + timedelta(seconds=(step + 1) * INTERVAL_S), *(v.get(f) for f in FIELDS)))
    return services


def profile_pass(services, now) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    diagnose_services(services, now)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def one_pass(services, now) -> tuple[int, float]:
    """One pass as the task runs it: in one transaction (diagnosis.tasks.diagnose_fleet)."""
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        with transaction.atomic():
            diagnose_services(services, now)
        elapsed = time.perf_counter() - started
    return len(queries.captured_queries), elapsed


def main() -> None:
    now = timezone.now().replace(microsecond=0)
    ensure_partitions(now)
    small = build_fleet(10, "small", now)
    large = build_fleet(1000, "large", now)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE fleet_poolsample")
    one_pass(small, now)  # warm-up: connection, imports, plan cache
    queries_10, _ = one_pass(small, now)
    if "--profile" in sys.argv:
        profile_pass(large, now)
        return
    if "--explain" in sys.argv:
        from poolboard.diagnosis import inputs

        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + inputs._SAMPLES_SQL,
                           [now - timedelta(seconds=WINDOW_S), now, [s.id for s in large]])
            print("\n".join(r[0] for r in cursor.fetchall()))
        return
    times = []
    queries_1000 = None
    for round_ in range(5):
        Finding.objects.all().delete()  # every round opens the same findings afresh
        queries_1000, elapsed = one_pass(large, now + timedelta(seconds=round_))
        times.append(elapsed * 1000)
    print(f"diagnosis_queries_10: {queries_10}")
    print(f"diagnosis_queries_1000: {queries_1000}")
    print(f"diagnosis_tick_ms_1000: {statistics.median(times):.0f}")
    print(f"diagnosis_rows_1000: {1000 * POOLS_PER_SERVICE * (WINDOW_S // INTERVAL_S)}")
    found = dict(Finding.objects.open().filter(service__in=large).values_list("kind").annotate(n=django.db.models.Count("id")))
    print(f"# verdicts at 1 000 services: {found}")


if __name__ == "__main__":
    run_then_drop(main, BENCH_DB)
