"""The diagnosis engine against the scenario library (tests/lib/scenarios).

Each scenario is a seeded simulation; the engine is run on growing prefixes of it, as
the collector would after each tick.
"""

from __future__ import annotations

from collections import Counter

import pytest

from poolboard.lib.diagnosis import KINDS, LEAK, diagnose

from .scenarios import SPECS, run

LEAK_CASES = [s.name for s in SPECS if s.leak_deadline]
NO_LEAK_CASES = [s.name for s in SPECS if s.no_leak_ever]
EVALUATIONS = 90  # per scenario when walking the whole run: enough ticks to catch a flap


def final_time(r) -> float:
    return r.spec.duration_s if r.spec.data_until_s is not None else r.ticks[-1]


def kinds_at(r, now_s: float) -> set[str]:
    return {f.kind for f in diagnose(r.input_at(now_s))}


def tick_at_or_before(r, t: float) -> float:
    return max(x for x in r.ticks if x <= t)


def stride(r) -> list[float]:
    step = max(1, len(r.ticks) // EVALUATIONS)
    return r.ticks[::step] + [r.ticks[-1]]


@pytest.mark.parametrize("name", [s.name for s in SPECS])
def test_it_finds_each_scenarios_expected_kinds_at_the_end(name):
    r = run(name)
    found = kinds_at(r, final_time(r))
    assert r.spec.expected <= found, f"{name}: missing {sorted(r.spec.expected - found)}"
    assert found <= r.spec.expected | r.spec.allowed, f"{name}: unexpected {sorted(found - r.spec.expected - r.spec.allowed)}"


@pytest.mark.parametrize("name", [s.name for s in SPECS if s.checks or s.absent])
def test_it_finds_what_holds_in_the_middle_of_a_run(name):
    r = run(name)
    for t, expected in r.spec.checks:
        found = kinds_at(r, tick_at_or_before(r, t))
        assert expected <= found, f"{name} at {t:.0f}s: missing {sorted(expected - found)}"
    for t, unexpected in r.spec.absent:
        found = kinds_at(r, tick_at_or_before(r, t))
        assert not unexpected & found, f"{name} at {t:.0f}s: still {sorted(unexpected & found)}"


@pytest.mark.parametrize("name", NO_LEAK_CASES)
def test_it_never_calls_a_busy_slow_churning_or_restarted_pool_a_leak(name):
    r = run(name)
    for now in stride(r):
        found = kinds_at(r, now)
        assert LEAK not in found, f"{name}: leak at {now:.0f}s"


@pytest.mark.parametrize("name", LEAK_CASES)
def test_it_flags_a_leak_within_two_intervals_of_the_threshold(name):
    r = run(name)
    spec = r.spec
    first_leak = r.leak_times[0]
    # The data the rules can see arrives every collection interval, server snapshot or
    # agent report, whichever is slowest for this case.
    slowest = max(spec.interval_s, spec.snapshot_s or 0.0, spec.agent_interval_s if spec.agent else 0.0)
    deadline = first_leak + spec.thresholds.leak_s + 2 * slowest
    before = [t for t in r.ticks if t < first_leak]
    assert LEAK not in kinds_at(r, before[-1]), f"{name}: a leak before any leaked"
    assert LEAK in kinds_at(r, tick_at_or_before(r, deadline)), f"{name}: no leak by {deadline - first_leak:.0f}s after"


@pytest.mark.parametrize("name", LEAK_CASES)
def test_it_keeps_a_leaks_start_while_it_stays_open(name):
    r = run(name)
    spec = r.spec
    slowest = max(spec.interval_s, spec.snapshot_s or 0.0, spec.agent_interval_s if spec.agent else 0.0)
    start = r.leak_times[0] + spec.thresholds.leak_s + 2 * slowest
    sinces = []
    for now in [t for t in stride(r) if t >= start]:
        leak = [f for f in diagnose(r.input_at(now)) if f.kind == LEAK]
        assert leak, f"{name}: the leak closed at {now:.0f}s"
        sinces.append(leak[0].since)
    # It may move earlier once, when a slower signal joins with an earlier start; never later.
    assert all(b <= a for a, b in zip(sinces, sinces[1:])), f"{name}: since moved later: {sorted(set(sinces))}"
    assert len(set(sinces)) <= 2, f"{name}: since moved {len(set(sinces)) - 1} times"


def test_it_prints_a_confusion_matrix(capsys):
    """Rows: expected kinds; columns: kinds found at the end of each scenario.

    A kind both expected and found counts on the diagonal; a missed one is paired with an
    unexpected one found in the same scenario (a confusion), else with "-".
    """
    matrix: Counter = Counter()
    rows = []
    for spec in SPECS:
        r = run(spec.name)
        found = kinds_at(r, final_time(r))
        rows.append((spec.name, sorted(spec.expected), sorted(found)))
        for kind in spec.expected & found:
            matrix[kind, kind] += 1
        missed = sorted(spec.expected - found)
        extra = sorted(found - spec.expected)
        for i in range(max(len(missed), len(extra))):
            matrix[missed[i] if i < len(missed) else "-", extra[i] if i < len(extra) else "-"] += 1
    labels = list(KINDS) + ["-"]
    width = max(len(k) for k in labels) + 1
    lines = ["", "diagnosis confusion matrix over the scenario library (rows: expected, columns: found)",
             " " * width + "".join(f"{c[:10]:>11}" for c in labels)]
    for e in labels:
        lines.append(f"{e:<{width}}" + "".join(f"{matrix[e, f]:>11}" for f in labels))
    lines.append("")
    lines += [f"  {name:<28} expected {exp} found {got}" for name, exp, got in rows]
    with capsys.disabled():
        print("\n".join(lines))
    confusions = {(e, f): n for (e, f), n in matrix.items() if e != f}
    allowed = {("-", k) for s in SPECS for k in s.allowed}
    assert set(confusions) <= allowed, confusions
