"""Benchmark: what poolboard's in-app agent adds to a checkout, on real pools against PostgreSQL.

One cycle = checkout + `SELECT 1` + checkin, run from 30 nested application frames (a web handler's
depth, so the agent's frame walk does its full work). Two pools of one connection each, both
warmed up. A round instruments one of them and times BENCH_CYCLES cycles of each, interleaved one
by one (which goes first alternating), so drift and other load on the machine fall on both alike.
Which pool carries the agent alternates between rounds: two server backends differ by a few per
cent on their own (measured here: ±4 % with no agent on either), which would otherwise be counted
as the agent's.

agent_overhead_ratio = median over BENCH_ROUNDS rounds of the per-round ratio (median cycle with
agent ÷ median cycle without) for a SQLAlchemy QueuePool; agent_overhead_ratio_psycopg_pool the same for a psycopg_pool
ConnectionPool used through `with pool.connection()`. Target: ratio ≤ 1.10.

agent_hook_us: what the agent adds to one SQLAlchemy checkout + checkin with no query (no server
round trip: pure CPU), as the difference of the fastest 500-cycle blocks with and without it; the
minimum is the figure least disturbed by other load on the machine.

Prints `name: value` lines (make bench). Needs only a PostgreSQL server (DATABASE_URL's, database
`postgres`); no Django.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from psycopg_pool import ConnectionPool  # noqa: E402
from sqlalchemy.pool import QueuePool  # noqa: E402

from poolboard import dburl  # noqa: E402
from poolboard.agent import Agent  # noqa: E402

ROUNDS = int(os.getenv("BENCH_ROUNDS", "41"))
CYCLES = int(os.getenv("BENCH_CYCLES", "200"))
DEPTH = 30

SERVER = dburl.parse(os.environ.get("DATABASE_URL", "postgresql://root@127.0.0.1:5432/poolboard"))
HOST, PORT, USER = SERVER.get("host", "127.0.0.1"), int(SERVER.get("port", 5432)), SERVER.get("user", "root")


def at_depth(depth: int, work, *args):
    """Run `work` under `depth` more application frames."""
    if depth == 0:
        return work(*args)
    return at_depth(depth - 1, work, *args)


def sqlalchemy_cycle(engine: sqlalchemy.Engine) -> float:
    started = time.perf_counter()
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1").fetchall()
    return time.perf_counter() - started


def psycopg_cycle(pool: ConnectionPool) -> float:
    started = time.perf_counter()
    with pool.connection() as connection:
        connection.execute("SELECT 1").fetchall()
    return time.perf_counter() - started


def checkout_only(engine: sqlalchemy.Engine, cycles: int) -> float:
    """Seconds per checkout + checkin (psycopg sends nothing to roll back an idle connection)."""
    started = time.perf_counter()
    for _ in range(cycles):
        engine.connect().close()
    return (time.perf_counter() - started) / cycles


def hook_cost(engines: tuple) -> float:
    """Extra seconds per checkout + checkin: fastest block with the agent − fastest without."""
    agent = Agent("bench", endpoint="", token="", registry=CollectorRegistry())
    plain, instrumented = engines
    agent.instrument_sqlalchemy(instrumented)
    blocks: dict[str, list[float]] = {"plain": [], "agent": []}
    try:
        for round_number in range(ROUNDS):
            order = [("plain", plain), ("agent", instrumented)]
            for name, engine in order if round_number % 2 == 0 else reversed(order):
                blocks[name].append(at_depth(DEPTH, checkout_only, engine, 500))
    finally:
        agent.close()
    return min(blocks["agent"]) - min(blocks["plain"])


def one_round(cycle, plain, instrumented, cycles: int) -> tuple[float, float]:
    """Median seconds of one cycle (plain, instrumented) over `cycles` interleaved cycles of each.

    Medians, not sums: one scheduling hiccup on a shared machine would otherwise tip a round.
    """
    plain_s, instrumented_s = [], []
    for n in range(cycles):
        if n % 2:
            plain_s.append(cycle(plain))
            instrumented_s.append(cycle(instrumented))
        else:
            instrumented_s.append(cycle(instrumented))
            plain_s.append(cycle(plain))
    return statistics.median(plain_s), statistics.median(instrumented_s)


def interleaved_ratio(cycle, instrument, pools: tuple) -> float:
    """Median over ROUNDS rounds of the round's ratio instrumented/plain."""
    at_depth(DEPTH, one_round, cycle, *pools, CYCLES)  # warm-up
    ratios = []
    for round_number in range(ROUNDS):
        plain, instrumented = pools if round_number % 2 == 0 else reversed(pools)
        # No endpoint: the reporter thread is not measured (it never runs on the app's threads).
        agent = Agent("bench", endpoint="", token="", registry=CollectorRegistry())
        instrument(agent, instrumented)
        try:
            plain_s, instrumented_s = at_depth(DEPTH, one_round, cycle, plain, instrumented, CYCLES)
        finally:
            agent.close()
        ratios.append(instrumented_s / plain_s)
    return statistics.median(ratios)


def main() -> int:
    url = sqlalchemy.URL.create("postgresql+psycopg", username=USER, host=HOST, port=PORT, database="postgres")

    def engine(name: str) -> sqlalchemy.Engine:
        return sqlalchemy.create_engine(url, poolclass=QueuePool, pool_size=1, max_overflow=0, pool_logging_name=name)

    conninfo = f"host={HOST} port={PORT} user={USER} dbname=postgres"

    def pool(name: str) -> ConnectionPool:
        opened = ConnectionPool(conninfo, min_size=1, max_size=1, name=name, open=True)
        opened.wait(timeout=10)
        return opened

    engines = engine("bench-a"), engine("bench-b")
    pools = pool("bench-a"), pool("bench-b")
    try:
        ratio = interleaved_ratio(sqlalchemy_cycle, Agent.instrument_sqlalchemy, engines)
        hook_s = hook_cost(engines)
        psycopg_ratio = interleaved_ratio(psycopg_cycle, Agent.instrument_psycopg_pool, pools)
    finally:
        for opened in engines:
            opened.dispose()
        for opened in pools:
            opened.close()
    print(f"agent_overhead_ratio: {ratio:.3f}")
    print(f"agent_overhead_ratio_psycopg_pool: {psycopg_ratio:.3f}")
    print(f"agent_hook_us: {hook_s * 1e6:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
