"""Alert evaluation: SQL queries per rule at 10 and 1 000 services, and one tick's time at 1 000.

Prints:
  alerts_queries_per_rule_10 / alerts_queries_per_rule_1000   SQL queries of one evaluation pass
                           divided by its 50 rules, in the steady state (no transition in that
                           pass: each transition adds its own compare-and-set, history row and
                           outbox rows, whatever the fleet size) — must be equal
  alerts_eval_ms_1000      wall time of one pass of 50 rules over 1 000 services (median of 5),
                           as the task runs it (one transaction); 5 % of the services saturated
                           and waiting, so pending/firing instances get their values updated
  alerts_instances_1000    active (pending or firing) instances the pass carries

The 50 rules cycle over every signal (pool signals, staleness, leak findings, idle in transaction
and query age per service and per database, budget), one channel each. One monitored server with
a snapshot and open episodes feeds the server-side signals. Throwaway database
poolboard_bench_alerts (dropped and re-created).
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

BENCH_DB = "poolboard_bench_alerts"
use_throwaway_database(BENCH_DB)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from poolboard.alerts.evaluate import evaluate_rules  # noqa: E402
from poolboard.alerts.models import AlertInstance, AlertRule  # noqa: E402
from poolboard.databases.models import Episode, MonitoredServer, ServerDatabase, SessionCount, Snapshot  # noqa: E402
from poolboard.fleet.models import Pool, PrometheusSource, Service  # noqa: E402
from poolboard.lib.episodes import IDLE_IN_TRANSACTION, LONG_QUERY  # noqa: E402
from poolboard.notify.models import Channel  # noqa: E402

call_command("migrate", verbosity=0)

RULES = 50
SIGNALS = [
    ("utilization", 90.0, ""), ("waiting", 0.0, ""), ("timeouts", 0.0, ""), ("acquire_s", 1.0, ""),
    ("hold_s", 5.0, ""), ("stale_s", 300.0, ""), ("finding", 0.0, "leak"), ("idle_in_transaction_s", 60.0, ""),
    ("query_s", 30.0, ""), ("db_idle_in_transaction_s", 60.0, ""), ("db_query_s", 30.0, ""), ("budget", 80.0, ""),
    ("available", 1.0, ""),
]


def build_rules() -> None:
    AlertRule.objects.all().delete()
    hook = Channel.objects.create(name="bench", kind="webhook", settings={"url": "http://127.0.0.1:9/"})
    for i in range(RULES):
        signal, threshold, kind = SIGNALS[i % len(SIGNALS)]
        rule = AlertRule.objects.create(
            name=f"Bench{i:02d}_{signal}", signal=signal, threshold=threshold + i // len(SIGNALS) * 0.0,
            comparator="<" if signal == "available" else ">", for_s=(i % 3) * 60, finding_kind=kind,
            max_instances=1000,
        )
        rule.channels.add(hook)


def build_fleet(count: int, prefix: str, now) -> list[Service]:
    source, _ = PrometheusSource.objects.get_or_create(
        name="bench", defaults={"url": "http://127.0.0.1:9", "presets": ["db_pool"], "last_success_at": now}
    )
    services = Service.objects.bulk_create(
        Service(name=f"{prefix}-{i:04d}", source=source, preset="db_pool", last_seen_at=now) for i in range(count)
    )
    Pool.objects.bulk_create(
        Pool(service=s, instance=f"10.0.0.{j}:8080", name="main", sampled_at=now, max=10,
             in_use=10 if i % 20 == 0 else 4, pending=3 if i % 20 == 0 else 0, timeouts=0, acquire_s=0.01, hold_s=0.1)
        for i, s in enumerate(services) for j in range(2)
    )
    return services


def build_server(now, services) -> None:
    server = MonitoredServer.objects.create(name="bench-db", host="db.internal", last_snapshot_at=now)
    for datname in ("orders", "billing", "search"):
        ServerDatabase.objects.create(server=server, datname=datname, first_seen=now, last_seen=now)
    snap = Snapshot.objects.create(server=server, slot=1, taken_at=now, total=60, max_connections=100,
                                   superuser_reserved_connections=3)
    SessionCount.objects.create(snapshot=snap, application_name="app", state="idle", count=60)
    Episode.objects.bulk_create(
        Episode(server=server, kind=IDLE_IN_TRANSACTION if i % 2 else LONG_QUERY, pid=1000 + i,
                started=now - timedelta(seconds=20 + 10 * i), first_seen=now, last_seen=now, peak_age_s=20 + 10 * i,
                service=s, datname="orders")
        for i, s in enumerate(services[:10])
    )


def one_pass(now) -> tuple[int, float]:
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        with transaction.atomic():
            result = evaluate_rules(now)
        elapsed = time.perf_counter() - started
    assert not result.transitions, "the measured pass must be the steady state"
    return len(queries.captured_queries), elapsed


def settle(now) -> None:
    """Evaluate until nothing transitions any more (pending instances past their `for`)."""
    for step in range(6):
        with transaction.atomic():
            evaluate_rules(now + timedelta(minutes=step))


def main() -> None:
    now = timezone.now().replace(microsecond=0)
    build_rules()
    small = build_fleet(10, "small", now)
    build_server(now, small)
    Pool.objects.update(sampled_at=now + timedelta(minutes=5))
    PrometheusSource.objects.update(last_success_at=now + timedelta(minutes=5))
    MonitoredServer.objects.update(last_snapshot_at=now + timedelta(minutes=5))
    settle(now)
    queries_10, _ = one_pass(now + timedelta(minutes=5))

    build_fleet(990, "large", now)
    late = now + timedelta(minutes=10)
    Pool.objects.update(sampled_at=late)
    PrometheusSource.objects.update(last_success_at=late)
    MonitoredServer.objects.update(last_snapshot_at=late)
    settle(now + timedelta(minutes=5))
    if "--profile" in sys.argv:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        one_pass(late)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
        return
    times = []
    queries_1000 = 0
    for round_ in range(5):
        queries_1000, elapsed = one_pass(late + timedelta(seconds=round_))
        times.append(elapsed * 1000)
    print(f"alerts_queries_per_rule_10: {queries_10 / RULES:.2f}")
    print(f"alerts_queries_per_rule_1000: {queries_1000 / RULES:.2f}")
    print(f"alerts_eval_ms_1000: {statistics.median(times):.0f}")
    print(f"alerts_instances_1000: {AlertInstance.objects.active().count()}")


if __name__ == "__main__":
    run_then_drop(main, BENCH_DB)
