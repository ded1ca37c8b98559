"""The rule state machine against Prometheus's own sequences (rules/alerting_test.go)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from poolboard.lib.alerting import (
    FIRING,
    INACTIVE,
    PENDING,
    InstanceState,
    backtest,
    compare,
    evaluate,
    fingerprint,
    render_template,
    step,
    template_errors,
)

T0 = datetime(2027, 1, 15, 8, 0, tzinfo=timezone.utc)
MINUTE = 60.0


def run(values, *, for_s, keep_firing_for_s=0.0, threshold=50.0, comparator=">", interval_s=MINUTE, no_data="resolve"):
    """Evaluate a series once per interval; the state after each evaluation, and the notifications."""
    cur, states, sent = InstanceState(), [], []
    for i, value in enumerate(values):
        at = T0 + timedelta(seconds=i * interval_s)
        out = evaluate(cur, value, at, comparator=comparator, threshold=threshold, for_s=for_s,
                       keep_firing_for_s=keep_firing_for_s, no_data=no_data)
        if out.notifies:
            sent.append((i, out.transition[1] if out.transition[1] == FIRING else "resolved"))
        cur = out.state
        states.append(cur.state)
    return states, sent


P, F, N = PENDING, FIRING, INACTIVE


@pytest.mark.parametrize(
    ("values", "for_s", "keep_s", "expected"),
    [
        # TestKeepFiringFor: series 75 85 70 70 10x5, for 1m, keep_firing_for 1m.
        ([75, 85, 70, 70, 10, 10, 10, 10, 10], MINUTE, MINUTE, [P, F, F, F, F, N, N, N, N]),
        # TestPendingAndKeepFiringFor: 75 10x10, for 1m, keep 1m: a pending alert gets no grace.
        ([75, 10, 10, 10], MINUTE, MINUTE, [P, N, N, N]),
        # No `for`: fires on the first evaluation; resolves on the first that no longer holds.
        ([75, 75, 10, 75], 0.0, 0.0, [F, F, N, F]),
        # for = 2m fires at the evaluation where 2m have passed (>=), not after.
        ([75, 75, 75, 75], 2 * MINUTE, 0.0, [P, P, F, F]),
        # One dip while pending restarts the countdown.
        ([75, 75, 10, 75, 75, 75], 2 * MINUTE, 0.0, [P, P, N, P, P, F]),
        # keep_firing_for 3m bridges two dips; the condition coming back resets the grace.
        ([75, 10, 10, 75, 10, 10, 10, 10], 0.0, 3 * MINUTE, [F, F, F, F, F, F, F, N]),
        # Values exactly at the threshold do not satisfy `>`.
        ([50, 50, 50], 0.0, 0.0, [N, N, N]),
    ],
)
def test_it_follows_prometheus_for_and_keep_firing_for(values, for_s, keep_s, expected) -> None:
    states, _ = run(values, for_s=for_s, keep_firing_for_s=keep_s)
    assert states == expected


def test_it_sends_nothing_for_pending_that_goes_away() -> None:
    states, sent = run([75, 75, 10, 75, 10], for_s=5 * MINUTE)
    assert P in states
    assert sent == []


@pytest.mark.parametrize("interval_s", [15.0, 30.0, 60.0])
def test_it_never_fires_when_flapping_every_evaluation_with_for_5m(interval_s) -> None:
    values = [95 if i % 2 == 0 else 10 for i in range(200)]
    states, sent = run(values, for_s=5 * MINUTE, interval_s=interval_s)
    assert FIRING not in states
    assert sent == []


def test_it_sends_one_firing_and_one_resolved_per_flapping_episode_with_keep_firing_for() -> None:
    values = [95 if i % 2 == 0 else 10 for i in range(40)] + [10] * 20
    states, sent = run(values, for_s=0.0, keep_firing_for_s=5 * MINUTE, interval_s=30.0)
    assert sent == [(0, FIRING), (49, "resolved")]


def test_it_counts_for_from_the_persisted_active_since_across_a_restart() -> None:
    # A worker restart between evaluations: the state comes back from the database.
    first = step(InstanceState(), True, 95.0, T0, for_s=300)
    restored = InstanceState(**vars(first.state))
    later = step(restored, True, 95.0, T0 + timedelta(minutes=5), for_s=300,
                 last_evaluated_at=T0 + timedelta(minutes=4))
    assert later.transition == (PENDING, FIRING)
    assert later.state.active_since == T0


def test_it_restarts_a_pending_countdown_after_an_outage_longer_than_the_tolerance() -> None:
    pending = step(InstanceState(), True, 95.0, T0, for_s=300).state
    after = step(pending, True, 95.0, T0 + timedelta(hours=2), for_s=300, last_evaluated_at=T0)
    assert after.state.state == PENDING
    assert after.state.active_since == T0 + timedelta(hours=2)


def test_a_raised_for_sends_a_firing_alert_back_to_pending() -> None:
    firing = step(InstanceState(), True, 95.0, T0, for_s=0).state
    out = step(firing, True, 95.0, T0 + timedelta(minutes=1), for_s=600)
    assert out.transition == (FIRING, PENDING)
    assert out.notifies


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("resolve", [F, N]), ("keep", [F, F]), ("alert", [F, F])],
)
def test_it_applies_the_no_data_policy_when_there_is_no_value(policy, expected) -> None:
    states, _ = run([75, None], for_s=0.0, no_data=policy)
    assert states == expected


def test_alert_on_no_data_fires_from_nothing() -> None:
    states, _ = run([None, None], for_s=MINUTE, no_data="alert")
    assert states == [P, F]


@pytest.mark.parametrize(
    ("value", "comparator", "threshold", "expected"),
    [
        (float("nan"), ">", 0, False), (float("nan"), "<", 0, False), (float("nan"), "!=", 0, False),
        (float("inf"), ">", 1e9, True), (None, ">", 0, False), (0.0, "==", 0, True), (1.0, "<=", 1, True),
    ],
)
def test_nan_never_satisfies_and_inf_does(value, comparator, threshold, expected) -> None:
    assert compare(value, comparator, threshold) is expected


def test_the_fingerprint_is_stable_and_order_free() -> None:
    a = fingerprint({"alertname": "x", "service": "billing"})
    assert a == fingerprint({"service": "billing", "alertname": "x"})
    assert a != fingerprint({"alertname": "x", "service": "billing2"})


def test_the_fingerprint_golden_value() -> None:
    # Receivers deduplicate on it: the same labels must give the same value in every version.
    assert fingerprint({"alertname": "PoolSaturated", "service": "billing"}) == "62c2927ca5c99589"


def test_templates_substitute_known_variables_only() -> None:
    text = render_template("{{ service }} at {{value}} (> {{ threshold }})", {"service": "<b>", "value": 93.25, "threshold": 90.0})
    assert text == "<b> at 93.25 (> 90)"
    assert render_template("{{ value }}", {"value": None}) == "no data"
    assert render_template("{{ value }}", {"value": math.inf}) == "+Inf"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{{ services }}", "Unknown variable {{ services }}"),
        ("{{ value|safe }}", "Unknown variable {{ value|safe }}"),
        ("{{ ''.__class__ }}", "Unknown variable"),
        ("{{ service", "Unbalanced"),
    ],
)
def test_templates_refuse_unknown_variables(text, fragment) -> None:
    errors = template_errors(text)
    assert errors and fragment in errors[0]


def test_good_templates_have_no_errors() -> None:
    assert template_errors("{{ service }}: {{ value }} > {{ threshold }} on {{ database }}") == []


def test_backtest_counts_episodes_notifications_and_firing_time() -> None:
    points = [(T0 + timedelta(minutes=i), v) for i, v in enumerate([0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 1, 1, 0])]
    result = backtest(points, comparator=">", threshold=0, for_s=2 * MINUTE)
    assert [(e.pending_at.minute, e.firing_at and e.firing_at.minute, e.resolved_at.minute) for e in result.episodes] == [
        (1, 3, 4), (6, None, 7), (8, 10, 12)
    ]
    assert result.notifications == 4
    assert result.firing_s == 3 * MINUTE
    assert result.evaluations == 13


def test_backtest_evaluates_between_points_with_a_lookback() -> None:
    # Points every 5 minutes, evaluations every minute: each sees the newest point < 5 m old.
    points = [(T0 + timedelta(minutes=5 * i), v) for i, v in enumerate([0, 3, 3, 0])]
    result = backtest(points, comparator=">", threshold=0, for_s=2 * MINUTE, step_s=MINUTE)
    assert result.evaluations == 16
    (episode,) = result.episodes
    assert episode.pending_at == T0 + timedelta(minutes=5)
    assert episode.firing_at == T0 + timedelta(minutes=7)
    assert episode.resolved_at == T0 + timedelta(minutes=15)


def test_backtest_with_for_zero_counts_each_firing_as_an_episode() -> None:
    # for 0: inactive -> firing in one evaluation, with no pending in between.
    points = [(T0 + timedelta(minutes=i), v) for i, v in enumerate([0, 1, 1, 0, 1, 0])]
    result = backtest(points, comparator=">", threshold=0, for_s=0)
    assert [(e.pending_at.minute, e.firing_at.minute, e.resolved_at.minute) for e in result.episodes] == [(1, 1, 3), (4, 4, 5)]
    assert len(result.fired) == 2
    assert result.notifications == 4
    assert result.firing_s == 3 * MINUTE


@pytest.mark.parametrize(("comparator", "values", "worst"), [
    (">", [0, 5, 9, 7, 0], 9),
    ("<", [4, 2, 0, 1, 4], 0),  # "available < 3": the worst is the fewest free connections
    ("<=", [4, 2, 0, 1, 4], 0),
])
def test_backtest_peak_is_the_most_breaching_value(comparator, values, worst) -> None:
    points = [(T0 + timedelta(minutes=i), float(v)) for i, v in enumerate(values)]
    result = backtest(points, comparator=comparator, threshold=3, for_s=0)
    (episode,) = result.episodes
    assert episode.peak == worst


# --- utilization and available: the worst pool, with the configured overflow ----------------

FRESH = 30.0


def pools_of(*readings):
    """(values, sampled_at, (instance, pool)) per (in_use, max), sampled at T0."""
    return [({"in_use": float(u), "max": float(m)}, T0, (f"10.0.0.{i}:8080", "main"))
            for i, (u, m) in enumerate(readings)]


def test_one_exhausted_instance_among_idle_ones_is_the_services_utilization() -> None:
    from poolboard.lib.alerting import pool_signal

    # One instance at 10 of 10 while nine others are idle: its callers are failing. Summed over
    # the service it read 10 % (and 90 free connections): PoolSaturated (> 90 %) never fired.
    pools = [(values, sampled) for values, sampled, _ in pools_of((10, 10), *[(0, 10)] * 9)]
    assert pool_signal("utilization", pools, T0, FRESH) == 100.0
    assert pool_signal("available", pools, T0, FRESH) == 0.0


def test_the_worst_pool_says_which_instance_and_pool_it_is() -> None:
    from poolboard.lib.alerting import worst_pool

    pools = pools_of((2, 10), (9, 10), (9, 10), (4, 20))
    assert worst_pool("utilization", pools, T0, FRESH) == (90.0, ("10.0.0.1:8080", "main"))  # first of equals
    assert worst_pool("available", pools, T0, FRESH) == (1.0, ("10.0.0.1:8080", "main"))
    # A pool with a larger max has more free connections although it is fuller.
    pools = pools_of((5, 10), (17, 20))
    assert worst_pool("utilization", pools, T0, FRESH) == (85.0, ("10.0.0.1:8080", "main"))
    assert worst_pool("available", pools, T0, FRESH) == (3.0, ("10.0.0.1:8080", "main"))
    # Stale pools, max 0 (unlimited) and absent fields do not count; none left: no data.
    stale = [({"in_use": 10.0, "max": 10.0}, T0 - timedelta(seconds=FRESH + 1), ("old:1", "main"))]
    unlimited = [({"in_use": 10.0, "max": 0.0}, T0, ("go:1", "main")), ({"in_use": None, "max": 10.0}, T0, ("x:1", "main"))]
    assert worst_pool("utilization", stale + unlimited + pools_of((1, 10)), T0, FRESH) == (10.0, ("10.0.0.0:8080", "main"))
    assert worst_pool("utilization", stale + unlimited, T0, FRESH) == (None, None)
    # Summed signals name no pool.
    assert worst_pool("waiting", [({"pending": 2.0}, T0), ({"pending": 1.0}, T0)], T0, FRESH) == (3.0, None)


def test_sqlalchemy_overflow_counts_in_the_capacity() -> None:
    from poolboard.lib.alerting import pool_signal

    # SQLAlchemy reports pool_size (10) as max; with max_overflow 5 it may hold 15. 12 in use is
    # 80 % of what it may open (not 120 %), with 3 more free; 15 in use is full.
    pools = pools_of((12, 10))
    assert pool_signal("utilization", pools, T0, FRESH, overflow=5) == 80.0
    assert pool_signal("available", pools, T0, FRESH, overflow=5) == 3.0
    assert pool_signal("utilization", pools_of((15, 10)), T0, FRESH, overflow=5) == 100.0
    assert pool_signal("available", pools_of((15, 10)), T0, FRESH, overflow=5) == 0.0
    # Without a configured overflow the max is the capacity; max 0 stays unlimited with one.
    assert pool_signal("utilization", [(v, at) for v, at, _ in pools], T0, FRESH) == 120.0
    assert pool_signal("utilization", [({"in_use": 3.0, "max": 0.0}, T0)], T0, FRESH, overflow=5) is None


def test_instance_and_pool_are_template_variables() -> None:
    assert template_errors("{{ service }} full on {{ instance }} ({{ pool }})") == []
    assert render_template("{{ instance }}/{{ pool }}", {"instance": "10.0.0.3:8080", "pool": "main"}) == "10.0.0.3:8080/main"


def test_the_exported_expression_takes_the_worst_pool_with_the_overflow() -> None:
    from poolboard.lib.alerting import prometheus_expr, prometheus_pool_lookups
    from poolboard.lib.presets import SQLALCHEMY

    sqlalchemy = SQLALCHEMY
    expr = prometheus_expr("utilization", sqlalchemy, window="5m", overflow=5)
    assert expr.startswith("max by (service) (100 * ") and "> 0) + 5)" in expr
    assert prometheus_expr("available", sqlalchemy, window="5m").startswith("min by (service) ((")
    lookups = prometheus_pool_lookups("utilization", sqlalchemy, window="5m", overflow=5)
    assert lookups["instance"].startswith("{{ range query `topk by (service) (1, 100 * ")
    assert '(index .Labels "exported_instance")' in lookups["instance"] and '"pool_name"' in lookups["pool"]
    assert prometheus_pool_lookups("waiting", sqlalchemy, window="5m") == {}
