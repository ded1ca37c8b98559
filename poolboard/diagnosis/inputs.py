"""Everything lib.diagnosis needs for many services, read in a fixed number of queries.

One diagnosis pass reads, for all the services it diagnoses at once (never one query per
service, DESIGN §9):
1. their pools' raw samples over the window, added up per (service, instance, tick) in SQL;
2. their server-side points and episodes over the same window (databases app);
3. their agents' latest held-connection reports;
4. their threshold overrides.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from django.db import connection

from poolboard.lib import diagnosis as engine
from poolboard.lib.episodes import IDLE_IN_TX_STATES
from poolboard.lib.session_ages import AGE_EDGES_S, idle_over_index, young_under_index

# The canonical fields the engine reads, in PoolPoint order. Counts and gauges are added up
# over a service's pools; the two mean times are averaged (a mean of means is approximate,
# but the exporters give no per-pool weights to do better with).
SUMMED = ("max", "in_use", "idle", "pending", "timeouts", "conns_opened", "conns_closed", "acquisitions")
AVERAGED = ("acquire_s", "hold_s")

# One row per (service, instance) and one per service (instance NULL: the pools added up),
# each holding the window's ticks as arrays: 2 000 rows rather than 360 000 for 1 000
# services with two instances over 30 min, so the sums and the row parsing stay in
# PostgreSQL and psycopg's C array loader. Go's database/sql reports max = 0 for
# "unlimited": NULLIF keeps it out of the sum, so such a pool reads as "no max" (absent),
# never as a pool of size 0.
_SAMPLES_SQL = """
WITH per_tick AS (
    SELECT p.service_id, p.instance, GROUPING(p.instance) AS is_total, s.ts,
           {summed},
           {averaged}
      FROM fleet_poolsample AS s
      JOIN fleet_pool AS p ON p.id = s.pool_id
     WHERE s.ts > %s AND s.ts <= %s AND p.service_id = ANY(%s)
     GROUP BY GROUPING SETS ((p.service_id, p.instance, s.ts), (p.service_id, s.ts))
)
SELECT service_id, instance, is_total, array_agg(extract(epoch FROM ts)::float8),
       {arrays}
  FROM (SELECT * FROM per_tick ORDER BY service_id, instance, is_total, ts) AS ordered
 GROUP BY service_id, instance, is_total
""".format(
    summed=", ".join(
        f"SUM(NULLIF(s.{f}, 0)) AS {f}" if f == "max" else f"SUM(s.{f}) AS {f}" for f in SUMMED
    ),
    averaged=", ".join(f"AVG(s.{f}) AS {f}" for f in AVERAGED),
    # No ORDER BY inside the aggregates: on PostgreSQL < 16 each would sort its group again
    # (11 sorts of every group); they take the sorted subquery's order, which _columns checks.
    arrays=", ".join(f"array_agg({f})" for f in SUMMED + AVERAGED),
)


def _columns(epochs: list[float], columns: list[list]) -> engine.PoolColumns:
    if any(b < a for a, b in zip(epochs, epochs[1:])):
        # The aggregates kept the subquery's order in every plan seen, but PostgreSQL does
        # not promise it: sort here rather than trust it.
        order = sorted(range(len(epochs)), key=epochs.__getitem__)
        epochs = [epochs[i] for i in order]
        columns = [[column[i] for i in order] for column in columns]
    return engine.PoolColumns(ts=epochs, cols=dict(zip(SUMMED + AVERAGED, columns)))


def pool_points(
    service_ids: list[int], start: datetime, end: datetime
) -> tuple[dict[int, engine.PoolColumns], dict[int, dict[str, engine.PoolColumns]]]:
    """({service_id: total points}, {service_id: {instance: points}}), oldest first, in (start, end].

    A service with one instance gets no per-instance series: its total is that instance,
    and the engine falls back to the total when `instances` is empty.
    """
    # The raw-sample table is partitioned by day with BRIN on ts: the ts range prunes
    # partitions and blocks; the pool join is a hash join on the small fleet_pool table.
    totals: dict[int, engine.PoolColumns] = {}
    instances: dict[int, dict[str, engine.PoolColumns]] = defaultdict(dict)
    with connection.cursor() as cursor:
        if connection.in_atomic_block:
            # The window's 200 000-odd rows are sorted twice; the default 4 MB of work_mem
            # would spill them to disk (EXPLAIN in bench_diagnosis). For this query only.
            cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute(_SAMPLES_SQL, [start, end, list(service_ids)])
        rows = cursor.fetchall()
    counts: dict[int, int] = defaultdict(int)
    for service_id, _instance, is_total, *_ in rows:
        if not is_total:
            counts[service_id] += 1
    for service_id, instance, is_total, epochs, *columns in rows:
        if is_total:
            totals[service_id] = _columns(epochs, columns)
        elif counts[service_id] > 1:
            instances[service_id][instance] = _columns(epochs, columns)
    return totals, instances


def episodes(service_ids: list[int], start: datetime, end: datetime) -> dict[int, list[engine.EpisodeView]]:
    """{service_id: [EpisodeView]}: episodes open now or seen in the window, one query."""
    from django.db.models import Q

    from poolboard.databases.models import Episode

    out: dict[int, list[engine.EpisodeView]] = defaultdict(list)
    rows = (
        Episode.objects.filter(service_id__in=service_ids)
        .filter(Q(ended__isnull=True) | Q(last_seen__gt=start))
        .values_list("service_id", "kind", "query__fingerprint", "first_seen", "last_seen", "peak_age_s", "ended")
    )
    for service_id, kind, fingerprint, first_seen, last_seen, peak_age_s, ended in rows:
        out[service_id].append(
            engine.EpisodeView(
                kind=kind,
                fingerprint=fingerprint or "",
                first_seen=first_seen,
                last_seen=last_seen,
                peak_age_s=peak_age_s,
                open=ended is None,
            )
        )
    return out


# One point per (service, snapshot slot): the service's sessions on every monitored server
# at that instant. Sessions count as idle past the leak threshold, or young, by the counts
# the snapshot kept against fixed edges (SessionCount.idle_over, young_under): each service
# reads the edge its own thresholds fall on (lib.session_ages; 1-based, NULL reads 0).
_SERVER_SQL = """
WITH t(service_id, idle_i, young_i) AS (SELECT * FROM unnest(%s::bigint[], %s::int[], %s::int[])),
-- The servers each service had sessions on in the window ...
seen AS (
    SELECT DISTINCT c.service_id, s.server_id
      FROM databases_sessioncount AS c
      JOIN t ON t.service_id = c.service_id
      JOIN databases_snapshot AS s ON s.id = c.snapshot_id
     WHERE s.taken_at > %s AND s.taken_at <= %s
),
-- ... and every snapshot of those servers, so a snapshot in which the service had no
-- session is a point of zeros (a restart, an idle pool that closed its connections), not a gap.
snaps AS (
    SELECT seen.service_id, s.id, s.slot, s.taken_at
      FROM seen
      JOIN databases_snapshot AS s ON s.server_id = seen.server_id
     WHERE s.taken_at > %s AND s.taken_at <= %s
)
SELECT snaps.service_id, max(snaps.taken_at),
       coalesce(sum(c.count) FILTER (WHERE c.state = 'active'), 0),
       coalesce(sum(c.count) FILTER (WHERE c.state = 'idle'), 0),
       coalesce(sum(c.count) FILTER (WHERE c.state = ANY(%s)), 0),
       coalesce(sum(c.idle_over[t.idle_i]), 0),
       coalesce(sum(c.young_under[t.young_i]), 0),
       max(c.longest_query_s)
  FROM snaps
  JOIN t ON t.service_id = snaps.service_id
  -- sessioncount_service (service, snapshot) serves this join.
  LEFT JOIN databases_sessioncount AS c ON c.snapshot_id = snaps.id AND c.service_id = snaps.service_id
 GROUP BY snaps.service_id, snaps.slot
 ORDER BY snaps.service_id, snaps.slot
"""


def server_points(
    thresholds: dict[int, engine.Thresholds], start: datetime, end: datetime
) -> dict[int, list[engine.ServerPoint]]:
    """{service_id: [ServerPoint, oldest first]} from the stored snapshots, one query.

    Idle past each service's leak_s is "idle over the threshold"; younger than its
    churn_lifetime_s is "young" (a minute by default).
    """
    out: dict[int, list[engine.ServerPoint]] = defaultdict(list)
    ids = list(thresholds)
    idle_i = [_one_based(idle_over_index(thresholds[i].leak_s), len(AGE_EDGES_S)) for i in ids]
    young_i = [_one_based(young_under_index(thresholds[i].churn_lifetime_s), None) for i in ids]
    with connection.cursor() as cursor:
        cursor.execute(_SERVER_SQL, [ids, idle_i, young_i, start, end, start, end, sorted(IDLE_IN_TX_STATES)])
        for service_id, ts, active, idle, in_tx, idle_over, young, longest in cursor.fetchall():
            out[service_id].append(engine.ServerPoint(
                ts=ts, active=int(active), idle=int(idle), idle_in_transaction=int(in_tx),
                idle_over_threshold=int(idle_over), young_sessions=int(young), longest_active_query_s=longest,
            ))
    return out


def _one_based(index: int | None, otherwise: int | None) -> int | None:
    return index + 1 if index is not None else otherwise


def agent_reports(services, now: datetime) -> dict[int, list[engine.AgentHeld]]:
    """{service_id: [AgentHeld]}: the agents' current held-connection groups, one query."""
    from .models import AgentReport

    raw = AgentReport.objects.current_for(services, now)
    return {sid: [engine.AgentHeld(**r) for r in rows] for sid, rows in raw.items()}
