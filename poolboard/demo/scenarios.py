"""What each demo service does with its pool: the six scenarios poolboard must tell apart.

A scenario owns its pool settings and a fixed set of workers. A worker is a step (one unit of
work, returning how long to pause before the next) run in a loop by the runner; the number of
workers and their pauses bound the load.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry
from sqlalchemy.engine import URL

from poolboard.demo.database import CUSTOMERS, ORDER_ROWS, libpq_conninfo, sqlalchemy_url
from poolboard.demo.fleet import ServiceSpec
from poolboard.demo.pools import Lease, PoolAdapter, PsycopgPoolAdapter, SqlAlchemyPoolAdapter

log = logging.getLogger(__name__)

ORDERS_OF_CUSTOMER = (
    "SELECT id, amount_cents, status FROM orders WHERE customer_id = %s ORDER BY created_at DESC LIMIT 10"
)
ORDER_BY_ID = "SELECT id, customer_id, status FROM orders WHERE id = %s"
STATUS_TOTALS_FOR_CUSTOMERS = (
    "SELECT status, count(*), sum(amount_cents) FROM orders WHERE customer_id BETWEEN %s AND %s GROUP BY status"
)
PAID_TOTAL_OF_CUSTOMER = "SELECT sum(amount_cents) FROM orders WHERE customer_id = %s AND status = 'paid'"
PENDING_ORDERS = "SELECT id, customer_id FROM orders WHERE status = 'pending' ORDER BY id LIMIT 20"
STATUS_TOTALS = "SELECT status, count(*), sum(amount_cents) FROM orders GROUP BY status"
# Stand in for query work of a given duration; pg_sleep keeps the server's CPU free. The
# reports' long query and the other services' short work are different statements, so
# pg_stat_statements (one entry per statement, user and database) keeps them apart.
SLEEP = "SELECT pg_sleep(%s)"
SHORT_WORK = "SELECT 1 FROM pg_sleep(%s)"


@dataclass(frozen=True)
class Timings:
    """The slow parts of the scenarios; `--fast` shortens the leak cycle so tests can watch it."""

    leak_every_s: tuple[float, float] = (15.0, 20.0)
    restart_after_full_leak_s: float = 360.0
    idle_in_transaction_s: tuple[float, float] = (90.0, 120.0)
    slow_query_s: tuple[float, float] = (35.0, 45.0)


NORMAL_TIMINGS = Timings()
# Idle-in-transaction holds and slow queries stay long even in fast mode: they must outlast the
# 60 s / 30 s thresholds to mean anything, and shutdown cancels them anyway.
FAST_TIMINGS = Timings(leak_every_s=(1.0, 1.5), restart_after_full_leak_s=30.0)


@dataclass(frozen=True)
class Worker:
    name: str
    step: Callable[[], float]  # does one unit of work, returns the pause before the next
    start_after_s: float = 0.0


def _customer() -> int:
    return random.randint(1, CUSTOMERS)


@dataclass
class Scenario:
    spec: ServiceSpec
    pool: PoolAdapter
    stop: threading.Event
    timings: Timings

    # Keyword arguments for the pool adapter of this scenario's pool kind.
    pool_options: ClassVar[dict[str, Any]] = {}

    def workers(self) -> list[Worker]:
        raise NotImplementedError

    def release_held(self) -> None:
        """Give back any connection the scenario holds outside a worker step (shutdown)."""


class Healthy(Scenario):
    """Moderate load on a roomy pool: a few workers, short queries, pauses between them."""

    pool_options = {"min_size": 4, "timeout": 10.0}

    def workers(self) -> list[Worker]:
        return [Worker(f"web-{n}", self._handle_request) for n in range(3)]

    def _handle_request(self) -> float:
        with self.pool.borrow() as lease:
            lease.execute(ORDERS_OF_CUSTOMER, (_customer(),))
            lease.execute(SHORT_WORK, (random.uniform(0.005, 0.02),))
        return random.uniform(0.1, 0.3)


class Busy(Scenario):
    """Legitimate saturation: more workers than connections, normal 50-150 ms holds, no think time."""

    pool_options = {"pool_timeout": 10.0}

    def workers(self) -> list[Worker]:
        return [Worker(f"search-{n}", self._search) for n in range(12)]

    def _search(self) -> float:
        first = _customer()
        with self.pool.borrow() as lease:
            lease.execute(SHORT_WORK, (random.uniform(0.05, 0.15),))
            lease.execute(STATUS_TOTALS_FOR_CUSTOMERS, (first, first + 20))
        return random.uniform(0.0, 0.01)


@dataclass
class Leaking(Scenario):
    """A code path that forgets to return its connection; steady traffic keeps running beside it.

    The leaked connections are committed, so the server sees them as plain `idle` sessions: only the
    pool knows they are gone. Once all are leaked the service "restarts" after a while.
    """

    pool_options: ClassVar[dict[str, Any]] = {"pool_timeout": 2.0}
    _leaked: list[Lease] = field(default_factory=list)
    _fully_leaked_since: float | None = None
    _leaked_lock: threading.Lock = field(default_factory=threading.Lock)

    def workers(self) -> list[Worker]:
        steady = [Worker(f"invoice-{n}", self._invoice) for n in range(3)]
        return [*steady, Worker("refund-export", self.leaky_refund_export, start_after_s=self._leak_pause())]

    def release_held(self) -> None:
        with self._leaked_lock:
            leaked, self._leaked = self._leaked, []
            self._fully_leaked_since = None
        for lease in leaked:
            lease.release()

    def _leak_pause(self) -> float:
        return random.uniform(*self.timings.leak_every_s)

    def _invoice(self) -> float:
        with self.pool.borrow() as lease:
            lease.execute(PAID_TOTAL_OF_CUSTOMER, (_customer(),))
        return random.uniform(0.3, 0.6)

    def leaky_refund_export(self) -> float:
        """The leaking code path, named so that poolboard.agent's stack points at it."""
        if self._fully_leaked_since is not None:
            if time.monotonic() - self._fully_leaked_since >= self.timings.restart_after_full_leak_s:
                log.info("%s: restarting after %.0f s fully leaked", self.spec.name, self.timings.restart_after_full_leak_s)
                self.release_held()
                return self._leak_pause()
            return 1.0
        lease = self.pool.acquire()
        try:
            lease.execute(PAID_TOTAL_OF_CUSTOMER, (_customer(),))
            lease.commit()
        except BaseException:
            lease.rollback_quietly()
            lease.release()
            raise
        # The bug: no lease.release().
        with self._leaked_lock:
            self._leaked.append(lease)
            if len(self._leaked) >= self.spec.pool_max:
                self._fully_leaked_since = time.monotonic()
                log.info("%s: all %d connections leaked", self.spec.name, len(self._leaked))
        return self._leak_pause()


class IdleInTransaction(Scenario):
    """Handlers that open a transaction, query, then wait on something slow with it still open."""

    pool_options = {"min_size": 2, "timeout": 10.0}

    def workers(self) -> list[Worker]:
        holders = [Worker(f"digest-{n}", self._send_digest, start_after_s=n * 2.0) for n in range(2)]
        return [*holders, *(Worker(f"push-{n}", self._push) for n in range(3))]

    def _send_digest(self) -> float:
        with self.pool.borrow() as lease:
            lease.execute(PENDING_ORDERS)
            # Stands in for a slow mail provider called inside the transaction; wakes at shutdown.
            self.stop.wait(random.uniform(*self.timings.idle_in_transaction_s))
        return random.uniform(1.0, 3.0)

    def _push(self) -> float:
        with self.pool.borrow() as lease:
            lease.execute(ORDER_BY_ID, (random.randint(1, ORDER_ROWS),))
        return random.uniform(0.2, 0.6)


class SlowQueries(Scenario):
    """Report queries running 35-45 s hold connections next to ordinary short queries."""

    pool_options = {"pool_timeout": 10.0}

    def workers(self) -> list[Worker]:
        reports = [Worker(f"report-{n}", self._run_report, start_after_s=n * 1.0) for n in range(3)]
        return [*reports, *(Worker(f"lookup-{n}", self._lookup) for n in range(3))]

    def _run_report(self) -> float:
        with self.pool.borrow() as lease:
            lease.execute(SLEEP, (random.uniform(*self.timings.slow_query_s),))
            lease.execute(STATUS_TOTALS)
        return random.uniform(3.0, 8.0)

    def _lookup(self) -> float:
        with self.pool.borrow() as lease:
            lease.execute(ORDERS_OF_CUSTOMER, (_customer(),))
        return random.uniform(0.3, 1.0)


class Churn(Scenario):
    """Connections live only a few seconds, so the pool keeps closing and reopening them."""

    pool_options = {"min_size": 2, "timeout": 10.0, "max_lifetime": 3.0}

    def workers(self) -> list[Worker]:
        return [Worker(f"session-{n}", self._touch_session) for n in range(4)]

    def _touch_session(self) -> float:
        with self.pool.borrow() as lease:
            lease.execute(ORDER_BY_ID, (random.randint(1, ORDER_ROWS),))
        return random.uniform(0.05, 0.15)


SCENARIOS: dict[str, type[Scenario]] = {
    "healthy": Healthy,
    "busy": Busy,
    "leaking": Leaking,
    "idle_in_transaction": IdleInTransaction,
    "slow_queries": SlowQueries,
    "churn": Churn,
}


def open_pool(spec: ServiceSpec, registry: CollectorRegistry, database: URL) -> PoolAdapter:
    """Open the service's real pool, shaped by its scenario, exporting into `registry`."""
    options = SCENARIOS[spec.scenario].pool_options
    if spec.pool_kind == "psycopg_pool":
        return PsycopgPoolAdapter(spec, registry, libpq_conninfo(database), **options)
    return SqlAlchemyPoolAdapter(spec, registry, sqlalchemy_url(database), **options)
