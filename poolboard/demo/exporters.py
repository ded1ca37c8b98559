"""Three ways of exposing the same pool: the metric names real exporters use.

A pool adapter (pools.py) reports what happens (a connection was created, an acquire waited so
long, a checkout was held so long) through the `PoolExporter` methods, and the exporter reads the
pool's current state (in use, idle, waiting) at scrape time, so gauges are never stale.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, Summary
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from poolboard.demo.fleet import ServiceSpec

# Hold times run from a millisecond (search) to two minutes (idle-in-transaction holders), so the
# buckets double from 1 ms up to ~131 s.
DOUBLING_SECONDS_BUCKETS: tuple[float, ...] = tuple(0.001 * 2**i for i in range(18))

# OpenTelemetry's default explicit buckets (0, 5, 10, ... 10000) were made for milliseconds and put
# nearly every seconds-valued observation in the first bucket; this is the set a user would
# configure with a View.
OTEL_SECONDS_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)


@dataclass(frozen=True)
class PoolState:
    """The pool as it is right now."""

    max: int
    min: int
    in_use: int
    idle: int
    pending: int  # callers waiting for a connection


class PoolExporter(Collector):
    """Base of the dialects: receives pool events, renders gauges from the live state on scrape."""

    def __init__(self, spec: ServiceSpec, registry: CollectorRegistry, read_state: Callable[[], PoolState]):
        self.spec = spec
        self.pool_label = spec.pool_label_name
        self.pool_name = spec.pool_label_value
        self._read_state = read_state
        # Not part of any dialect: lets a human check the demo's throughput is real.
        self._queries = Counter(
            "poolboard_demo_queries",
            "SQL statements the demo service ran",
            ["service"],
            registry=registry,
        ).labels(spec.name)
        registry.register(self)

    def query_ran(self) -> None:
        self._queries.inc()

    # Events, called by the pool adapter from the worker threads.
    def connection_created(self, seconds: float) -> None:
        raise NotImplementedError

    def connection_closed(self) -> None:
        raise NotImplementedError

    def acquired(self, wait_seconds: float, queued: bool) -> None:
        raise NotImplementedError

    def timed_out(self, wait_seconds: float) -> None:
        raise NotImplementedError

    def released(self, hold_seconds: float) -> None:
        raise NotImplementedError

    # Scrape side.
    def collect(self) -> Iterable[Metric]:
        return self.gauge_families(self._read_state())

    def gauge_families(self, state: PoolState) -> list[Metric]:
        raise NotImplementedError

    def _gauge(self, name: str, documentation: str, value: float) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, documentation, labels=[self.pool_label])
        family.add_metric([self.pool_name], value)
        return family


class DbPoolExporter(PoolExporter):
    """The Go-style custom set from the seed write-ups, label `pool_name`."""

    def __init__(self, spec: ServiceSpec, registry: CollectorRegistry, read_state: Callable[[], PoolState]):
        super().__init__(spec, registry, read_state)
        labels = [self.pool_label]

        def counter(name: str, documentation: str) -> Counter:
            return Counter(name, documentation, labels, registry=registry)

        self._waits = counter("db_pool_wait_total", "Acquires that had to wait for a connection").labels(self.pool_name)
        self._wait_seconds = counter(
            "db_pool_wait_duration_seconds", "Total seconds acquires spent waiting for a connection"
        ).labels(self.pool_name)
        self._exhausted = counter(
            "db_pool_exhausted_total", "Acquires that timed out because the pool was exhausted"
        ).labels(self.pool_name)
        self._created = counter("db_pool_connections_created_total", "Connections opened").labels(self.pool_name)
        self._closed = counter("db_pool_connections_closed_total", "Connections closed").labels(self.pool_name)
        self._hold = Histogram(
            "db_connection_hold_duration_seconds",
            "Time a connection was held before being returned",
            labels,
            registry=registry,
            buckets=DOUBLING_SECONDS_BUCKETS,
        ).labels(self.pool_name)

    def connection_created(self, seconds: float) -> None:
        self._created.inc()

    def connection_closed(self) -> None:
        self._closed.inc()

    def acquired(self, wait_seconds: float, queued: bool) -> None:
        # Like Go's sql.DBStats: only acquires that found no free connection count as waits.
        if queued:
            self._waits.inc()
            self._wait_seconds.inc(wait_seconds)

    def timed_out(self, wait_seconds: float) -> None:
        self._exhausted.inc()
        self._waits.inc()
        self._wait_seconds.inc(wait_seconds)

    def released(self, hold_seconds: float) -> None:
        self._hold.observe(hold_seconds)

    def gauge_families(self, state: PoolState) -> list[Metric]:
        return [
            self._gauge("db_pool_max_open_connections", "Configured maximum of open connections", state.max),
            self._gauge("db_pool_open_connections", "Open connections (in use + idle)", state.in_use + state.idle),
            self._gauge("db_pool_in_use_connections", "Connections checked out", state.in_use),
            self._gauge("db_pool_idle_connections", "Open connections sitting in the pool", state.idle),
            self._gauge("db_pool_pending_requests", "Callers waiting for a connection right now", state.pending),
        ]


class DecayingMax:
    """Largest value recorded over the last ~2 minutes, like Micrometer's timer `_max`.

    Micrometer keeps a ring of 3 windows rotated every expiry/3; a value leaves the ring after 80 to
    120 s. An empty ring reads 0, as Micrometer's does.
    """

    def __init__(self, expiry_seconds: float = 120.0, windows: int = 3, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._rotate_every = expiry_seconds / windows
        self._maxima = [0.0] * windows
        self._current = 0
        self._rotated_at = clock()
        self._lock = threading.Lock()

    def _rotate(self) -> None:
        elapsed_windows = int((self._clock() - self._rotated_at) // self._rotate_every)
        for _ in range(min(elapsed_windows, len(self._maxima))):
            self._current = (self._current + 1) % len(self._maxima)
            self._maxima[self._current] = 0.0
        self._rotated_at += elapsed_windows * self._rotate_every

    def record(self, value: float) -> None:
        with self._lock:
            self._rotate()
            self._maxima[self._current] = max(self._maxima[self._current], value)

    def value(self) -> float:
        with self._lock:
            self._rotate()
            return max(self._maxima)


class HikariExporter(PoolExporter):
    """HikariCP through Micrometer's Prometheus registry (pool-metrics.md §1.1), label `pool`."""

    def __init__(self, spec: ServiceSpec, registry: CollectorRegistry, read_state: Callable[[], PoolState]):
        super().__init__(spec, registry, read_state)
        labels = [self.pool_label]

        def summary(name: str, documentation: str) -> Summary:
            return Summary(name, documentation, labels, registry=registry).labels(self.pool_name)

        self._acquire = summary("hikaricp_connections_acquire_seconds", "Connection acquire time")
        self._usage = summary("hikaricp_connections_usage_seconds", "Connection usage time")
        self._creation = summary("hikaricp_connections_creation_seconds", "Connection creation time")
        self._timeouts = Counter(
            "hikaricp_connections_timeout_total", "Connection timeout total count", labels, registry=registry
        ).labels(self.pool_name)
        self._acquire_max = DecayingMax()
        self._usage_max = DecayingMax()
        self._creation_max = DecayingMax()

    def connection_created(self, seconds: float) -> None:
        self._creation.observe(seconds)
        self._creation_max.record(seconds)

    def connection_closed(self) -> None:
        pass  # HikariCP reports no closed count

    def acquired(self, wait_seconds: float, queued: bool) -> None:
        self._acquire.observe(wait_seconds)
        self._acquire_max.record(wait_seconds)

    def timed_out(self, wait_seconds: float) -> None:
        self._timeouts.inc()

    def released(self, hold_seconds: float) -> None:
        self._usage.observe(hold_seconds)
        self._usage_max.record(hold_seconds)

    def gauge_families(self, state: PoolState) -> list[Metric]:
        return [
            self._gauge("hikaricp_connections_max", "Max connections", state.max),
            self._gauge("hikaricp_connections_min", "Min connections", state.min),
            self._gauge("hikaricp_connections_active", "Active connections", state.in_use),
            self._gauge("hikaricp_connections_idle", "Idle connections", state.idle),
            self._gauge("hikaricp_connections", "Total connections", state.in_use + state.idle),
            self._gauge("hikaricp_connections_pending", "Pending threads", state.pending),
            self._gauge("hikaricp_connections_acquire_seconds_max", "Connection acquire time", self._acquire_max.value()),
            self._gauge("hikaricp_connections_usage_seconds_max", "Connection usage time", self._usage_max.value()),
            self._gauge(
                "hikaricp_connections_creation_seconds_max", "Connection creation time", self._creation_max.value()
            ),
        ]


class OtelExporter(PoolExporter):
    """OpenTelemetry's new (>= v1.27) db.client.connection.* semconv as Prometheus names (§3.2)."""

    def __init__(self, spec: ServiceSpec, registry: CollectorRegistry, read_state: Callable[[], PoolState]):
        super().__init__(spec, registry, read_state)
        labels = [self.pool_label]

        def histogram(name: str, documentation: str) -> Histogram:
            return Histogram(name, documentation, labels, registry=registry, buckets=OTEL_SECONDS_BUCKETS).labels(
                self.pool_name
            )

        self._wait_time = histogram(
            "db_client_connection_wait_time_seconds", "The time it took to obtain an open connection from the pool"
        )
        self._use_time = histogram(
            "db_client_connection_use_time_seconds",
            "The time between borrowing a connection and returning it to the pool",
        )
        self._create_time = histogram(
            "db_client_connection_create_time_seconds", "The time it took to create a new connection"
        )
        self._timeouts = Counter(
            "db_client_connection_timeouts_total",
            "The number of connection timeouts that have occurred trying to obtain a connection from the pool",
            labels,
            registry=registry,
        ).labels(self.pool_name)

    def connection_created(self, seconds: float) -> None:
        self._create_time.observe(seconds)

    def connection_closed(self) -> None:
        pass  # semconv has no closed-connections instrument

    def acquired(self, wait_seconds: float, queued: bool) -> None:
        self._wait_time.observe(wait_seconds)

    def timed_out(self, wait_seconds: float) -> None:
        self._timeouts.inc()

    def released(self, hold_seconds: float) -> None:
        self._use_time.observe(hold_seconds)

    def gauge_families(self, state: PoolState) -> list[Metric]:
        count = GaugeMetricFamily(
            "db_client_connection_count",
            "The number of connections that are currently in state described by the state attribute",
            labels=[self.pool_label, "db_client_connection_state"],
        )
        count.add_metric([self.pool_name, "used"], state.in_use)
        count.add_metric([self.pool_name, "idle"], state.idle)
        return [
            count,
            self._gauge("db_client_connection_max", "The maximum number of open connections allowed", state.max),
            self._gauge(
                "db_client_connection_idle_min", "The minimum number of idle open connections allowed", state.min
            ),
            self._gauge(
                "db_client_connection_pending_requests",
                "The number of current pending requests for an open connection",
                state.pending,
            ),
        ]


EXPORTER_BY_DIALECT: dict[str, type[PoolExporter]] = {
    "db_pool": DbPoolExporter,
    "hikaricp": HikariExporter,
    "otel": OtelExporter,
}
