"""Real pools with a thin layer that measures them: psycopg_pool and SQLAlchemy's QueuePool.

Every checkout goes through `PoolAdapter.acquire()`, which times the wait, counts the callers
waiting and the timeouts, and hands back a `Lease` that times the hold. Connections created and
closed are counted where the pool makes them: a connection class for psycopg_pool, engine and pool
events for SQLAlchemy. The gauges are read from the pool itself at scrape time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import sqlalchemy
from prometheus_client import CollectorRegistry
from psycopg_pool import ConnectionPool, PoolTimeout
from sqlalchemy.engine import URL
from sqlalchemy.pool import QueuePool

from poolboard.agent import Agent
from poolboard.demo.exporters import EXPORTER_BY_DIALECT, PoolState
from poolboard.demo.fleet import ServiceSpec

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5


class PoolExhausted(Exception):
    """No connection became free within the pool's timeout."""


class Lease:
    """One checkout: a connection borrowed from a pool until `release()`."""

    def __init__(self, adapter: PoolAdapter, driver_connection: psycopg.Connection[Any]):
        self.adapter = adapter
        self.acquired_at = time.perf_counter()
        # Kept so another thread can cancel the running query at shutdown.
        self._driver_connection = driver_connection
        self._released = False
        self._release_lock = threading.Lock()

    def execute(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        rows = self._execute(statement, params)
        self.adapter.metrics.query_ran()
        return rows

    def rollback_quietly(self) -> None:
        """Roll back after a failure; a broken connection is the pool's to discard on return."""
        try:
            self.rollback()
        except Exception:
            pass

    def cancel_query(self) -> None:
        """Ask the server to cancel whatever this connection is running (safe from any thread)."""
        try:
            self._driver_connection.cancel_safe(timeout=2.0)
        except Exception:
            pass  # already closed or nothing to cancel; shutdown goes on

    def release(self) -> None:
        """Give the connection back to the pool; later calls do nothing."""
        with self._release_lock:
            if self._released:
                return
            self._released = True
        self.adapter.lease_returned(self, time.perf_counter() - self.acquired_at)
        self._return()

    def _execute(self, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def rollback(self) -> None:
        raise NotImplementedError

    def _return(self) -> None:
        raise NotImplementedError


class PoolAdapter:
    """A real pool plus the exporter that describes it in its service's dialect."""

    timeout_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, spec: ServiceSpec, registry: CollectorRegistry):
        self.spec = spec
        self.metrics = EXPORTER_BY_DIALECT[spec.dialect](spec, registry, self.state)
        self._leases: set[Lease] = set()
        self._waiting = 0
        self._lock = threading.Lock()

    def acquire(self) -> Lease:
        queued = not self._has_free_connection()
        started = time.perf_counter()
        with self._lock:
            self._waiting += 1
        try:
            lease = self._checkout()
        except self.timeout_errors as exc:
            self.metrics.timed_out(time.perf_counter() - started)
            raise PoolExhausted(f"{self.spec.name}: no free connection within the pool timeout") from exc
        finally:
            with self._lock:
                self._waiting -= 1
        with self._lock:
            self._leases.add(lease)
        self.metrics.acquired(lease.acquired_at - started, queued)
        return lease

    @contextmanager
    def borrow(self) -> Iterator[Lease]:
        """Acquire, commit on success or roll back on error, and always release."""
        lease = self.acquire()
        try:
            yield lease
            lease.commit()
        except BaseException:
            lease.rollback_quietly()
            raise
        finally:
            lease.release()

    def lease_returned(self, lease: Lease, hold_seconds: float) -> None:
        with self._lock:
            self._leases.discard(lease)
        self.metrics.released(hold_seconds)

    def leases_out(self) -> int:
        with self._lock:
            return len(self._leases)

    def cancel_running_queries(self) -> None:
        with self._lock:
            leases = list(self._leases)
        for lease in leases:
            lease.cancel_query()

    def state(self) -> PoolState:
        raise NotImplementedError

    def instrument(self, agent: Agent) -> None:
        """Let poolboard.agent follow this pool's checkouts."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _has_free_connection(self) -> bool:
        raise NotImplementedError

    def _checkout(self) -> Lease:
        raise NotImplementedError


# psycopg_pool ---------------------------------------------------------------------------------


class PsycopgLease(Lease):
    def __init__(self, adapter: PsycopgPoolAdapter, connection: psycopg.Connection[Any]):
        super().__init__(adapter, connection)
        self._connection_pool = adapter.pool
        self.connection = connection

    def _execute(self, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        cursor = self.connection.execute(statement, params)
        return cursor.fetchall() if cursor.description else []

    def commit(self) -> None:
        self.connection.commit()

    def rollback(self) -> None:
        self.connection.rollback()

    def _return(self) -> None:
        self._connection_pool.putconn(self.connection)


def _connection_class_reporting_to(adapter: PoolAdapter) -> type[psycopg.Connection[Any]]:
    """A psycopg Connection class that tells the adapter's exporter when it is opened and closed.

    psycopg_pool opens connections in its own worker threads through `connection_class.connect`
    and closes them with `close()`, so this is where creation time and closes can be measured.
    """

    class ReportingConnection(psycopg.Connection):  # type: ignore[type-arg]
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> ReportingConnection:  # type: ignore[override]
            started = time.perf_counter()
            connection = super().connect(conninfo, **kwargs)
            adapter.metrics.connection_created(time.perf_counter() - started)
            return connection

        def close(self) -> None:
            was_open = not self.closed
            super().close()
            if was_open:
                adapter.metrics.connection_closed()

    return ReportingConnection


class PsycopgPoolAdapter(PoolAdapter):
    timeout_errors = (PoolTimeout,)

    def __init__(
        self,
        spec: ServiceSpec,
        registry: CollectorRegistry,
        conninfo: str,
        *,
        min_size: int,
        timeout: float,
        max_lifetime: float = 3600.0,
    ):
        super().__init__(spec, registry)
        self.pool: ConnectionPool[Any] = ConnectionPool(
            conninfo,
            connection_class=_connection_class_reporting_to(self),
            kwargs={"application_name": spec.name, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
            min_size=min_size,
            max_size=spec.pool_size,
            timeout=timeout,
            max_lifetime=max_lifetime,
            name=spec.pool_label_value,
            # Two maintenance workers are plenty for pools this small and keep the thread count down.
            num_workers=2,
            open=True,
        )
        # Fail at start-up, with the server's message, rather than in every worker later.
        self.pool.wait(timeout=15.0)

    def state(self) -> PoolState:
        stats = self.pool.get_stats()
        return PoolState(
            max=self.pool.max_size,
            min=self.pool.min_size,
            # psycopg_pool's own size also counts connections still being opened, so the checked-out
            # count comes from the leases, through which every getconn() passes.
            in_use=self.leases_out(),
            idle=stats["pool_available"],
            pending=stats["requests_waiting"],
        )

    def instrument(self, agent: Agent) -> None:
        agent.instrument_psycopg_pool(self.pool)

    def close(self) -> None:
        self.pool.close(timeout=5.0)

    def _has_free_connection(self) -> bool:
        # psycopg_pool queues every request that finds no idle connection, even while it grows.
        return self.pool.get_stats()["pool_available"] > 0

    def _checkout(self) -> Lease:
        return PsycopgLease(self, self.pool.getconn())


# SQLAlchemy QueuePool ---------------------------------------------------------------------------


class SqlAlchemyLease(Lease):
    def __init__(self, adapter: PoolAdapter, connection: sqlalchemy.Connection):
        super().__init__(adapter, connection.connection.driver_connection)
        self.connection = connection

    def _execute(self, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        result = self.connection.exec_driver_sql(statement, params)
        return [tuple(row) for row in result.fetchall()] if result.returns_rows else []

    def commit(self) -> None:
        self.connection.commit()

    def rollback(self) -> None:
        self.connection.rollback()

    def _return(self) -> None:
        self.connection.close()


class SqlAlchemyPoolAdapter(PoolAdapter):
    timeout_errors = (sqlalchemy.exc.TimeoutError,)

    def __init__(
        self,
        spec: ServiceSpec,
        registry: CollectorRegistry,
        url: URL,
        *,
        pool_timeout: float,
        pool_recycle: int = -1,
        pool_pre_ping: bool = False,
    ):
        super().__init__(spec, registry)
        self.engine = sqlalchemy.create_engine(
            url,
            poolclass=QueuePool,
            pool_size=spec.pool_size,
            max_overflow=spec.max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=pool_recycle,
            pool_pre_ping=pool_pre_ping,
            pool_logging_name=spec.pool_label_value,
            connect_args={"application_name": spec.name, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
        )
        sqlalchemy.event.listen(self.engine, "do_connect", self._timed_connect)
        sqlalchemy.event.listen(self.engine, "close", self._connection_closed)
        sqlalchemy.event.listen(self.engine, "close_detached", self._detached_connection_closed)

    def _timed_connect(self, dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        # Returning the connection replaces SQLAlchemy's own connect call; this is only to time it.
        started = time.perf_counter()
        connection = dialect.connect(*cargs, **cparams)
        self.metrics.connection_created(time.perf_counter() - started)
        return connection

    def _connection_closed(self, dbapi_connection: Any, record: Any) -> None:
        self.metrics.connection_closed()

    def _detached_connection_closed(self, dbapi_connection: Any) -> None:
        self.metrics.connection_closed()

    @property
    def _queue_pool(self) -> QueuePool:
        pool = self.engine.pool
        assert isinstance(pool, QueuePool)
        return pool

    def state(self) -> PoolState:
        pool = self._queue_pool
        with self._lock:
            waiting = self._waiting
        return PoolState(
            max=self.spec.pool_max,
            min=0,  # QueuePool opens connections on demand and keeps no minimum
            in_use=pool.checkedout(),
            idle=pool.checkedin(),
            pending=waiting,  # QueuePool has no count of its waiters; the adapter keeps one
        )

    def instrument(self, agent: Agent) -> None:
        agent.instrument_sqlalchemy(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def _has_free_connection(self) -> bool:
        pool = self._queue_pool
        return pool.checkedin() > 0 or pool.checkedout() < self.spec.pool_max

    def _checkout(self) -> Lease:
        return SqlAlchemyLease(self, self.engine.connect())
