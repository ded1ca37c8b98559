"""Builders for the alert tests: rules, fleets whose pools were sampled at a given instant."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from poolboard.alerts.models import AlertRule
from poolboard.fleet.models import Pool, PrometheusSource, Service
from poolboard.notify.models import Channel

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def rule(name: str = "PoolSaturated", signal: str = "utilization", threshold: float = 90.0, *, channels=(), **fields) -> AlertRule:
    fields.setdefault("comparator", ">")
    created = AlertRule.objects.create(name=name, signal=signal, threshold=threshold, **fields)
    created.full_clean()
    if channels:
        created.channels.set(channels)
    return created


def only_these_rules() -> None:
    """The shipped default rules are removed (tests/alerts/test_defaults.py checks them) so a test sees only its own."""
    AlertRule.objects.all().delete()


def channel(name: str = "hook", kind: str = "webhook") -> Channel:
    config = {"email": {"to": ["oncall@example.org"]}, "webhook": {"url": "http://127.0.0.1:9/"}}[kind]
    return Channel.objects.create(name=name, kind=kind, settings=config, group_wait_s=0, group_interval_s=0)


def source(name: str = "main", at: datetime = T0) -> PrometheusSource:
    return PrometheusSource.objects.create(name=name, url="http://127.0.0.1:9", presets=["db_pool"], last_success_at=at)


def fleet(src: PrometheusSource, count: int, *, prefix: str = "svc", at: datetime = T0, **values) -> list[Service]:
    """`count` services of one pool each, sampled at `at` with `values`."""
    services = Service.objects.bulk_create(
        Service(name=f"{prefix}-{i:04d}", source=src, preset="db_pool", last_seen_at=at) for i in range(count)
    )
    Pool.objects.bulk_create(Pool(service=s, instance="10.0.0.1:8080", name="main", sampled_at=at, **values) for s in services)
    return services


def sample(services, at: datetime, **values) -> None:
    """Every pool of `services` read again at `at` (a collection tick), the source answering."""
    Pool.objects.filter(service__in=services).update(sampled_at=at, **values)
    PrometheusSource.objects.filter(services__in=services).update(last_success_at=at)


def ticks(start: datetime, seconds: float, every: float = 15.0):
    t = 0.0
    while t <= seconds:
        yield start + timedelta(seconds=t)
        t += every
