"""Odd inputs to the sizing maths (poolboard.lib.sizing): each gives an answer that is consistent and says why."""

from poolboard.lib import sizing as sz

NO_SURGE = sz.Policy(deploy_surge=0)
# usable = 100 − 3 − 3 − 10 = 84; 80 % line 67.
SERVER = sz.Server("main", max_connections=100, superuser_reserved_connections=3)


def week(p99, *, waited=False, timeouts=0.0):
    return sz.Demand(window_s=7 * 86400.0, history_s=7 * 86400.0, p95=p99, p99=p99, peak=p99, waited=waited,
                     timeouts=timeouts)


def test_a_pool_the_budget_cuts_below_its_size_is_told_to_shrink_not_that_it_is_fine():
    # Two pools of 60 that each need their 60 (p99 50 × 1.2): 120 > 67, each is fitted to ~33.
    pools = [sz.PoolInput("a", max=60, instances_seen=1, demand=week(50)),
             sz.PoolInput("b", max=60, instances_seen=1, demand=week(50, waited=True))]
    recs = sz.size_server(SERVER, pools, NO_SURGE).recommendations
    for rec in recs:
        assert rec.recommended < rec.current
        # Was "fine as is" (KEEP) beside a recommended size 27 below today's.
        assert rec.action == sz.SHRINK, rec.label
        assert f"{rec.current - rec.recommended} below today's {rec.current}" in rec.reason
        assert "budget" in rec.reason


def test_a_pool_that_wanted_to_grow_but_must_shrink_to_fit_says_both():
    # 40 instances of 10 on a server of 100: callers waited, but even 1 each is most of the 67.
    p = sz.PoolInput("api", max=10, instances_seen=40, demand=week(9, waited=True))
    rec = sz.size_server(SERVER, [p], NO_SURGE).recommendations[0]
    assert (rec.wanted, rec.recommended) == (11, 1)
    assert rec.action == sz.SHRINK
    assert "Callers waited" in rec.reason and "no room to grow it" in rec.reason
    assert "9 below today's 10" in rec.reason


def test_grow_and_keep_reasons_state_the_arithmetic_truly():
    # p99 9 is not above a max of 10; p99 9 × 1.2 = 11 is.
    grow = sz.wanted_size(sz.PoolInput("api", max=10, instances_seen=1, demand=week(9, waited=True)))
    assert grow.action == sz.GROW
    assert "p99 demand 9 is above" not in grow.reason
    assert "p99 demand 9 + 20 % headroom = 11 is above its 10" in grow.reason
    keep = sz.wanted_size(sz.PoolInput("api", max=10, instances_seen=1, demand=week(9)))
    assert keep.action == sz.KEEP
    # In use did not "reach 10": its p99 was 9.
    assert "reaches 10" not in keep.reason
    assert "p99 demand 9 + 20 % headroom = 11 is above its 10, but nobody waited" in keep.reason


def test_a_full_pool_whose_exporter_counts_no_waiters_is_not_called_waited_on_by_nobody():
    # SQLAlchemy's and asyncpg's exporters give no waiting count: in use at max says nothing about waiters.
    demand = sz.replace(week(10), waiting_known=False, saturated_s=9000.0)
    rec = sz.wanted_size(sz.PoolInput("api", max=10, instances_seen=1, demand=demand))
    assert rec.action == sz.KEEP
    assert "nobody waited" not in rec.reason
    assert "gives no count of waiting callers, so whether any waited cannot be told" in rec.reason
    assert "at its max for 2.5 h of the window" in rec.reason and "grow it to 12" in rec.reason


def test_a_server_too_small_for_its_reserved_slots_shows_the_true_subtraction():
    # max_connections 5: 5 − 3 − 3 − 1 = −2, so nothing is left for the pools (usable 0, not a wrong "= 0").
    ledger = sz.build_ledger(sz.Server("tiny", max_connections=5), [sz.PoolInput("a", max=2, instances_seen=1)])
    assert ledger.usable == 0
    assert ledger.usable_formula() == ("usable = 5 max_connections − 3 superuser_reserved_connections − 3 for "
                                       "poolboard's monitor − 1 kept for admin/migrations = −2: nothing is left for "
                                       "the pools, 0 usable")
    assert ledger.overcommitted


def test_a_service_configured_to_zero_replicas_counts_zero_not_what_was_seen():
    # Scaled to zero (a paused worker): the configured 0 is a count, not "unset".
    off = sz.PoolInput("worker", max=10, instances_seen=3, replicas=0)
    assert off.instances() == (0, "configured")
    assert sz.build_ledger(SERVER, [off], NO_SURGE).committed == 0
    assert sz.PoolInput("worker", max=10, instances_seen=3).instances() == (3, "seen in 24 h")


def test_a_pool_whose_max_no_exporter_gives_is_not_told_that_setting_it_makes_the_budget_add_up():
    # asyncpg's pool has a max; its exporter does not give it. Setting the max in the code changes nothing here.
    rec = sz.wanted_size(sz.PoolInput("asyncpg-svc", max=None, instances_seen=1, demand=week(4)))
    assert rec.action == sz.NO_LIMIT_KNOWN and rec.recommended == 5
    assert "so the budget can be added up" not in rec.reason
    assert rec.reason == ("No exporter gives this pool's max, so the ledger cannot count it: demand asks for 5 per "
                          "process (p99 4 + 20 % headroom); export the pool's max to have it counted.")
    unlimited = sz.wanted_size(sz.PoolInput("gosvc", max=0, instances_seen=1, demand=week(4)))
    assert unlimited.reason == "max 0 is unlimited: set it to 5 per process so the budget can be added up."
