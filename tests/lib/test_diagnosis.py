"""The diagnosis engine on small hand-made inputs: the edges the scenario library does not pin."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from poolboard.lib.diagnosis import (
    CHURN,
    HEALTHY,
    LEAK,
    NOT_ENOUGH_DATA,
    SATURATION,
    STUCK,
    AgentHeld,
    DiagnosisInput,
    EpisodeView,
    PoolPoint,
    ServerPoint,
    Thresholds,
    diagnose,
    diagnose_many,
)

from .scenarios import SPECS, run

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def series(n: int, interval: float = 15.0, **values) -> list[PoolPoint]:
    """n points ending at NOW, every field constant (a callable gets the index)."""
    out = []
    for i in range(n):
        row = {k: (v(i) if callable(v) else v) for k, v in values.items()}
        out.append(PoolPoint(ts=NOW - timedelta(seconds=interval * (n - 1 - i)), **row))
    return out


def snapshots(n: int, interval: float = 15.0, **values) -> list[ServerPoint]:
    base = dict(active=0, idle=0, idle_in_transaction=0, idle_over_threshold=0, young_sessions=0)
    base.update(values)
    return [ServerPoint(ts=NOW - timedelta(seconds=interval * (n - 1 - i)) + timedelta(seconds=2), **base)
            for i in range(n)]


def inp(points, server=(), agent=(), interval=15.0, episodes=(), **kw) -> DiagnosisInput:
    return DiagnosisInput(service="billing", now=NOW + timedelta(seconds=3), interval_s=interval, total=list(points),
                          instances={"app:8000": list(points)}, server=list(server), agent=list(agent),
                          episodes=list(episodes), **kw)


def kinds(findings) -> list[str]:
    return [f.kind for f in findings]


def test_it_says_which_fields_an_opentelemetry_pool_lacks():
    points = series(40, max=10, in_use=3, idle=7, acquire_s=0.001, hold_s=0.05, conns_opened=0, acquisitions=300)
    [finding] = diagnose(inp(points))
    assert finding.kind == HEALTHY
    assert {"pending", "timeouts", "conns_closed"} <= set(finding.detail["missing"])


def test_it_treats_go_max_zero_as_unlimited():
    points = series(40, max=0, in_use=12, idle=1)
    [finding] = diagnose(inp(points))
    assert finding.kind == HEALTHY
    assert "saturation" in finding.detail["unchecked"] and "stuck" in finding.detail["unchecked"]
    assert "max" in finding.detail["missing"]


def test_it_needs_more_than_a_minute_of_data():
    findings = diagnose(inp(series(2, max=10, in_use=3, idle=7)))
    assert kinds(findings) == [NOT_ENOUGH_DATA]
    assert findings[0].detail["reason"] == "short"


def test_it_calls_data_that_stopped_stale():
    points = series(40, max=10, in_use=3, idle=7)
    later = DiagnosisInput(service="billing", now=NOW + timedelta(minutes=5), interval_s=15.0, total=points,
                           instances={"app:8000": points})
    [finding] = diagnose(later)
    assert finding.kind == NOT_ENOUGH_DATA and finding.detail["reason"] == "stale"
    assert finding.since == points[-1].ts


def test_it_says_no_data_when_there_is_none():
    [finding] = diagnose(inp([]))
    assert finding.kind == NOT_ENOUGH_DATA and finding.detail["reason"] == "no_data"


def test_it_calls_a_full_pool_without_checkouts_stuck_without_a_waiting_gauge():
    points = series(30, max=8, in_use=8, idle=0, acquisitions=0)
    findings = diagnose(inp(points))
    assert kinds(findings)[0] == STUCK
    assert findings[0].severity == "crit"


def test_it_does_not_call_a_full_pool_stuck_when_nothing_tells_progress():
    # Go without server snapshots: no checkout count, no waiting gauge, no sessions.
    points = series(30, max=8, in_use=8, idle=0)
    assert STUCK not in kinds(diagnose(inp(points)))


def test_it_calls_a_full_pool_with_working_sessions_busy_not_stuck():
    points = series(30, max=8, in_use=8, idle=0, pending=3, acquisitions=600, hold_s=0.2)
    server = snapshots(30, active=8)
    found = kinds(diagnose(inp(points, server)))
    assert STUCK not in found and SATURATION in found and LEAK not in found


def test_it_does_not_call_sessions_the_pools_do_not_know_a_hoard():
    # Two sessions idle for long belong to an engine that exports no pool metrics.
    points = series(40, max=10, in_use=2, idle=3)
    server = snapshots(40, active=2, idle=5, idle_over_threshold=2)
    assert LEAK not in kinds(diagnose(inp(points, server)))


def test_it_calls_sessions_idle_past_the_threshold_that_the_pool_counts_in_use_a_leak():
    points = series(40, max=10, in_use=4, idle=1)
    server = snapshots(40, active=1, idle=4, idle_over_threshold=3)
    [leak] = [f for f in diagnose(inp(points, server)) if f.kind == LEAK]
    assert leak.suspected_leaked == 2  # 3 idle past the threshold, of which at most 1 is the pool's own idle
    assert "idle for more than 60 s" in leak.evidence[0].text


def test_it_names_the_agents_function_and_ignores_stale_reports():
    points = series(40, max=10, in_use=3, idle=7)
    fresh = AgentHeld("fp1", 'File "billing/invoices.py", line 42, in fetch_invoice', "billing.invoices.fetch_invoice",
                      2, 95.0, "app:8000", NOW)
    stale = AgentHeld("fp2", "...", "old.function", 1, 400.0, "app:8000", NOW - timedelta(minutes=10))
    [leak] = [f for f in diagnose(inp(points, agent=[fresh, stale])) if f.kind == LEAK]
    assert "billing.invoices.fetch_invoice" in leak.fix
    assert [s["function"] for s in leak.detail["stacks"]] == ["billing.invoices.fetch_invoice"]
    assert leak.since == NOW - timedelta(seconds=95 - 60)
    assert leak.suspected_leaked == 2


def test_it_ignores_agent_reports_under_the_threshold():
    points = series(40, max=10, in_use=3, idle=7)
    young = AgentHeld("fp1", "...", "app.fn", 1, 20.0, "app:8000", NOW)
    assert LEAK not in kinds(diagnose(inp(points, agent=[young])))


def test_it_takes_per_service_thresholds():
    points = series(40, max=10, in_use=3, idle=7)
    held = AgentHeld("fp1", "...", "app.fn", 1, 90.0, "app:8000", NOW)
    patient = Thresholds().with_overrides({"leak_s": 300})
    assert LEAK in kinds(diagnose(inp(points, agent=[held])))
    assert LEAK not in kinds(diagnose(inp(points, agent=[held], thresholds=patient)))
    with pytest.raises(ValueError, match="unknown diagnosis thresholds"):
        Thresholds().with_overrides({"leak_seconds": 1})


def test_it_counts_young_sessions_as_churn_only_when_it_lasts():
    points = series(40, max=10, in_use=1, idle=4)
    churning = snapshots(40, active=1, idle=4, young_sessions=5)
    restarted = snapshots(40, active=1, idle=4, young_sessions=0)[:-4] + snapshots(4, active=1, idle=4, young_sessions=5)
    assert CHURN in kinds(diagnose(inp(points, churning)))
    assert CHURN not in kinds(diagnose(inp(points, restarted)))


def test_it_leads_with_the_leak_inside_a_saturated_pool():
    r = run("leak_in_saturated_pool")
    findings = diagnose(r.input_at(r.ticks[-1]))
    assert kinds(findings)[:2] == [LEAK, SATURATION]
    assert findings[1].fix.startswith("Fix the leak first")


@pytest.mark.parametrize("name", [s.name for s in SPECS])
def test_it_gives_numbers_a_time_range_and_json_details(name):
    r = run(name)
    now = r.spec.duration_s if r.spec.data_until_s is not None else r.ticks[-1]
    data = r.input_at(now)
    for finding in diagnose(data):
        assert 0 <= finding.confidence <= 1 and finding.severity in ("crit", "warn", "info", "ok")
        assert finding.since <= data.now and finding.fix.endswith(".")
        json.dumps(finding.detail)
        for e in finding.evidence:
            assert e.start <= e.end <= data.now, (finding.kind, e)
            assert e.text.startswith("not checked") or any(ch.isdigit() for ch in e.text), e.text


def test_it_diagnoses_many_services_by_name():
    points = series(40, max=10, in_use=3, idle=7)
    out = diagnose_many([inp(points), DiagnosisInput("search", NOW, 15.0, points, {"a": points})])
    assert set(out) == {"billing", "search"}


def test_it_closes_a_leak_with_the_restart_that_freed_it_and_dates_the_next_one_after():
    r = run("leak_then_restart")
    restart = next(start for _, start, _ in r.spec.instances if start > 0)
    [leak] = [f for f in diagnose(r.input_at(r.ticks[-1])) if f.kind == LEAK]
    assert leak.since.timestamp() > (r.input_at(restart).now.timestamp())


def test_it_does_not_call_a_query_running_past_the_threshold_a_leak_from_the_agent():
    points = series(40, max=10, in_use=3, idle=7)
    server = snapshots(40, active=3, idle=7)
    held = AgentHeld("fp1", "...", "reports.build", 1, 90.0, "app:8000", NOW)
    running = EpisodeView("long_query", "SELECT * FROM report_rows(?)", NOW - timedelta(seconds=60), NOW, 90.0, True)
    assert LEAK not in kinds(diagnose(inp(points, server, agent=[held], episodes=[running])))
    short = replace(running, peak_age_s=35.0)
    assert LEAK in kinds(diagnose(inp(points, server, agent=[held], episodes=[short])))


def test_it_does_not_call_a_pool_full_of_idle_sessions_saturated() -> None:
    """All 10 in use with waiters, but the server sees all 10 sessions idle: held, not busy."""
    from datetime import datetime, timedelta, timezone

    from poolboard.lib.diagnosis import DiagnosisInput, PoolPoint, ServerPoint, diagnose

    now = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    points = [PoolPoint(ts=now - timedelta(seconds=15 * (40 - i)), max=10, in_use=10, idle=0, pending=3, timeouts=5,
                        acquisitions=30, hold_s=0.002) for i in range(41)]
    server = [ServerPoint(ts=now - timedelta(seconds=30 * (20 - i)), active=0, idle=10, idle_in_transaction=0,
                          idle_over_threshold=10, young_sessions=0) for i in range(21)]
    kinds = {f.kind for f in diagnose(DiagnosisInput("billing", now, 15.0, points, server=server, rate_window_s=60.0))}
    assert "saturation" not in kinds and "leak" in kinds


def test_a_pool_above_its_reported_max_is_not_called_full_without_data() -> None:
    # SQLAlchemy's preset reports pool_size as max, with max_overflow more above it: a pool
    # seen above "max" has room, and is not called full for want of a waiting gauge.
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    points = [PoolPoint(t0 + timedelta(seconds=15 * i), max=5, in_use=7 if i == 3 else 5, idle=0) for i in range(20)]
    kinds = {f.kind for f in diagnose(DiagnosisInput("app", points[-1].ts, 15, points))}
    assert kinds == {HEALTHY}
    pinned = [PoolPoint(p.ts, max=5, in_use=5, idle=0) for p in points]
    (finding,) = diagnose(DiagnosisInput("app", points[-1].ts, 15, pinned))
    assert (finding.kind, finding.severity, finding.detail["reason"]) == (NOT_ENOUGH_DATA, "warn", "fields")
    assert "busy cannot be told from stuck" in finding.evidence[0].text
