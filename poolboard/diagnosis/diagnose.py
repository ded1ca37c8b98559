"""One diagnosis pass over many services: read (fixed number of queries), judge (lib), record.

Runs after each collection tick for the services whose data changed, and from
`manage.py diagnose`. The queries do not grow with the number of services: samples,
server points, episodes, agent reports, overrides, open findings — one each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings

from poolboard.fleet.models import PrometheusSource, Service
from poolboard.lib import diagnosis as engine
from poolboard.lib.promql import duration_seconds

from . import inputs
from .models import Finding, ServiceThresholds


@dataclass
class PassResult:
    services: int = 0
    opened: int = 0
    updated: int = 0
    closed: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


def window() -> timedelta:
    return timedelta(seconds=settings.DIAGNOSIS_WINDOW)


def sources_of(services: list[Service]) -> dict[int, PrometheusSource]:
    return {p.pk: p for p in PrometheusSource.objects.filter(id__in={s.source_id for s in services})}


def build_inputs(services: list[Service], now: datetime, sources: dict[int, PrometheusSource],
                 ) -> dict[int, engine.DiagnosisInput]:
    """The engine's input for each service, in a fixed number of queries."""
    ids = [s.id for s in services]
    start = now - window()
    overrides = dict(ServiceThresholds.objects.filter(service_id__in=ids).values_list("service_id", "overrides"))
    thresholds = {s.id: engine.Thresholds().with_overrides(overrides.get(s.id)) for s in services}
    totals, per_instance = inputs.pool_points(ids, start, now)
    server = inputs.server_points(thresholds, start, now)
    episodes = inputs.episodes(ids, start, now)
    agent = inputs.agent_reports(services, now)
    out = {}
    for service in services:
        out[service.id] = engine.DiagnosisInput(
            service=service.name,
            now=now,
            interval_s=float(settings.COLLECT_INTERVAL),
            total=totals.get(service.id, []),
            instances=per_instance.get(service.id, {}),
            server=server.get(service.id, []),
            episodes=episodes.get(service.id, []),
            agent=agent.get(service.id, []),
            thresholds=thresholds[service.id],
            # The per-window counts (acquisitions, opened, timeouts) and mean times are over
            # the source's rate window, not over one collection interval.
            rate_window_s=duration_seconds(sources[service.source_id].rate_window),
        )
    return out


def diagnose_services(services, now: datetime) -> PassResult:
    services = list(services)
    result = PassResult(services=len(services))
    if not services:
        return result
    verdicts = {}
    sources = sources_of(services)
    for service_id, data in build_inputs(services, now, sources).items():
        verdicts[service_id] = engine.diagnose(data)
        for finding in verdicts[service_id]:
            result.kinds[finding.kind] = result.kinds.get(finding.kind, 0) + 1
    # Error is not no data (reliability.md R1.2): while a service's source fails, its pool
    # rules see stale data and cannot judge, so nothing they found is closed (a leak closed
    # and reopened would resolve and re-send its alert and split its history). A service
    # whose series are gone while its source answers is no data, and closes as usual.
    failing = {s.id for s in services if sources[s.source_id].stale_since(now) is not None}
    counts = Finding.objects.record(verdicts, now, keep_open=failing)
    result.opened, result.updated, result.closed = counts["opened"], counts["updated"], counts["closed"]
    return result


def services_to_diagnose(now: datetime):
    """Services with a sample in the window, plus those with an open finding (so it can close)."""
    recent = Service.objects.filter(last_seen_at__gt=now - window())
    with_open = Service.objects.filter(findings__closed_at__isnull=True)
    return (recent | with_open).distinct().select_related("source")
