"""Hand-worked cases for the ledger and the recommendation (poolboard.lib.sizing)."""

from poolboard.lib import sizing as sz

NO_SURGE = sz.Policy(deploy_surge=0)
# max_connections 100: usable = 100 − 3 superuser − 3 monitor − 10 admin reserve = 84; 80 % line 67.2.
SERVER = sz.Server("main", max_connections=100, superuser_reserved_connections=3, open_now=41)


def week(p99, *, p95=None, peak=None, waited=False, timeouts=0.0, history_s=7 * 86400.0, rate=None, hold=None):
    return sz.Demand(window_s=7 * 86400.0, history_s=history_s, p95=p95 if p95 is not None else p99, p99=p99,
                     peak=peak if peak is not None else p99, waited=waited, timeouts=timeouts,
                     rate_per_s=rate, hold_s=hold, little=sz.littles_law(rate, hold))


def test_it_takes_reserved_slots_monitor_and_admin_reserve_out_of_usable():
    assert sz.usable_connections(SERVER) == (84, 10)
    pg16 = sz.Server("new", max_connections=200, superuser_reserved_connections=3, reserved_connections=5)
    # 200 − 3 − 5 − 3 − 20 = 169
    assert sz.usable_connections(pg16) == (169, 20)
    ledger = sz.build_ledger(pg16, [])
    assert ledger.usable_formula() == ("usable = 200 max_connections − 3 superuser_reserved_connections − "
                                       "5 reserved_connections − 3 for poolboard's monitor − 20 kept for admin/migrations = 169")


def test_it_says_five_replicas_of_twenty_overcommit_a_server_of_a_hundred():
    pools = [sz.PoolInput("api", "main", max=20, instances_seen=5)]
    ledger = sz.build_ledger(SERVER, pools, NO_SURGE)
    assert ledger.committed == 100
    assert ledger.overcommitted
    assert ledger.lines[0].formula == "(20) × 5 instances (seen in 24 h)"
    assert ledger.verdict() == ("Overcommitted: if every pool filled, 100 connections would be asked of a server "
                                "that accepts 84.")


def test_it_counts_overflow_and_workers_per_instance():
    pools = [sz.PoolInput("reports", max=4, overflow=2, workers=3, instances_seen=2)]
    ledger = sz.build_ledger(SERVER, pools, NO_SURGE)
    # (4 + 2) × 3 workers × 2 instances
    assert ledger.committed == 36
    assert ledger.lines[0].formula == "(4 + 2 overflow) × 3 workers × 2 instances (seen in 24 h)"
    assert not ledger.overcommitted and not ledger.over_warn


def test_it_calls_gos_max_zero_unknowable_not_zero():
    pools = [sz.PoolInput("gosvc", max=0, instances_seen=2), sz.PoolInput("checkout", max=8, instances_seen=2)]
    ledger = sz.build_ledger(SERVER, pools, NO_SURGE)
    assert ledger.unlimited == ["gosvc"] and not ledger.knowable
    assert ledger.lines[0].connections is None and "unlimited" in ledger.lines[0].formula
    assert ledger.committed == 16
    text = ledger.verdict()
    assert text.startswith("The budget is unknowable: gosvc has no pool limit (max 0 means unlimited")
    assert "16 of 84" in text
    # With demand, the recommendation is a limit to set, and the fit includes it.
    sizing = sz.size_server(SERVER, [sz.replace(pools[0], demand=week(10, waited=True))], NO_SURGE)
    rec = sizing.recommendations[0]
    assert (rec.action, rec.current, rec.recommended) == (sz.SET_LIMIT, None, 12)
    assert "max 0 is unlimited: set it to 12" in rec.reason


def test_it_leaves_a_pool_without_a_known_max_out_and_says_so():
    ledger = sz.build_ledger(SERVER, [sz.PoolInput("asyncpg-svc", max=None, instances_seen=1)], NO_SURGE)
    assert ledger.unknown == ["asyncpg-svc"]
    assert "no exporter gives their max" in ledger.verdict()


def test_it_adds_the_largest_single_deploy_surge():
    pools = [sz.PoolInput("a", max=10, instances_seen=4), sz.PoolInput("b", max=30, instances_seen=1)]
    ledger = sz.build_ledger(SERVER, pools)
    # a: ceil(4 × 0.25) = 1 extra × 10 = 10; b: ceil(1 × 0.25) = 1 extra × 30 = 30 → the larger, 30.
    assert ledger.surge == 30
    assert ledger.committed == 40 + 30 + 30
    assert ledger.lines[-1].kind == "surge"
    assert sum(line.connections for line in ledger.lines) == ledger.committed


def test_one_instance_and_forty_instances_get_different_sizes_and_replica_limits():
    one = sz.PoolInput("api", max=10, instances_seen=1, demand=week(4))
    sizing = sz.size_server(SERVER, [one], NO_SURGE)
    rec = sizing.recommendations[0]
    # ceil(4 × 1.2) = 5, under half of 10 → shrink; 80 % line floor(67.2) = 67 → 67 // 5 = 13 replicas.
    assert (rec.action, rec.wanted, rec.recommended, rec.max_safe_replicas) == (sz.SHRINK, 5, 5, 13)

    forty = sz.replace(one, replicas=40)
    sizing = sz.size_server(SERVER, [forty], NO_SURGE)
    rec = sizing.recommendations[0]
    # 5 × 40 = 200 > 67: × 67/200 → floor(1.675) = 1 each (40); 27 left is not another 40.
    assert (rec.wanted, rec.recommended, rec.cut) == (5, 1, 4)
    assert rec.max_safe_replicas == 67
    assert sizing.fit.scale == 67 / 200
    assert sizing.recommended_ledger.committed == 40


def test_a_fleet_already_over_budget_is_scaled_down_to_the_80_percent_line():
    pools = [sz.PoolInput("a", max=60, instances_seen=1, demand=week(50, waited=True)),
             sz.PoolInput("b", max=60, instances_seen=1, demand=week(50, waited=True))]
    sizing = sz.size_server(SERVER, pools, NO_SURGE)
    assert sizing.ledger.overcommitted and sizing.ledger.committed == 120
    a, b = sizing.recommendations
    # wanted 60 each (ceil(50 × 1.2)), 120 > 67: × 0.558 → 33 each, the one left over goes to a.
    assert (a.wanted, a.recommended, b.recommended) == (60, 34, 33)
    assert a.recommended + b.recommended == 67
    assert (a.cut, b.cut) == (26, 27)
    assert "scaled by 0.56" in sizing.fit.note
    assert not sizing.recommended_ledger.overcommitted


def test_it_does_not_fit_a_server_it_has_no_snapshot_of():
    server = sz.Server("fresh")
    sizing = sz.size_server(server, [sz.PoolInput("api", max=10, instances_seen=2, demand=week(9, waited=True))])
    assert sizing.ledger.usable is None and sizing.ledger.warn_line is None
    assert sizing.ledger.verdict().startswith("No snapshot of fresh yet, so its max_connections is unknown")
    assert sizing.fit.target is None and "not fitted" in sizing.fit.note
    rec = sizing.recommendations[0]
    assert (rec.action, rec.recommended, rec.max_safe_replicas) == (sz.GROW, 11, None)


def test_pgbouncer_in_front_counts_its_own_pool_on_the_server():
    bouncer = sz.Pooler("pgb", pool_size=20, instances=2, max_db_connections=30)
    pools = [sz.PoolInput("web", max=50, instances_seen=4, pooler=bouncer),
             sz.PoolInput("worker", max=50, instances_seen=2, pooler=bouncer),
             sz.PoolInput("cron", max=10, instances_seen=1)]
    ledger = sz.build_ledger(SERVER, pools, NO_SURGE)
    labels = {line.label: line.connections for line in ledger.lines}
    # 20 × 2 PgBouncers = 40, capped by max_db_connections 30; 300 client connections behind it.
    assert labels == {"web": 0, "worker": 0, "cron": 10, "pgb (PgBouncer)": 30}
    assert ledger.committed == 40
    assert "through pgb" in ledger.lines[0].formula
    sizing = sz.size_server(SERVER, [*pools[:2], sz.replace(pools[2], demand=week(9, waited=True))], NO_SURGE)
    # The direct pools share 67 − 30 = 37.
    assert sizing.fit.target == 37
    assert "PgBouncer in front: 30 server connections go to the pooler" in sizing.fit.note


def test_a_pooler_never_counts_more_than_its_clients_can_ask():
    small = sz.Pooler("pgb", pool_size=20)
    ledger = sz.build_ledger(SERVER, [sz.PoolInput("web", max=5, instances_seen=2, pooler=small)], NO_SURGE)
    assert ledger.committed == 10


def test_a_leak_gets_fix_the_leak_never_grow():
    p = sz.PoolInput("billing", max=10, instances_seen=1, demand=week(10, waited=True, timeouts=4), leak=True)
    rec = sz.size_server(SERVER, [p], NO_SURGE).recommendations[0]
    assert rec.action == sz.FIX_LEAK and rec.recommended == 10
    assert "fix the code" in rec.reason


def test_slow_queries_holding_most_of_the_time_come_first():
    p = sz.PoolInput("reports", max=6, instances_seen=1, demand=week(6, waited=True), slow_share=0.8)
    rec = sz.size_server(SERVER, [p], NO_SURGE).recommendations[0]
    assert rec.action == sz.SLOW_QUERIES and "80%" in rec.reason
    minor = sz.replace(p, slow_share=0.2)
    assert sz.size_server(SERVER, [minor], NO_SURGE).recommendations[0].action == sz.GROW


def test_not_enough_data_says_how_much_is_needed():
    p = sz.PoolInput("new", max=10, instances_seen=1, demand=week(3, history_s=1200))
    rec = sz.size_server(SERVER, [p], NO_SURGE).recommendations[0]
    assert rec.action == sz.NOT_ENOUGH_DATA
    assert rec.reason == ("Not enough data: 20 min of pool history, at least 1 h needed (40 min more) before p99 "
                          "means anything.")
    assert sz.wanted_size(sz.replace(p, demand=None)).action == sz.NOT_ENOUGH_DATA


def test_a_full_pool_nobody_waits_on_is_left_alone_and_the_minimum_is_a_floor():
    full = sz.PoolInput("s", max=5, instances_seen=1, demand=week(5))
    assert sz.wanted_size(full).action == sz.KEEP
    with_min = sz.PoolInput("s", max=10, min=4, instances_seen=1, demand=week(1))
    rec = sz.wanted_size(with_min)
    # ceil(1 × 1.2) = 2, raised to min 4; 1 < half of 10 → shrink to 4.
    assert (rec.action, rec.wanted) == (sz.SHRINK, 4)
    assert "raised to the pool's minimum 4" in rec.arithmetic[-1]
    timed_out = sz.replace(with_min, demand=week(1, timeouts=2))
    assert sz.wanted_size(timed_out).action == sz.KEEP


def test_littles_law_shows_beside_the_percentiles():
    # 500 acquisitions/s × 20 ms = 10 connections (next-capabilities.md §2.1).
    assert sz.littles_law(500, 0.020) == 10.0
    rec = sz.wanted_size(sz.PoolInput("x", max=20, instances_seen=1, demand=week(10, rate=500, hold=0.02)))
    assert "Little's law: 500.00 acquisitions/s × 20 ms held = 10.0" in rec.arithmetic


def test_the_demo_fleet_by_hand():
    """checkout 8 × 2, search 5 (12 callers), billing 10 leaking, reports 4 + 2 slow, sessions 5, notifications 6."""
    pools = [
        sz.PoolInput("checkout", max=8, instances_seen=2, demand=week(3, p95=2)),
        sz.PoolInput("search", max=5, instances_seen=1, demand=week(12, p95=11, waited=True)),
        sz.PoolInput("billing", max=10, instances_seen=1, demand=week(10, waited=True), leak=True),
        sz.PoolInput("reports", max=6, instances_seen=1, demand=week(5), slow_share=0.7),
        sz.PoolInput("sessions", max=5, instances_seen=1, demand=week(4)),
        sz.PoolInput("notifications", max=6, instances_seen=1, demand=week(5), leak=True),
    ]
    sizing = sz.size_server(SERVER, pools)
    recs = {r.pool.service: r for r in sizing.recommendations}
    # 16 + 5 + 10 + 6 + 5 + 6 = 48, plus the largest surge (billing: 1 × 10) = 58 of 84.
    assert sizing.ledger.committed == 58 and not sizing.ledger.over_warn
    assert (recs["search"].action, recs["search"].recommended, recs["search"].change) == (sz.GROW, 15, 10)
    assert recs["billing"].action == sz.FIX_LEAK
    # checkout: ceil(3 × 1.2) = 4 < 8; 3 < 4 (half) → shrink to 4 per instance.
    assert (recs["checkout"].action, recs["checkout"].recommended) == (sz.SHRINK, 4)
    assert sizing.fit.scale is None  # 8 + 15 + 10 + 6 + 5 + 6 = 50 ≤ 67
    assert sizing.recommended_ledger.committed - sizing.recommended_ledger.surge == 50


def test_what_if_changes_one_pool_and_the_others_room():
    pools = [sz.PoolInput("a", max=10, instances_seen=2, demand=week(8)), sz.PoolInput("b", max=10, instances_seen=1, demand=week(8))]
    before = sz.size_server(SERVER, pools, NO_SURGE)
    after = sz.what_if(SERVER, pools, "a", max_size=20, replicas=3, policy=NO_SURGE)
    assert before.ledger.committed == 30 and after.ledger.committed == 70
    assert after.ledger.over_warn and not after.ledger.overcommitted
    b_before = before.recommendations[1].max_safe_replicas
    b_after = after.recommendations[1].max_safe_replicas
    assert b_after < b_before


def test_a_standby_below_its_primary_is_an_error():
    message = sz.standby_error(200, 100, standby="orders-replica", primary="orders-db")
    assert message.startswith("max_connections on replica orders-replica is 100, below its primary orders-db's 200")
    assert ("raise max_connections on replica orders-replica to at least 200 (its primary orders-db has 200), "
            "or recovery on orders-replica stops with 'insufficient parameter settings'") in message
    assert sz.standby_error(200, 200) is None
    assert sz.standby_error(200, 300) is None


def test_instances_count_the_most_alive_at_once():
    h = 3600
    # Two instances, replaced by a rolling deploy: old and new overlap for a minute → 4 at once.
    rolling = [(0, 10 * h), (0, 10 * h), (10 * h - 60, 24 * h), (10 * h - 60, 24 * h)]
    assert sz.most_at_once(rolling) == 4
    # Pods replaced hours apart never overlap: 1.
    assert sz.most_at_once([(0, h), (2 * h, 3 * h), (4 * h, 5 * h)]) == 1
    assert sz.most_at_once([]) == 0
