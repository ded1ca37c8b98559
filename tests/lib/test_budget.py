from __future__ import annotations

from poolboard.lib.budget import POOLBOARD, UNATTRIBUTED, ServerSettings, SessionCount, compute_budget


def c(app, n, state="idle", service=None):
    """A count with the service it was attributed to when the snapshot was stored."""
    return SessionCount(app, "u", "10.0.0.1", state, "", n), service


def test_usable_subtracts_both_reserves():
    assert ServerSettings(100, 3).usable == 97
    assert ServerSettings(100, 3, None).reserved == 3
    assert ServerSettings(200, 3, 10).usable == 187


def test_it_adds_slices_up_exactly_to_the_total_by_stored_service():
    counts = [
        c("billing", 10, service="billing"),
        c("billing-batch", 5, "active", service="billing"),
        c("search", 7, "idle in transaction", service="search"),
        c("poolboard-monitor", 1, "active"),
        c("psql", 2),
        c("", 3, ""),
    ]
    b = compute_budget(ServerSettings(100, 3), counts)
    assert b.total == 28
    assert sum(s.count for s in b.slices) == b.total
    labels = {s.label: s.count for s in b.slices}
    assert labels == {"billing": 15, "search": 7, POOLBOARD: 1, UNATTRIBUTED: 5}
    assert [s.label for s in b.slices][0] == "billing"  # largest first
    assert b.by_state == {"idle": 12, "idle in transaction": 7, "active": 6, "unknown": 3}
    assert sum(b.by_state.values()) == b.total


def test_the_80_percent_line():
    settings = ServerSettings(100, 0)
    b = compute_budget(settings, [c("a", 79)])
    assert b.warn_line == 80.0 and not b.over_warn
    assert abs(b.warn_pct - 80.0) < 1e-9
    b = compute_budget(settings, [c("a", 80)])
    assert b.over_warn
    assert b.free == 20


def test_over_budget_scales_the_bar_to_the_total():
    b = compute_budget(ServerSettings(10, 3), [c("a", 9)])
    assert b.usable == 7 and b.total == 9
    assert b.utilization > 1
    assert abs(sum(s.pct for s in b.slices) - 100.0) < 1e-9
    assert b.warn_pct < 100


def test_empty_server():
    b = compute_budget(ServerSettings(100, 3), [])
    assert b.total == 0 and b.slices == [] and b.utilization == 0.0


def test_state_breakdown_groups_the_states_people_read_and_adds_up() -> None:
    from poolboard.lib.budget import state_breakdown

    states = state_breakdown(
        {"active": 3, "idle": 5, "idle in transaction": 2, "idle in transaction (aborted)": 1, "": 4, "fastpath function call": 1}
    )
    assert (states.total, states.active, states.idle, states.idle_in_tx, states.other) == (16, 3, 5, 3, 5)
    assert state_breakdown({}).total == 0
