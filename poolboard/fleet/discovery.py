"""Discovery: which presets a Prometheus source has data for, and the services and pools they show.

Cost is fixed per source: one marker query for every candidate preset at once, then
one identity query per preset found, whatever the number of services.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from poolboard.lib.pools import PoolKey
from poolboard.lib.presets import Preset, choose_presets, marker_query
from poolboard.sources.prometheus import PrometheusError

from .models import Pool, PrometheusSource, Service, all_presets, resolve_presets

log = logging.getLogger(__name__)


@dataclass
class DiscoveryResult:
    source: str
    status: str  # ok | failed
    presets: list[str] = field(default_factory=list)  # presets with data, in preset order
    services: dict[str, str] = field(default_factory=dict)  # service -> preset
    new_services: list[str] = field(default_factory=list)
    stale_services: list[str] = field(default_factory=list)
    # Services another source already owns (service names are unique across sources).
    conflicts: list[str] = field(default_factory=list)
    pools: int = 0
    queries: int = 0
    error: str = ""

    def summary(self) -> str:
        if self.status == "failed":
            return f"{self.source}: discovery FAILED: {self.error}"
        parts = [
            f"{self.source}: {len(self.services)} services, {self.pools} pools",
            f"presets: {', '.join(self.presets) or 'none'}",
        ]
        if self.new_services:
            parts.append(f"new: {', '.join(self.new_services)}")
        if self.stale_services:
            parts.append(f"stale: {', '.join(self.stale_services)}")
        if self.conflicts:
            parts.append(f"owned by another source: {', '.join(self.conflicts)}")
        return "; ".join(parts)


def candidate_presets(source: PrometheusSource) -> dict[str, Preset]:
    """The presets discovery looks for: the source's own list when set, else every preset."""
    if source.presets:
        presets = {p.name: p for p in resolve_presets(source.presets)}
    else:
        presets = all_presets()
    return {name: p.with_service_label(source.service_label) for name, p in presets.items()}


def find(source: PrometheusSource) -> tuple[dict[str, str], dict[str, set[PoolKey]], int]:
    """Ask Prometheus. Returns (service -> preset, preset -> pool keys, queries). Raises PrometheusError.

    1. One query counts every marker's series by (__name__, service labels).
    2. Each service gets one preset; the more specific wins (choose_presets).
    3. For each preset chosen by some service, one identity query lists its pools.
    """
    presets = candidate_presets(source)
    if not presets:
        return {}, {}, 0
    found: dict[str, set[str]] = {}
    with source.client() as client:
        try:
            series = client.instant(
                marker_query(list(presets.values()), [p.service_label for p in presets.values()])
            )
        except PrometheusError as exc:
            raise PrometheusError(exc.kind, f"marker query: {exc.message}") from None
        queries = 1
        for item in series:
            name = item.labels.get("__name__", "")
            for preset in presets.values():
                service = item.labels.get(preset.service_label, "")
                if service and preset.marker_matches(name):
                    found.setdefault(service, set()).add(preset.name)
        chosen = choose_presets(found, presets)
        pools: dict[str, set[PoolKey]] = {}
        for name in dict.fromkeys(n for n in presets if n in chosen.values()):
            preset = presets[name]
            try:
                answer = client.instant(preset.identity_query())
            except PrometheusError as exc:
                raise PrometheusError(exc.kind, f"{name} pools: {exc.message}") from None
            queries += 1
            keys = {preset.key_for(s.labels) for s in answer}
            pools[name] = {k for k in keys if k is not None and chosen.get(k.service) == name}
    return chosen, pools, queries


def discover_source(source: PrometheusSource) -> DiscoveryResult:
    """Find the source's services and pools and write them down.

    In one transaction: create missing services and pools; refresh `last_seen_at` and
    clear `stale_since` of those found; mark the source's other services stale (never
    delete them: their history stays); remember the presets found, which collection
    reads when the source lists none.
    """
    result = DiscoveryResult(source=source.name, status="ok")
    try:
        chosen, pools, result.queries = find(source)
    except PrometheusError as exc:
        result.status, result.error = "failed", exc.message
        PrometheusSource.objects.filter(pk=source.pk).update(last_error_at=timezone.now(), last_error=exc.message)
        log.warning("discovery of %s failed: %s", source.name, exc.message)
        return result
    now = timezone.now()
    presets_found = [name for name in candidate_presets(source) if name in set(chosen.values())]
    with transaction.atomic():
        owned = {s.name: s for s in Service.objects.select_for_update().filter(source=source)}
        taken = set(Service.objects.exclude(source=source).filter(name__in=list(chosen)).values_list("name", flat=True))
        for name, preset_name in sorted(chosen.items()):
            if name in taken:
                result.conflicts.append(name)
                continue
            service = owned.get(name)
            if service is None:
                service = Service.objects.create(
                    name=name, source=source, preset=preset_name, last_seen_at=now, created=now
                )
                owned[name] = service
                result.new_services.append(name)
            else:
                updates = {"last_seen_at": now, "stale_since": None}
                if service.preset != preset_name and service.preset not in presets_found:
                    updates["preset"] = preset_name
                Service.objects.filter(pk=service.pk).update(**updates)
            result.services[name] = preset_name
        new_pools = [
            Pool(service=owned[key.service], instance=key.instance, name=key.pool, first_seen_at=now)
            for keys in pools.values()
            for key in sorted(keys)
            if key.service in owned and key.service not in taken
        ]
        Pool.objects.bulk_create(new_pools, ignore_conflicts=True, batch_size=1000)
        result.pools = len(new_pools)
        vanished = Service.objects.filter(source=source, stale_since__isnull=True).exclude(name__in=list(chosen))
        result.stale_services = sorted(vanished.values_list("name", flat=True))
        vanished.update(stale_since=now)
        PrometheusSource.objects.filter(pk=source.pk).update(discovered_presets=presets_found, discovered_at=now)
    result.presets = presets_found
    return result


def discover_all() -> list[DiscoveryResult]:
    return [discover_source(source) for source in PrometheusSource.objects.filter(enabled=True)]
