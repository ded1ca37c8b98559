"""lib.session_ages: counts over fixed edges, read for any threshold without over-counting."""

from __future__ import annotations

from poolboard.lib.session_ages import AGE_EDGES_S, idle_over, idle_over_index, young_under, young_under_index


def counts_over(ages: list[float]) -> list[int]:
    return [sum(1 for a in ages if a > e) for e in AGE_EDGES_S]


def counts_under(ages: list[float]) -> list[int]:
    return [sum(1 for a in ages if a < e) for e in AGE_EDGES_S]


IDLE = [0.4, 1.5, 59.0, 61.0, 119.0, 400.0, 7200.0]


def test_it_answers_thresholds_on_an_edge_exactly():
    over, under = counts_over(IDLE), counts_under(IDLE)
    for edge in AGE_EDGES_S:
        assert idle_over(over, edge) == sum(1 for a in IDLE if a > edge)
        assert young_under(under, edge) == sum(1 for a in IDLE if a < edge)


def test_it_under_counts_between_edges_never_over():
    over, under = counts_over(IDLE), counts_under(IDLE)
    for threshold in (0.5, 1.2, 50.0, 75.0, 100.0, 250.0, 4000.0):
        assert idle_over(over, threshold) <= sum(1 for a in IDLE if a > threshold)
        assert young_under(under, threshold) <= sum(1 for a in IDLE if a < threshold)
    assert idle_over(over, 75.0) == 3  # read at 90 s: 119, 400, 7200
    assert young_under(under, 75.0) == 3  # read at 60 s: 0.4, 1.5, 59
    assert young_under(under, 0.5) == 0  # below the first edge: none counted


def test_it_reads_empty_counts_as_zero():
    assert idle_over([], 60) == 0 and young_under([], 60) == 0
    assert idle_over_index(AGE_EDGES_S[-1] + 1) is None and young_under_index(0.1) is None
