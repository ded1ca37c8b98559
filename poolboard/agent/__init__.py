"""poolboard's in-app agent: which line of code holds the connections your pool is missing.

Two lines in a service::

    from poolboard.agent import Agent

    agent = Agent(service="billing", endpoint="http://poolboard:8000", token=os.environ["POOLBOARD_AGENT_TOKEN"])
    agent.instrument_sqlalchemy(engine)        # and/or
    agent.instrument_psycopg_pool(pool)

At every checkout the agent notes the time and the calling application frames (cheaply: no
formatting). A connection out for longer than `threshold_s` (default 60 s, HikariCP's
`leakDetectionThreshold` but on by default) is counted in the `poolboard_agent_held_connections`
gauge and, every `report_every_s`, reported to poolboard grouped by the stack that checked it out.
Checkouts are counted in `poolboard_agent_checkouts_total`, the throughput signal poolboard's leak
diagnosis compares with connections in use.

Reporting never blocks or fails the application: it runs on a daemon thread with a 2 s timeout,
swallows and counts every error and backs off. Without an endpoint and token (arguments or the
POOLBOARD_AGENT_ENDPOINT / POOLBOARD_AGENT_TOKEN environment variables) it only exports metrics.

Only the standard library is needed; prometheus_client, SQLAlchemy and psycopg_pool are imported
when used. Django is not needed.
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
import time
import weakref
from collections.abc import Callable
from typing import Any

from poolboard.agent.metrics import metrics_for
from poolboard.agent.protocol import MAX_GROUPS, MAX_NAME_CHARS, REPORTS_PATH
from poolboard.agent.reporter import Reporter, group_by_stack, utc_now_iso
from poolboard.agent.stacks import FrameFilter
from poolboard.agent.tracker import PoolTracker

__all__ = ["Agent"]

log = logging.getLogger("poolboard.agent")

# HikariCP's maintainer advises "1-2 minutes to avoid false positives" (HikariCP#738); a minute
# also matches poolboard's server-side leak threshold, so both sides flag the same connections.
DEFAULT_THRESHOLD_S = 60.0
# poolboard collects every 15 s by default; reporting as often keeps the two in step.
DEFAULT_REPORT_EVERY_S = 15.0
DEFAULT_TIMEOUT_S = 2.0


def default_instance() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Agent:
    def __init__(
        self,
        service: str,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        instance: str | None = None,
        threshold_s: float = DEFAULT_THRESHOLD_S,
        report_every_s: float = DEFAULT_REPORT_EVERY_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_groups: int = MAX_GROUPS,
        registry: Any | None = None,
        skip_modules: tuple[str, ...] = (),
    ):
        """`skip_modules`: your own database wrappers (module names, submodules included), so the
        stack starts at the code that asked for the connection rather than at the wrapper."""
        if threshold_s <= 0 or report_every_s <= 0 or timeout_s <= 0:
            raise ValueError("threshold_s, report_every_s and timeout_s must be positive")
        if not service or len(service) > MAX_NAME_CHARS:
            raise ValueError(f"service must be a name of 1 to {MAX_NAME_CHARS} characters")
        self.service = service
        self._instance_given = instance is not None
        self.instance = (instance or default_instance())[:MAX_NAME_CHARS]
        self.threshold_s = float(threshold_s)
        self.max_groups = max(1, min(int(max_groups), MAX_GROUPS))
        self._frame_filter = FrameFilter(tuple(skip_modules))
        self._trackers: dict[str, PoolTracker] = {}
        self._undo: list[Callable[[], None]] = []
        self._metrics = metrics_for(registry)
        if self._metrics is not None:
            self._metrics.agents.add(self)

        endpoint = endpoint if endpoint is not None else os.environ.get("POOLBOARD_AGENT_ENDPOINT", "")
        token = token if token is not None else os.environ.get("POOLBOARD_AGENT_TOKEN", "")
        self.reporter: Reporter | None = None
        if endpoint and token:
            self.reporter = Reporter(
                endpoint.rstrip("/") + REPORTS_PATH,
                token,
                self._build_batch,
                interval_s=report_every_s,
                timeout_s=timeout_s,
                on_failure=self._count_failure,
            )
        else:
            log.info("poolboard agent for %s: no endpoint or token, exporting metrics only", service)
        # A fork (gunicorn, Celery prefork) copies this agent without its thread and with the
        # parent's checkouts; the child starts clean. A weak reference, as there is no unregister.
        os.register_at_fork(after_in_child=_weak_call(self._after_fork))

    # Instrumentation ---------------------------------------------------------------------------

    def instrument_sqlalchemy(self, engine: Any, pool_name: str | None = None) -> None:
        """Follow checkouts of a SQLAlchemy Engine's pool through its `checkout`/`checkin` events.

        The pool is named `pool_name`, else the engine's `pool_logging_name`, else its database.
        """
        from sqlalchemy import event

        name = pool_name or getattr(engine.pool, "logging_name", None) or engine.url.database or "default"
        tracker = self._tracker(name)

        # Keyed by the pool's connection record: it lives as long as the pooled connection.
        def on_checkout(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
            try:
                tracker.checked_out(id(record))
            except Exception:
                pass

        def on_checkin(_dbapi_connection: Any, record: Any) -> None:
            tracker.checked_in(id(record))

        # checkin covers returns, invalidation and garbage-collected connections (SQLAlchemy
        # returns those itself); a detached connection has left the pool for good.
        listeners = [("checkout", on_checkout), ("checkin", on_checkin), ("detach", on_checkin)]
        for identifier, listener in listeners:
            event.listen(engine, identifier, listener)
        self._undo.append(lambda: [event.remove(engine, i, fn) for i, fn in listeners])
        self._start_reporting()

    def instrument_psycopg_pool(self, pool: Any, pool_name: str | None = None) -> None:
        """Follow checkouts of a psycopg_pool ConnectionPool.

        psycopg_pool has no checkout hooks, so the pool object's own `getconn` and `putconn` are
        wrapped (on this instance only). `pool.connection()` and a connection closed with
        `close_returns=True` both go through them, so every path is followed.
        """
        if inspect.iscoroutinefunction(pool.getconn):
            raise TypeError("AsyncConnectionPool is not supported; instrument a ConnectionPool")
        tracker = self._tracker(pool_name or pool.name)
        getconn, putconn = pool.getconn, pool.putconn

        def traced_getconn(timeout: float | None = None) -> Any:
            connection = getconn(timeout=timeout)
            try:
                tracker.checked_out(id(connection))
            except Exception:
                pass
            return connection

        def traced_putconn(connection: Any) -> None:
            tracker.checked_in(id(connection))
            putconn(connection)

        pool.getconn, pool.putconn = traced_getconn, traced_putconn

        def undo() -> None:
            del pool.getconn, pool.putconn

        self._undo.append(undo)
        self._start_reporting()

    # Reporting ---------------------------------------------------------------------------------

    def trackers(self) -> list[PoolTracker]:
        return list(self._trackers.values())

    def held_reports(self) -> list[dict]:
        """What the next report would say: connections past the threshold, grouped by stack."""
        now = time.monotonic()
        held = [connection for tracker in self.trackers() for connection in tracker.overdue(now, self.threshold_s)]
        return group_by_stack(held, self.max_groups)

    def report_now(self) -> bool:
        """Send a report now, on the calling thread; True if delivered or nothing was due."""
        return self.reporter.send_once() if self.reporter is not None else False

    def close(self) -> None:
        """Stop reporting and remove the instrumentation (tests, or an app shutting a pool down)."""
        if self.reporter is not None:
            self.reporter.stop()
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        self._trackers.clear()

    def _build_batch(self) -> dict:
        return {"service": self.service, "instance": self.instance, "reports": self.held_reports(), "sent_at": utc_now_iso()}

    def _tracker(self, pool_name: str) -> PoolTracker:
        if pool_name in self._trackers:
            raise ValueError(f"pool {pool_name!r} is already instrumented by this agent; pass another pool_name")
        tracker = self._trackers[pool_name] = PoolTracker(pool_name, self._frame_filter)
        return tracker

    def _start_reporting(self) -> None:
        if self.reporter is not None:
            self.reporter.start()

    def _count_failure(self) -> None:
        if self._metrics is not None:
            self._metrics.report_failures.labels(self.service).inc()

    def _after_fork(self) -> None:
        if not self._instance_given:
            self.instance = default_instance()[:MAX_NAME_CHARS]
        for tracker in self.trackers():
            tracker.forget_all()
        if self.reporter is not None and self._undo:
            self.reporter.forget_thread()
            self.reporter.start()


def _weak_call(method: Callable[[], None]) -> Callable[[], None]:
    ref = weakref.WeakMethod(method)

    def call() -> None:
        bound = ref()
        if bound is not None:
            bound()

    return call
