"""Session ages as each snapshot keeps them: counts over fixed edges, not every age.

The diagnosis asks two questions of a snapshot's sessions, per service and with the
service's own thresholds: how many idle sessions have been idle longer than its leak
threshold, and how many sessions were opened less than its churn lifetime ago. Shipping
every age from the monitored server and storing it cost more than the rest of a snapshot
(bench_snapshot), so the server counts them in SQL against these edges instead:

- idle_over[i]: idle sessions idle for more than AGE_EDGES_S[i] seconds;
- young_under[i]: sessions opened less than AGE_EDGES_S[i] seconds ago.

A threshold on an edge is answered exactly; one between two edges is answered with the
neighbouring edge that under-counts (the next edge up for "idle over", the next edge down
for "younger than"), so a finding never rests on sessions that may not be there. The
edges are stored data's meaning: changing them needs a migration of the stored counts.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

AGE_EDGES_S = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800, 3600, 86400)


def idle_over_index(threshold_s: float) -> int | None:
    """0-based index into idle_over for "idle for more than threshold_s": the smallest edge
    at or above it; None above the last edge (count the last edge's, an over-count)."""
    i = bisect_left(AGE_EDGES_S, threshold_s)
    return i if i < len(AGE_EDGES_S) else None


def young_under_index(threshold_s: float) -> int | None:
    """0-based index into young_under for "opened less than threshold_s ago": the largest
    edge at or below it; None below the first edge (no session counts)."""
    i = bisect_right(AGE_EDGES_S, threshold_s) - 1
    return i if i >= 0 else None


def idle_over(counts: list[int] | tuple[int, ...], threshold_s: float) -> int:
    """How many idle sessions have been idle longer than threshold_s, from one count's idle_over."""
    if not counts:
        return 0
    i = idle_over_index(threshold_s)
    return counts[i if i is not None else len(counts) - 1]


def young_under(counts: list[int] | tuple[int, ...], threshold_s: float) -> int:
    """How many sessions were opened less than threshold_s ago, from one count's young_under."""
    i = young_under_index(threshold_s)
    return counts[i] if counts and i is not None else 0
