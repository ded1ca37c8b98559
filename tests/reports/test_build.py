"""The report's numbers from seeded rollups and snapshots, against weeks computed by hand."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from poolboard.databases.models import Episode, QueryFingerprint
from poolboard.diagnosis.models import Finding
from poolboard.lib import capacity
from poolboard.reports import build
from poolboard.reports.models import ImmutableError, Report

from . import factories

pytestmark = pytest.mark.django_db
TZ = "Europe/Paris"
WEEK = capacity.parse_week("2026-W47", TZ)
PREVIOUS = WEEK.previous()


def busy_week(i, at):
    """The lib test's week: 20 saturated buckets, 80 more at 9 of 10, the rest at 4 of 10.

    The 20 are full all five minutes (saturated_s 300) with callers queued for two of them
    (waiting_s 120): saturation minutes count the waiting, 40 minutes, not the 100 full ones."""
    if i < 20:
        return {"in_use_avg": 9, "in_use_max": 10, "max_avg": 10, "saturated_s": 300, "waiting_s": 120, "timeouts": 1,
                "acquisitions": 500, "acquire_s_avg": 0.5, "pending_max": 3}
    if i < 100:
        return {"in_use_avg": 9, "in_use_max": 9, "max_avg": 10, "waiting_s": 0, "timeouts": 0, "acquisitions": 500,
                "acquire_s_avg": 0.01, "pending_max": 0}
    return {"in_use_avg": 4, "in_use_max": 5, "max_avg": 10, "waiting_s": 0, "timeouts": 0, "acquisitions": 500,
            "acquire_s_avg": 0.01, "pending_max": 0}


def quiet_week(i, at):
    return {"in_use_avg": 4, "in_use_max": 5, "max_avg": 10, "waiting_s": 0, "timeouts": 0, "acquisitions": 500,
            "acquire_s_avg": 0.01, "pending_max": 0}


@pytest.fixture
def fleet(make_service):
    search = make_service("search", "hikaricp", instances=1)
    checkout = make_service("checkout", "db_pool", instances=2)
    factories.week_of_rollups(search.pools.get(), PREVIOUS, quiet_week)
    factories.week_of_rollups(search.pools.get(), WEEK, busy_week)
    for pool in checkout.pools.all():
        factories.week_of_rollups(pool, WEEK, lambda i, at: {"in_use_avg": 2, "in_use_max": 3, "max_avg": 8})
    return {"search": search, "checkout": checkout}


def by_name(report_numbers, name):
    return next(s for s in report_numbers["services"] if s["name"] == name)


def test_it_computes_a_services_week_by_hand(fleet):
    report = build.build(WEEK, WEEK.end + timedelta(hours=1))
    search = by_name(report.numbers, "search")
    f = search["figures"]
    assert f["coverage"] == 1.0
    assert f["saturation_minutes"] == pytest.approx(40.0)  # 20 buckets × 120 s
    assert f["p95_util"] == pytest.approx(0.4)
    assert f["p99_util"] == pytest.approx(0.9)
    assert f["peak_util"] == pytest.approx(1.0)
    assert f["peak_in_use"] == 10
    assert f["timeouts"] == 20
    assert f["timeouts_per_1k"] == pytest.approx(1000 * 20 / (2016 * 500))
    assert f["acquire_p95_s"] == pytest.approx(0.01)
    # Monday (local) holds the 100 busy buckets.
    assert f["daily_peak"] == [10, 5, 5, 5, 5, 5, 5]
    assert f["daily_p95"] == [9, 4, 4, 4, 4, 4, 4]
    # Week over week: the quiet week before peaked at 5 of 10 and never saturated.
    assert search["previous"]["peak_util"] == pytest.approx(0.5)
    assert search["changes"]["peak_util"]["direction"] == "up"
    assert search["changes"]["peak_util"]["delta"] == pytest.approx(0.5)
    assert search["changes"]["p95_util"]["direction"] == "flat"
    assert search["changes"]["saturation_minutes"]["direction"] == "new"
    # Two pools of 8 with 2 in use each: 4 of 16.
    checkout = by_name(report.numbers, "checkout")
    assert checkout["figures"]["p95_util"] == pytest.approx(0.25)
    assert checkout["figures"]["max"] == 16
    assert checkout["pools"] == 2
    assert checkout["changes"]["p95_util"]["direction"] == "none"  # no week before
    assert "checkout" in report.numbers["changes"]["new_services"]
    assert report.numbers["headline"]["services"] == 2 and report.numbers["headline"]["pools"] == 3
    assert report.numbers["headline"]["saturated_services"] == 1
    assert any(a["subject"] == "search" and "saturated 40 min" in a["text"] for a in report.numbers["headline"]["actions"])


def test_its_sql_agrees_with_the_pure_definitions_on_random_rollups(make_service):
    rng = random.Random(12)
    svc = make_service("random", instances=3)
    for pool in svc.pools.all():
        def make(i, at):
            if rng.random() < 0.1:
                return None  # gaps
            mx = rng.choice([10, 10, 20])
            avg = rng.uniform(0, mx)
            return {"in_use_avg": avg, "in_use_max": min(mx, avg + rng.uniform(0, 3)), "max_avg": mx,
                    "waiting_s": rng.choice([0, 0, 0, 30, 300]), "timeouts": rng.choice([None, 0, 1]),
                    "acquisitions": rng.uniform(100, 900), "acquire_s_avg": rng.uniform(0, 0.2)}
        factories.week_of_rollups(pool, WEEK, make)
    report = build.build(WEEK, WEEK.end)
    stored = by_name(report.numbers, "random")["figures"]
    expected = capacity.week_figures(build.service_buckets([svc.pk], WEEK.start, WEEK.end)[svc.pk], WEEK).as_dict()
    for key, value in expected.items():
        if isinstance(value, list):
            assert stored[key] == pytest.approx(value), key
        else:
            assert stored[key] == pytest.approx(value, rel=1e-9), key


@pytest.mark.parametrize(
    ("slope", "status", "days"),
    [(1, "rising", 36), (0, "not_rising", None), (-1, "not_rising", None)],
)
def test_it_forecasts_days_until_the_budget_runs_out(slope, status, days):
    srv = factories.server()
    last_day = WEEK.days()[-1][0]
    # 35 days of daily peaks ending at 64 on the report's Sunday; usable 103 - 3 = 100.
    peaks = {last_day - timedelta(days=34 - i): 64 - slope * (34 - i) for i in range(35)}
    factories.daily_snapshots(srv, {d: [p - 10, p - 5, p] for d, p in peaks.items()}, TZ)
    report = build.build(WEEK, WEEK.end)
    db = report.numbers["databases"][0]
    assert db["usable"] == 100 and db["warn_line"] == 80
    assert db["peak"] == max(peaks[d] for d, _, _ in WEEK.days())  # 64, or Monday's 70 when falling
    week_values = sorted(v for d, p in peaks.items() if d >= WEEK.days()[0][0] for v in (p - 10, p - 5, p))
    assert db["p95"] == pytest.approx(capacity.percentile(week_values, 0.95))
    assert db["forecast"]["status"] == status
    assert db["forecast"]["days"] == (pytest.approx(days) if days is not None else None)
    assert db["daily_peak"] == [peaks[d] for d, _, _ in WEEK.days()]


def test_it_lists_findings_and_episodes_of_the_week(fleet):
    search = fleet["search"]
    Finding.objects.create(service=search, kind="saturation", severity="warn", confidence=0.9,
                           opened_at=WEEK.start + timedelta(hours=3), last_seen_at=WEEK.start + timedelta(hours=5),
                           closed_at=WEEK.start + timedelta(hours=5), summary="all 10 in use, 3 waiting", fix="more")
    Finding.objects.create(service=search, kind="leak", severity="crit", confidence=0.8,
                           opened_at=WEEK.end - timedelta(days=1), last_seen_at=WEEK.end, summary="in use climbing",
                           fix="find it")
    Finding.objects.create(service=search, kind="churn", severity="info", confidence=0.5,  # before the week
                           opened_at=PREVIOUS.start, last_seen_at=PREVIOUS.start, closed_at=PREVIOUS.end - timedelta(days=1),
                           summary="old", fix="x")
    srv = factories.server()
    fp = QueryFingerprint.objects.create(fingerprint="abcd", text="SELECT pg_sleep($1)", first_seen=WEEK.start,
                                         last_seen=WEEK.start)
    for i, age in enumerate([40, 90, 65]):
        at = WEEK.start + timedelta(hours=10 + i)
        Episode.objects.create(server=srv, kind="long_query", pid=100 + i, started=at, first_seen=at, last_seen=at,
                               ended=at + timedelta(seconds=age), peak_age_s=age, service=search, query=fp)
    at = PREVIOUS.start + timedelta(hours=1)  # last week's: not counted
    Episode.objects.create(server=srv, kind="idle_in_transaction", pid=99, started=at, first_seen=at, last_seen=at,
                           ended=at + timedelta(minutes=2), peak_age_s=120, service=search)
    report = build.build(WEEK, WEEK.end)
    row = by_name(report.numbers, "search")
    assert [(f["kind"], f["open"]) for f in row["findings"]] == [("saturation", False), ("leak", True)]
    assert row["episodes"] == {"long_query": {"count": 3, "longest_s": 90, "top": [
        {"fingerprint": "abcd", "text": "SELECT pg_sleep($1)", "count": 3, "longest_s": 90}]}}
    assert report.numbers["headline"]["leak_suspects"] == 1
    assert report.numbers["headline"]["actions"][0]["kind"] == "leak"


def test_it_reports_an_empty_fleet_with_notes():
    report = build.build(WEEK, WEEK.end)
    assert report.numbers["services"] == [] and report.numbers["databases"] == []
    assert report.numbers["headline"]["actions"] == []
    notes = " ".join(report.numbers["notes"])
    assert "No monitored PostgreSQL server" in notes and "No service is watched yet" in notes


def test_it_stores_reports_immutably_and_regenerates_as_a_new_version(fleet):
    first = build.build(WEEK, WEEK.end)
    first.numbers["headline"]["services"] = 99
    with pytest.raises(ImmutableError):
        first.save()
    assert Report.objects.get(pk=first.pk).numbers["headline"]["services"] == 2
    second = build.build(WEEK, WEEK.end + timedelta(days=30))
    assert (first.version, second.version) == (1, 2)
    assert Report.objects.of_week(WEEK.key) == second
    assert Report.objects.of_week(WEEK.key, 1).numbers == Report.objects.of_week(WEEK.key, 2).numbers | {
        "generated_at": first.numbers["generated_at"]}
    assert second.inputs["figures_version"] == build.FIGURES_VERSION


def test_it_costs_the_same_queries_for_1_and_30_services(make_service):
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            build.compute(WEEK, WEEK.end)
        return len(ctx.captured_queries)

    svc = make_service("one", instances=1)
    factories.week_of_rollups(svc.pools.get(), WEEK, quiet_week)
    few = queries()
    for i in range(30):
        s = make_service(f"svc-{i}", instances=2)
        for pool in s.pools.all():
            factories.rollups(pool, WEEK.start, 12, quiet_week)
    assert queries() == few


@pytest.mark.parametrize(("week", "hours", "sunday_buckets"), [("2026-W13", 167, 23 * 12), ("2026-W43", 169, 25 * 12)])
def test_it_covers_the_real_hours_of_a_dst_week(make_service, week, hours, sunday_buckets):
    period = capacity.parse_week(week, TZ)
    svc = make_service("dst", instances=1)
    # Saturated all the time; in use 5 on Sunday, 2 on the other days.
    sunday = period.days()[-1]
    factories.week_of_rollups(svc.pools.get(), period, lambda i, at: {
        "in_use_avg": 5 if at >= sunday[1] else 2, "max_avg": 10, "waiting_s": 300})
    report = build.build(period, period.end)
    assert report.numbers["period"]["real_hours"] == hours
    f = by_name(report.numbers, "dst")["figures"]
    assert f["coverage"] == 1.0
    assert f["saturation_minutes"] == pytest.approx(hours * 60)
    assert f["daily_peak"] == [2, 2, 2, 2, 2, 2, 5]
    # The local Sunday is 23 or 25 hours long and every one of its buckets lands in it.
    assert len(build.service_buckets([svc.pk], sunday[1], sunday[2])[svc.pk]) == sunday_buckets


def test_it_lists_what_changed(make_service, make_source):
    from poolboard.fleet.models import CustomPreset

    resized = make_service("resized", instances=1)
    factories.week_of_rollups(resized.pools.get(), PREVIOUS, quiet_week)
    # Pool max 10 until Wednesday, 20 after.
    factories.week_of_rollups(resized.pools.get(), WEEK, lambda i, at: {
        "in_use_avg": 4, "max_avg": 10 if i < 2 * 288 else 20})
    gone = make_service("gone", instances=1)
    factories.week_of_rollups(gone.pools.get(), PREVIOUS, quiet_week)
    CustomPreset.objects.create(name="in-house", source=make_source("other"), marker="inhouse_pool_used",
                                in_use_query="sum(inhouse_pool_used)", created=WEEK.start + timedelta(days=2))
    changes = build.build(WEEK, WEEK.end).numbers["changes"]
    assert changes["max_changes"] == [{"service": "resized", "from": 10, "to": 20}]
    assert changes["vanished_services"] == ["gone"]
    assert changes["new_presets"] == ["in-house"]


def test_two_builds_of_the_same_week_number_their_versions(fleet, monkeypatch):
    from poolboard.reports import models

    # Both builds read "no version yet" (as two racing `manage.py report` would): the second is renumbered.
    real = models.Report.next_version.__func__
    reads = []

    def stale_first_read(cls, week):
        reads.append(week)
        return 1 if len(reads) <= 2 else real(cls, week)

    monkeypatch.setattr(models.Report, "next_version", classmethod(stale_first_read))
    first = build.build(WEEK, WEEK.end)
    second = build.build(WEEK, WEEK.end)
    assert (first.version, second.version) == (1, 2)
