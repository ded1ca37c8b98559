"""What we watch (Prometheus sources, services, pools) and what we saw (samples, runs)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from poolboard.lib import pools as poolmath
from poolboard.lib import promql
from poolboard.lib.presets import BUILTIN_PRESETS, Preset
from poolboard.sources.prometheus import PrometheusClient

# The canonical fields as float columns, shared by Pool (latest values) and PoolSample.
CANONICAL_FIELDS = poolmath.FIELDS


def _validate_window(value: str) -> None:
    try:
        promql.check_duration(value)
    except promql.PromQLError as exc:
        raise ValidationError(str(exc)) from None


def _validate_env_name(value: str) -> None:
    if value and not value.replace("_", "").isalnum():
        raise ValidationError("Give the name of an environment variable (letters, digits, _), not the secret itself.")


class PrometheusSource(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    url = models.URLField(help_text="Base URL, e.g. http://prometheus:9090 (no /api/v1).")
    enabled = models.BooleanField(default=True)
    timeout_s = models.FloatField(default=10.0, help_text="HTTP timeout for every query, in seconds.")
    rate_window = models.CharField(
        max_length=20,
        default="5m",
        validators=[_validate_window],
        help_text="Window for rate()/increase(); at least 4x the scrape interval.",
    )
    bearer_token_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[_validate_env_name],
        help_text="Name of an environment variable holding a bearer token (the token itself is never stored).",
    )
    presets = models.JSONField(
        default=list,
        blank=True,
        help_text="Preset names to read from this source. Services are created from the series they return.",
    )
    created = models.DateTimeField(default=timezone.now)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        unknown = [name for name in self.presets or [] if name not in BUILTIN_PRESETS]
        if unknown:
            raise ValidationError({"presets": f"Unknown preset(s): {', '.join(unknown)}. Known: {', '.join(BUILTIN_PRESETS)}."})

    def client(self) -> PrometheusClient:
        headers = {}
        if self.bearer_token_env:
            token = os.environ.get(self.bearer_token_env, "")
            if token:
                headers["Authorization"] = f"Bearer {token}"
        return PrometheusClient(
            self.url,
            timeout=min(self.timeout_s, float(settings.PROMETHEUS_TIMEOUT)),
            headers=headers,
            max_series=settings.PROMETHEUS_MAX_SERIES,
        )

    def preset_objects(self) -> list[Preset]:
        return [BUILTIN_PRESETS[name] for name in self.presets or [] if name in BUILTIN_PRESETS]

    def stale_since(self, now: datetime) -> datetime | None:
        """When the data from this source stopped being fresh, or None while it is fresh."""
        if self.last_success_at is None:
            return None
        if self.last_error_at and self.last_error_at > self.last_success_at:
            return self.last_success_at
        if now - self.last_success_at > stale_after():
            return self.last_success_at
        return None


def stale_after() -> timedelta:
    return timedelta(seconds=settings.COLLECT_INTERVAL * settings.STALE_AFTER_TICKS)


class ServiceQuerySet(models.QuerySet):
    def for_overview(self):
        # Two queries whatever the fleet size: services (+source) and their pools.
        return self.select_related("source").prefetch_related(
            models.Prefetch("pools", queryset=Pool.objects.order_by("instance", "name"))
        )


class Service(models.Model):
    name = models.CharField(max_length=200, unique=True)
    source = models.ForeignKey(PrometheusSource, on_delete=models.PROTECT, related_name="services")
    preset = models.CharField(max_length=100)
    workers_per_instance = models.PositiveIntegerField(
        default=1, help_text="Processes per instance that each hold their own pool (for the connection budget)."
    )
    created = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # Set when the service's series vanish from Prometheus; history is kept.
    stale_since = models.DateTimeField(null=True, blank=True)

    objects = ServiceQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def preset_object(self) -> Preset | None:
        return BUILTIN_PRESETS.get(self.preset)


class Pool(models.Model):
    """One (service, instance, pool), with its newest canonical values.

    Keeping the newest values on this row lets the overview read one table instead
    of searching the partitioned samples for each pool's latest row.
    """

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="pools")
    instance = models.CharField(max_length=300)
    name = models.CharField(max_length=300)
    first_seen_at = models.DateTimeField(default=timezone.now)
    sampled_at = models.DateTimeField(null=True, blank=True)

    max = models.FloatField(null=True, blank=True)
    min = models.FloatField(null=True, blank=True)
    in_use = models.FloatField(null=True, blank=True)
    idle = models.FloatField(null=True, blank=True)
    pending = models.FloatField(null=True, blank=True)
    overflow = models.FloatField(null=True, blank=True)
    timeouts = models.FloatField(null=True, blank=True)
    acquire_s = models.FloatField(null=True, blank=True)
    hold_s = models.FloatField(null=True, blank=True)
    created = models.FloatField(null=True, blank=True)
    closed = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["service", "instance", "name"], name="fleet_pool_identity")]
        ordering = ["service__name", "instance", "name"]

    def __str__(self) -> str:
        return f"{self.service.name} {self.instance} {self.name}"

    def values(self) -> dict[str, float | None]:
        return {f: getattr(self, f) for f in CANONICAL_FIELDS}

    def status(self, now: datetime) -> poolmath.PoolStatus:
        sampled = self.sampled_at.timestamp() if self.sampled_at else None
        return poolmath.pool_status(self.values(), sampled, now.timestamp(), stale_after().total_seconds())

    @property
    def utilization(self) -> float | None:
        return poolmath.utilization(self.in_use, self.max)


class CollectionRun(models.Model):
    """One collection of one source for one time slot.

    (source, slot) is unique: a task delivered twice, or two beats, collect a slot once.
    """

    RUNNING, OK, FAILED = "running", "ok", "failed"
    STATUS_CHOICES = [(RUNNING, "running"), (OK, "ok"), (FAILED, "failed")]

    source = models.ForeignKey(PrometheusSource, on_delete=models.CASCADE, related_name="runs")
    slot = models.BigIntegerField(help_text="floor(epoch seconds / collect interval)")
    started = models.DateTimeField(default=timezone.now)
    finished = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=RUNNING)
    error = models.TextField(blank=True)
    queries = models.PositiveIntegerField(default=0)
    samples = models.PositiveIntegerField(default=0)
    duration_s = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "slot"], name="fleet_run_once_per_slot")]
        indexes = [
            # /metrics and the source admin read each source's newest runs.
            models.Index(fields=["source", "-started"], name="fleet_run_source_recent"),
        ]
        ordering = ["-started"]

    def __str__(self) -> str:
        return f"{self.source.name} slot {self.slot} ({self.status})"


class PoolSample(models.Model):
    """Raw samples: one row per pool per tick.

    The table is created by migration SQL as PARTITION BY RANGE (ts), one partition per
    day, so retention drops whole partitions instead of DELETE + VACUUM; BRIN on ts.
    Rows are written with COPY, never through the ORM.
    """

    pk = models.CompositePrimaryKey("pool_id", "ts")
    pool = models.ForeignKey(Pool, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    ts = models.DateTimeField()
    max = models.FloatField(null=True)
    min = models.FloatField(null=True)
    in_use = models.FloatField(null=True)
    idle = models.FloatField(null=True)
    pending = models.FloatField(null=True)
    overflow = models.FloatField(null=True)
    timeouts = models.FloatField(null=True)
    acquire_s = models.FloatField(null=True)
    hold_s = models.FloatField(null=True)
    created = models.FloatField(null=True)
    closed = models.FloatField(null=True)

    class Meta:
        managed = False
        db_table = "fleet_poolsample"
