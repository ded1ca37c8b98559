"""The agent's series in a prometheus-client registry (only when prometheus_client is installed).

- `poolboard_agent_checkouts_total{service,pool}`: every checkout, the throughput signal that
  tells a leak (in use climbs, throughput flat) from load (both climb).
- `poolboard_agent_held_connections{service,pool}`: connections checked out for longer than the
  agent's threshold right now.
- `poolboard_agent_oldest_hold_seconds{service,pool}`: how long the longest-held connection has
  been out (0 when none is), so a dashboard can see a hold approach the threshold.
- `poolboard_agent_report_failures_total{service}`: reports poolboard did not accept.

Everything but the failure count is read from the agents when the registry is scraped, so a
checkout pays only for its own bookkeeping. One set of series per registry, shared by every Agent in
the process that uses that registry.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from poolboard.agent import Agent

_by_registry: weakref.WeakKeyDictionary[Any, AgentMetrics] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def metrics_for(registry: Any | None) -> AgentMetrics | None:
    """The shared series in `registry` (default: prometheus_client's REGISTRY); None without the library."""
    try:
        import prometheus_client
    except ImportError:
        return None
    if registry is None:
        registry = prometheus_client.REGISTRY
    with _lock:
        metrics = _by_registry.get(registry)
        if metrics is None:
            metrics = _by_registry[registry] = AgentMetrics(registry)
        return metrics


class AgentMetrics:
    def __init__(self, registry: Any):
        from prometheus_client import Counter

        self.report_failures = Counter(
            "poolboard_agent_report_failures",
            "Reports to poolboard that failed (refused, timed out, rejected); the application carries on.",
            ["service"],
            registry=registry,
        )
        self.agents: weakref.WeakSet[Agent] = weakref.WeakSet()
        registry.register(_HeldCollector(self.agents))


class _HeldCollector:
    def __init__(self, agents: weakref.WeakSet[Agent]):
        self._agents = agents

    def _families(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        checkouts = CounterMetricFamily(
            "poolboard_agent_checkouts",
            "Connections checked out of the pool, counted by poolboard's agent.",
            labels=["service", "pool"],
        )
        held = GaugeMetricFamily(
            "poolboard_agent_held_connections",
            "Connections checked out for longer than the agent's leak threshold.",
            labels=["service", "pool"],
        )
        oldest = GaugeMetricFamily(
            "poolboard_agent_oldest_hold_seconds",
            "Seconds the longest-held checked-out connection has been out (0 when none is).",
            labels=["service", "pool"],
        )
        return checkouts, held, oldest

    def describe(self):
        return list(self._families())

    def collect(self):
        checkouts, held, oldest = self._families()
        now = time.monotonic()
        for agent in list(self._agents):
            for tracker in agent.trackers():
                labels = [agent.service, tracker.pool_name]
                checkouts.add_metric(labels, tracker.checkouts())
                held.add_metric(labels, len(tracker.overdue(now, agent.threshold_s)))
                oldest.add_metric(labels, tracker.oldest_hold(now))
        return [checkouts, held, oldest]
