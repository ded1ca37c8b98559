"""fleet_sizing(now) over stored rollups, snapshots and findings."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from poolboard.demo.fleet import fleet_connection_budget
from poolboard.fleet.models import Service
from poolboard.lib import sizing as sz
from poolboard.sizing.recommend import UNPLACED, fleet_sizing

from .factories import demo_fleet_stored, open_finding, pools, seen_on, server_with_snapshot, week_of_rollups

pytestmark = pytest.mark.django_db

@pytest.fixture
def demo_fleet(make_source):
    return demo_fleet_stored(make_source())


def test_it_gives_the_demo_fleet_what_one_computes_by_hand(demo_fleet):
    server, now = demo_fleet
    fleet = fleet_sizing(now)
    [ss] = fleet.servers
    assert ss.server == server
    ledger = ss.sizing.ledger
    # The ledger adds up to what the pools could open: 48, plus billing's 10 for one deploy at a time.
    assert ledger.committed - ledger.surge == fleet_connection_budget() == 48
    assert ledger.surge == 10
    # usable = 100 − 3 − 3 monitor − 10 admin = 84; open now 45.
    assert (ledger.usable, ledger.server.open_now) == (84, 45)
    recs = {r.pool.service: r for r in ss.sizing.recommendations}
    # search: p99 demand 5 + 7 = 12, × 1.2 = 14.4 → 15, from 5: grow by 10, callers waited.
    assert (recs["search"].action, recs["search"].recommended, recs["search"].change) == (sz.GROW, 15, 10)
    assert recs["billing"].action == sz.FIX_LEAK and recs["billing"].recommended == 10
    assert recs["notifications"].action == sz.FIX_LEAK
    assert recs["reports"].action == sz.SLOW_QUERIES and "70%" in recs["reports"].reason
    # checkout: p99 2 × 1.2 → 3 per instance, under half of 8 → shrink to 3 (× 2 instances).
    assert (recs["checkout"].action, recs["checkout"].recommended, recs["checkout"].instances) == (sz.SHRINK, 3, 2)
    # sessions: p99 3 × 1.2 → 4 ≥ half of 5 → fine.
    assert recs["sessions"].action == sz.KEEP
    # Together: 3×2 + 15 + 10 + 6 + 6 + 5 = 48 ≤ 67, the 80 % line of 84.
    fitted = sum(r.recommended * r.pool.processes for r in recs.values())
    assert fitted == 48 and fitted <= ss.sizing.ledger.warn_line
    assert ss.sizing.fit.scale is None
    assert recs["search"].max_safe_replicas == (67 - (48 - 15)) // 15


def test_a_tight_server_scales_the_recommendations_down_and_says_who_loses(demo_fleet, settings):
    server, now = demo_fleet
    snap = server.snapshots.get()
    snap.max_connections = 60  # usable 60 − 3 − 3 − 6 = 48, 80 % line 38
    snap.save()
    ss = fleet_sizing(now).servers[0]
    assert ss.sizing.fit.target == 38 and ss.sizing.fit.scale is not None
    recs = ss.sizing.recommendations
    assert sum(r.recommended * r.pool.processes for r in recs) <= 38
    assert any(r.cut > 0 and "fitted:" in r.arithmetic[-1] for r in recs)


def test_a_service_is_placed_by_its_sessions_unless_configured(make_source):
    now = timezone.now()
    a = server_with_snapshot("a", now)
    b = server_with_snapshot("b", now - timedelta(seconds=30))
    source = make_source()
    learned = Service.objects.create(name="learned", source=source, preset="db_pool")
    pinned = Service.objects.create(name="pinned", source=source, preset="db_pool", server=a, datname="orders")
    lost = Service.objects.create(name="lost", source=source, preset="db_pool")
    for svc in (learned, pinned, lost):
        pools(svc, 1, max=10, now=now)
    seen_on(b, learned, now, datname="shop")
    seen_on(b, pinned, now, datname="shop")  # its configured server wins
    fleet = fleet_sizing(now)
    where = {rec.pool.service: ss for ss in fleet.servers for rec in ss.sizing.recommendations}
    assert where["learned"].name == "b" and "learned" in where["learned"].learned
    assert where["learned"].datnames["learned"] == "shop"
    assert where["pinned"].name == "a" and where["pinned"].datnames["pinned"] == "orders"
    assert where["lost"].name == UNPLACED and where["lost"].sizing.fit.target is None
    # No history: each says how much is needed.
    assert all(rec.action == sz.NOT_ENOUGH_DATA for ss in fleet.servers for rec in ss.sizing.recommendations)


def test_it_reads_a_fixed_number_of_queries_whatever_the_fleet(make_source):
    now = timezone.now()
    server = server_with_snapshot("main", now)
    source = make_source()

    def grow(n, start):
        for i in range(start, start + n):
            svc = Service.objects.create(name=f"svc-{i}", source=source, preset="db_pool", server=server)
            week_of_rollups(pools(svc, 2, max=10, now=now), now, in_use_p95=4, hours=2)
            open_finding(svc, "leak", now) if i % 3 == 0 else None

    grow(2, 0)
    with CaptureQueriesContext(connection) as small:
        fleet_sizing(now)
    grow(20, 2)
    with CaptureQueriesContext(connection) as big:
        fleet = fleet_sizing(now)
    assert len(small) == len(big)
    assert len(fleet.servers[0].sizing.recommendations) == 22


def test_pgbouncer_and_an_unlimited_go_pool_from_the_stored_settings(make_source):
    now = timezone.now()
    server = server_with_snapshot("main", now)
    source = make_source()
    web = Service.objects.create(name="web", source=source, preset="db_pool", server=server, pooler="pgb",
                                 pooler_pool_size=25, pooler_instances=2, pooler_max_db_connections=40)
    gosvc = Service.objects.create(name="gosvc", source=source, preset="go_sql", server=server)
    week_of_rollups(pools(web, 6, max=30, now=now), now, in_use_p95=20, hours=24)
    week_of_rollups(pools(gosvc, 2, max=0, now=now), now, in_use_p95=7, pending_p95=1, hours=24)
    ss = fleet_sizing(now).servers[0]
    lines = {line.label: line for line in ss.sizing.ledger.lines}
    # 25 × 2 PgBouncers = 50, capped by max_db_connections 40; web's own 6 × 30 goes to the pooler.
    assert lines["pgb (PgBouncer)"].connections == 40 and lines["web"].connections == 0
    assert ss.sizing.ledger.unlimited == ["gosvc"]
    assert ss.sizing.ledger.verdict().startswith("The budget is unknowable: gosvc has no pool limit")
    recs = {r.pool.service: r for r in ss.sizing.recommendations}
    # gosvc: p99 7 + 1 waiting = 8, × 1.2 → 10 per process: set that limit.
    assert (recs["gosvc"].action, recs["gosvc"].recommended) == (sz.SET_LIMIT, 10)
    assert "PgBouncer in front: 40 server connections go to the pooler" in ss.sizing.fit.note
    assert ss.sizing.fit.target == 67 - 40


def test_the_panels_reuse_one_computation_until_a_verdict_input_changes(demo_fleet, settings):
    from poolboard.sizing.recommend import recent_fleet_sizing

    settings.SIZING_PANEL_CACHE_S = 60
    server, now = demo_fleet
    first = recent_fleet_sizing(now)
    with CaptureQueriesContext(connection) as reused:
        assert recent_fleet_sizing(now + timedelta(seconds=30)) is first
    assert len(reused) == 3  # the version only: services' settings, servers, open findings
    # A leak opened on search turns its "grow" into "fix the leak" at once.
    search = Service.objects.get(name="search")
    open_finding(search, "leak", now)
    fixed = recent_fleet_sizing(now + timedelta(seconds=31))
    assert fixed is not first and fixed.by_service["search"][0][1].action == sz.FIX_LEAK
    # A changed sizing setting is seen at once too.
    Service.objects.filter(name="checkout").update(replicas=4)
    assert recent_fleet_sizing(now + timedelta(seconds=32)) is not fixed
    # And whatever happens, a copy is never older than the age limit.
    again = recent_fleet_sizing(now + timedelta(seconds=33))
    assert recent_fleet_sizing(now + timedelta(seconds=33 + 61)) is not again
