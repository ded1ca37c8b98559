"""Rollups on real PostgreSQL: idempotent, and the same numbers as poolboard.lib.rollups."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import time_machine

from poolboard.fleet.models import Pool
from poolboard.history import rollup
from poolboard.history.models import PoolRollup1h, PoolRollup5m
from poolboard.history.tasks import expire_rollups, rollup_recent
from poolboard.lib import promql
from poolboard.lib import rollups as lib
from tests.fleet.factories import write_samples

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc).timestamp()


def utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc)


def table(model) -> list[tuple]:
    fields = ["pool_id", "bucket", *rollup.VALUE_COLUMNS]
    return list(model.objects.order_by("pool_id", "bucket").values_list(*fields))


def wave(i: int) -> dict:
    """A pool that fills up and drains: saturated for a few samples of each cycle."""
    in_use = float(i % 12)
    return {"max": 10.0, "in_use": min(in_use, 10.0), "idle": max(0.0, 10 - in_use), "pending": max(0.0, in_use - 10),
            "timeouts": 1.0 if i % 12 == 11 else 0.0, "acquisitions": 20.0 + i % 7, "acquire_s": 0.001 * (i % 5),
            "hold_s": 0.05}


@pytest.fixture
def two_pools(make_service):
    service = make_service(instances=2)
    a, b = Pool.objects.filter(service=service).order_by("instance")
    rows = [(a.id, T0 + 15 * i, wave(i)) for i in range(40 * 4)]  # 40 minutes every 15 s
    rows += [(b.id, T0 + 15 * i + 7, {"max": 0.0, "in_use": 3.0, "idle": 2.0}) for i in range(40 * 4)]  # max 0 = unlimited
    write_samples(rows)
    return a, b, rows


def test_it_gives_the_same_rows_and_values_when_run_twice(two_pools) -> None:
    start, end = datetime.fromtimestamp(T0, tz=timezone.utc), datetime.fromtimestamp(T0 + 2400, tz=timezone.utc)
    rollup.rollup(rollup.RES_5M, start, end)
    rollup.rollup(rollup.RES_1H, start, end)
    first_5m, first_1h = table(PoolRollup5m), table(PoolRollup1h)

    assert rollup.rollup(rollup.RES_5M, start, end) == 16  # 2 pools × 8 buckets, updated in place
    rollup.rollup(rollup.RES_1H, start, end)

    assert table(PoolRollup5m) == first_5m and len(first_5m) == 16
    assert table(PoolRollup1h) == first_1h and len(first_1h) == 2


def test_it_computes_min_avg_max_p95_and_saturated_seconds_like_lib(two_pools) -> None:
    a, b, rows = two_pools
    rollup.rollup(rollup.RES_5M, datetime.fromtimestamp(T0, tz=timezone.utc), datetime.fromtimestamp(T0 + 2400, tz=timezone.utc))
    bucket = T0 + 600  # the third 5-minute bucket
    inside = [(ts, v) for pid, ts, v in rows if pid == a.id and bucket <= ts < bucket + 300]
    around = [(utc(ts), v["in_use"], v["max"], v["pending"]) for pid, ts, v in rows if pid == a.id and bucket - 30 <= ts < bucket + 330]
    row = PoolRollup5m.objects.get(pool=a, bucket=datetime.fromtimestamp(bucket, tz=timezone.utc))

    in_use = [v["in_use"] for _, v in inside]
    assert row.samples == 20
    assert (row.in_use_min, row.in_use_max) == (min(in_use), max(in_use))
    assert row.in_use_avg == pytest.approx(sum(in_use) / 20)
    assert row.in_use_p95 == pytest.approx(lib.percentile(in_use, 0.95))
    assert row.util_p95 == pytest.approx(lib.percentile([u / 10 for u in in_use], 0.95))
    # Each sample's timeouts is an increase over the source's rate window (see the
    # default source): spread over the 15 s each sample stands for.
    window_s = promql.duration_seconds(a.service.source.rate_window)
    assert row.timeouts == pytest.approx(lib.events_in_spans([(15.0, v["timeouts"]) for _, v in inside], window_s))
    assert row.timeouts == pytest.approx(sum(v["timeouts"] for _, v in inside) * 15 / window_s)
    # Acquisitions are counted the same way: each checkout once, not once per overlapping window.
    assert row.acquisitions == pytest.approx(lib.events_in_spans([(15.0, v["acquisitions"]) for _, v in inside], window_s))
    assert row.acquisitions == pytest.approx(sum(v["acquisitions"] for _, v in inside) * 15 / window_s)
    assert row.acquisitions > 0
    expected = lib.saturated_seconds(around, utc(bucket), 300, rollup.max_gap_s())
    # in_use reaches max (10) once per 12-sample cycle, and 11 → 10 with a waiter.
    assert expected == 15 * sum(1 for _, v in inside if v["in_use"] >= 10 or v["pending"] > 0) > 0
    assert row.saturated_s == pytest.approx(expected)
    # Seconds with callers waiting: only the samples with pending > 0, not the merely full ones.
    waiting = lib.waiting_seconds(around, utc(bucket), 300, rollup.max_gap_s())
    assert waiting == 15 * sum(1 for _, v in inside if v["pending"] > 0) > 0
    assert waiting < expected
    assert row.waiting_s == pytest.approx(waiting)


def test_utilization_is_absent_when_max_is_unlimited(two_pools) -> None:
    _, b, _ = two_pools
    rollup.rollup(rollup.RES_5M, datetime.fromtimestamp(T0, tz=timezone.utc), datetime.fromtimestamp(T0 + 300, tz=timezone.utc))
    row = PoolRollup5m.objects.get(pool=b)
    assert row.in_use_avg == 3.0
    assert row.util_avg is None and row.util_p95 is None
    # Nothing says it is waiting (no pending field) and max is unlimited: not known, never 0.
    assert row.saturated_s is None
    assert row.waiting_s is None
    assert row.pending_avg is None
    # No acquisitions in its samples: absent, never 0.
    assert row.acquisitions is None


def test_a_gap_in_samples_is_not_counted_as_saturated_time(make_service) -> None:
    service = make_service(instances=1)
    pool = service.pools.get()
    full = {"max": 10.0, "in_use": 10.0, "pending": 2.0}
    # Saturated at 0 s and 15 s, then nothing until 200 s (collection down), then 215 s.
    write_samples([(pool.id, T0 + t, full) for t in (0, 15, 200, 215)])
    rollup.rollup(rollup.RES_5M, datetime.fromtimestamp(T0, tz=timezone.utc), datetime.fromtimestamp(T0 + 300, tz=timezone.utc))
    row = PoolRollup5m.objects.get(pool=pool)
    # 0 s: 15; 15 s: the 185 s gap capped at two ticks (30); 200 s: 15; 215 s (newest): 15.
    assert row.saturated_s == 15 + 30 + 15 + 15
    assert row.waiting_s == 15 + 30 + 15 + 15


def test_a_full_pool_with_nobody_queued_is_saturated_but_not_waiting(make_service) -> None:
    service = make_service(instances=1)
    pool = service.pools.get()
    full = {"max": 10.0, "in_use": 10.0, "pending": 0.0}
    queued = {"max": 10.0, "in_use": 10.0, "pending": 3.0}
    write_samples([(pool.id, T0 + 15 * i, queued if i in (4, 5) else full) for i in range(20)])
    rollup.rollup(rollup.RES_5M, datetime.fromtimestamp(T0, tz=timezone.utc), datetime.fromtimestamp(T0 + 300, tz=timezone.utc))
    row = PoolRollup5m.objects.get(pool=pool)
    assert row.saturated_s == 300
    assert row.waiting_s == 30


def test_a_rerun_picks_up_late_samples(make_service) -> None:
    service = make_service(instances=1)
    pool = service.pools.get()
    write_samples([(pool.id, T0 + 15 * i, {"in_use": 1.0}) for i in range(10)])
    span = (datetime.fromtimestamp(T0, tz=timezone.utc), datetime.fromtimestamp(T0 + 300, tz=timezone.utc))
    rollup.rollup(rollup.RES_5M, *span)
    write_samples([(pool.id, T0 + 15 * i, {"in_use": 3.0}) for i in range(10, 20)])
    rollup.rollup(rollup.RES_5M, *span)
    row = PoolRollup5m.objects.get(pool=pool)
    assert (row.samples, row.in_use_avg, row.in_use_max) == (20, 2.0, 3.0)


def test_the_beat_task_rolls_up_recent_buckets(make_service) -> None:
    service = make_service(instances=1)
    pool = service.pools.get()
    write_samples([(pool.id, T0 + 15 * i, {"in_use": 2.0, "max": 4.0}) for i in range(60)])
    with time_machine.travel(datetime.fromtimestamp(T0 + 900 + 5, tz=timezone.utc), tick=False):
        result = rollup_recent.run()
    assert result == {"5m": 3, "1h": 1}
    assert PoolRollup1h.objects.get(pool=pool).samples == 60
    assert [r.util_avg for r in PoolRollup5m.objects.order_by("bucket")] == [0.5, 0.5, 0.5]


def test_rollups_older_than_the_retention_are_deleted(make_service, settings) -> None:
    settings.ROLLUP_RETENTION_DAYS = 400
    service = make_service(instances=1)
    pool = service.pools.get()
    now = datetime(2026, 3, 2, tzinfo=timezone.utc)
    for days in (401, 399):
        PoolRollup1h.objects.create(pool=pool, bucket=now - timedelta(days=days), samples=1)
        PoolRollup5m.objects.create(pool=pool, bucket=now - timedelta(days=days), samples=1)
    with time_machine.travel(now, tick=False):
        assert expire_rollups.run() == {"5m": 1, "1h": 1}
    assert [r.bucket for r in PoolRollup1h.objects.all()] == [now - timedelta(days=399)]
    assert PoolRollup5m.objects.count() == 1


def test_a_second_rollup_run_at_the_same_time_skips(make_service) -> None:
    import threading

    from django.db import connections

    pool = make_service(instances=1).pools.get()
    write_samples([(pool.id, T0 + 15 * i, {"in_use": 1.0}) for i in range(20)])
    held, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        other = connections.create_connection("default")
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT pg_advisory_xact_lock(%s, 1)", [rollup.LOCK_CLASS])
            held.set()
            release.wait(10)
            cursor.execute("ROLLBACK")
        other.close()

    thread = threading.Thread(target=hold_lock)
    thread.start()
    try:
        assert held.wait(10)
        assert rollup.rollup_recent(datetime.fromtimestamp(T0 + 300, tz=timezone.utc)) == {"skipped": 1}
    finally:
        release.set()
        thread.join()
    assert rollup.rollup_recent(datetime.fromtimestamp(T0 + 300, tz=timezone.utc))["5m"] == 1


def test_the_rollup_command_fills_in_history(make_service) -> None:
    from io import StringIO

    from django.core.management import call_command

    pool = make_service(instances=1).pools.get()
    now = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
    write_samples([(pool.id, now.timestamp() - 86400 * 3 + 600 * i, {"in_use": 2.0}) for i in range(3 * 144)])
    out = StringIO()
    with time_machine.travel(now, tick=False):
        call_command("rollup", "--days", "4", stdout=out)
        call_command("rollup", "--days", "4", stdout=StringIO())
    assert PoolRollup5m.objects.count() == 3 * 144
    assert PoolRollup1h.objects.count() == 3 * 24
    assert "432 5-minute rows, 72 1-hour rows" in out.getvalue()


def test_the_waiting_s_migration_fills_old_buckets_from_the_raw_samples_kept(two_pools) -> None:
    import importlib

    from django.db import connection

    migration = importlib.import_module("poolboard.history.migrations.0003_waiting_s")
    a, b, _ = two_pools
    start, end = utc(T0), utc(T0 + 2400)
    rollup.rollup(rollup.RES_5M, start, end)
    rollup.rollup(rollup.RES_1H, start, end)
    computed = {m: table(m) for m in (PoolRollup5m, PoolRollup1h)}
    # Buckets rolled up before the column existed: no waiting figure.
    PoolRollup5m.objects.update(waiting_s=None)
    PoolRollup1h.objects.update(waiting_s=None)

    class SchemaEditor:
        pass

    editor = SchemaEditor()
    editor.connection = connection
    migration.backfill(None, editor)
    # The same figures as the rollup writes today, for both widths; pool b has no waiting count: still None.
    assert {m: table(m) for m in (PoolRollup5m, PoolRollup1h)} == computed
    assert any(row.waiting_s for row in PoolRollup5m.objects.filter(pool=a))
    assert set(PoolRollup5m.objects.filter(pool=b).values_list("waiting_s", flat=True)) == {None}
