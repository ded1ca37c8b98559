"""What we watch (Prometheus sources, services, pools) and what we saw (samples, runs)."""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from poolboard.lib import pools as poolmath
from poolboard.lib import promql
from poolboard.lib.presets import BUILTIN_PRESETS, NAME_REGEX_RE, Preset
from poolboard.sources.prometheus import PrometheusClient, PrometheusError

# The canonical fields as float columns, shared by Pool (latest values) and PoolSample.
CANONICAL_FIELDS = poolmath.FIELDS


def _validate_window(value: str) -> None:
    try:
        promql.check_duration(value)
    except promql.PromQLError as exc:
        raise ValidationError(str(exc)) from None


def _validate_label_name(value: str) -> None:
    if value:
        try:
            promql.check_label_name(value)
        except promql.PromQLError as exc:
            raise ValidationError(str(exc)) from None


def _validate_base_url(value: str) -> None:
    """http(s)://host[:port][/prefix]; single-label hosts (http://prometheus:9090) are fine."""
    parts = urlsplit(value or "")
    if parts.username is not None or parts.password is not None:
        # It would be stored in clear, exported by exportinventory and shown in the admin.
        raise ValidationError(
            "Remove the user:password@ part: credentials in the URL would be stored and shown in clear. "
            "Give a bearer token by the name of the environment variable holding it (bearer token env)."
        )
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValidationError("Enter a base URL such as http://prometheus:9090 (http or https, no query).")
    try:
        _ = parts.port  # reading it raises ValueError for a port out of range
    except ValueError:
        raise ValidationError("The port must be a number from 1 to 65535.") from None


# What a shell accepts as a variable name (POSIX): the secret itself never matches.
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def validate_env_name(value: str) -> None:
    """Fields that name an environment variable holding a secret (sources, databases)."""
    if value and not ENV_NAME_RE.match(value):
        raise ValidationError("Give the name of an environment variable (letters, digits, _), not the secret itself.")


class PrometheusSource(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    url = models.CharField(
        max_length=200, validators=[_validate_base_url], help_text="Base URL, e.g. http://prometheus:9090 (no /api/v1)."
    )
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
        validators=[validate_env_name],
        help_text="Name of an environment variable holding a bearer token (the token itself is never stored).",
    )
    presets = models.JSONField(
        default=list,
        blank=True,
        help_text="Preset names to read from this source. Leave empty to read the presets discovery found.",
    )
    service_label = models.CharField(
        max_length=100,
        blank=True,
        validators=[_validate_label_name],
        help_text="Label that names the service for every preset of this source (default: each preset's, usually job).",
    )
    # Written by discovery (fleet.discovery), read by collection when `presets` is empty.
    discovered_presets = models.JSONField(default=list, blank=True)
    discovered_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not isinstance(self.presets, list) or not all(isinstance(n, str) for n in self.presets):
            raise ValidationError({"presets": "Give a list of preset names."})
        known = known_preset_names()
        unknown = [name for name in self.presets if name not in known]
        if unknown:
            raise ValidationError({"presets": f"Unknown preset(s): {', '.join(unknown)}. Known: {', '.join(known)}."})

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

    def preset_names(self) -> list[str]:
        """The configured presets, else the ones discovery found."""
        return list(self.presets or self.discovered_presets or [])

    def preset_objects(self) -> list[Preset]:
        """This source's presets, built-in then custom (one query), with its service label."""
        return [p.with_service_label(self.service_label) for p in resolve_presets(self.preset_names())]

    def stale_since(self, now: datetime) -> datetime | None:
        """When the data from this source stopped being fresh, or None while it is fresh."""
        if self.last_success_at is None:
            return None
        if self.last_error_at and self.last_error_at > self.last_success_at:
            return self.last_success_at
        if now - self.last_success_at > stale_after():
            return self.last_success_at
        return None


def known_preset_names() -> list[str]:
    return [*BUILTIN_PRESETS, *CustomPreset.objects.order_by("name").values_list("name", flat=True)]


def get_preset(name: str) -> Preset | None:
    """A preset by name: built-in first, then custom (admin-edited)."""
    if name in BUILTIN_PRESETS:
        return BUILTIN_PRESETS[name]
    custom = CustomPreset.objects.filter(name=name).first()
    return custom.to_preset() if custom else None


def resolve_presets(names: list[str]) -> list[Preset]:
    """Presets for `names` in order, unknown names skipped; one query for all the custom ones."""
    customs = {c.name: c for c in CustomPreset.objects.filter(name__in=[n for n in names if n not in BUILTIN_PRESETS])}
    out: list[Preset] = []
    for name in names:
        if name in BUILTIN_PRESETS:
            out.append(BUILTIN_PRESETS[name])
        elif name in customs:
            out.append(customs[name].to_preset())
    return out


def all_presets() -> dict[str, Preset]:
    """Every preset discovery may look for: built-in, then custom by name."""
    presets = dict(BUILTIN_PRESETS)
    for custom in CustomPreset.objects.order_by("name"):
        presets[custom.name] = custom.to_preset()
    return presets


class CustomPreset(models.Model):
    """A preset edited in the admin: one PromQL template per canonical field it gives.

    Saving validates every template against `source`: it is rendered (placeholders,
    label names) and run as an instant query; Prometheus' syntax (400) or execution
    (422) error blocks saving and is shown on that field.
    """

    name = models.SlugField(max_length=100, unique=True)
    title = models.CharField(max_length=200, blank=True)
    source = models.ForeignKey(
        PrometheusSource,
        on_delete=models.PROTECT,
        related_name="custom_presets",
        help_text="The Prometheus the templates are checked against when saved.",
    )
    marker = models.CharField(
        max_length=300, help_text="Metric name (or name regex) whose presence means a service exports this dialect."
    )
    service_label = models.CharField(max_length=100, default="job", validators=[_validate_label_name])
    instance_label = models.CharField(max_length=100, default="instance", validators=[_validate_label_name])
    pool_label = models.CharField(max_length=100, blank=True, validators=[_validate_label_name])
    notes = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now)

    # One template per canonical field; blank = the preset cannot give it (absent, never 0).
    max_query = models.TextField("max", blank=True)
    min_query = models.TextField("min", blank=True)
    in_use_query = models.TextField("in use", blank=True)
    idle_query = models.TextField("idle", blank=True)
    pending_query = models.TextField("pending", blank=True)
    overflow_query = models.TextField("overflow", blank=True)
    timeouts_query = models.TextField("timeouts", blank=True)
    acquisitions_query = models.TextField("acquisitions", blank=True)
    acquire_s_query = models.TextField("acquire (s)", blank=True)
    hold_s_query = models.TextField("hold (s)", blank=True)
    conns_opened_query = models.TextField("connections opened", blank=True)
    conns_closed_query = models.TextField("connections closed", blank=True)

    # Set False to skip the round trip to Prometheus (inventory import of a whole file).
    check_against_source = True

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def queries(self) -> dict[str, str]:
        return {f: getattr(self, f"{f}_query").strip() for f in CANONICAL_FIELDS if getattr(self, f"{f}_query").strip()}

    def to_preset(self) -> Preset:
        return Preset(
            name=self.name,
            title=self.title or self.name,
            marker=self.marker,
            queries=self.queries(),
            pool_label=self.pool_label or None,
            service_label=self.service_label or "job",
            instance_label=self.instance_label or "instance",
            notes={"preset": self.notes} if self.notes else {},
            builtin=False,
        )

    def clean(self) -> None:
        """1. Local checks: name, marker, labels, every template renders. 2. Run each against the source."""
        errors: dict[str, str] = {}
        if self.name in BUILTIN_PRESETS:
            errors["name"] = f"{self.name} is a built-in preset; choose another name."
        if not NAME_REGEX_RE.match(self.marker or ""):
            errors["marker"] = "Give a metric name or a regex of metric names (letters, digits, _ : | ( ) ? * + . [ ])."
        else:
            try:
                re.compile(self.marker)
            except re.error as exc:
                errors["marker"] = f"Not a valid regex: {exc}."
        queries = self.queries()
        if not queries:
            errors["in_use_query"] = "Give at least one template (in use, usually)."
        identity = [x for x in (self.service_label or "job", self.instance_label or "instance", self.pool_label) if x]
        rendered: dict[str, str] = {}
        window = self.source.rate_window if self.source_id else "5m"
        for canonical_field, template in queries.items():
            try:
                rendered[canonical_field] = promql.render(template, by=identity, window=window)
            except promql.PromQLError as exc:
                errors[f"{canonical_field}_query"] = str(exc)
        if errors:
            raise ValidationError(errors)
        if self.check_against_source and self.source_id:
            self.check_templates(rendered)

    def check_templates(self, rendered: dict[str, str]) -> None:
        """Run each rendered template as an instant query; Prometheus' refusal goes on its field."""
        errors: dict[str, str] = {}
        with self.source.client() as client:
            for canonical_field, query in rendered.items():
                try:
                    client.instant(query)
                except PrometheusError as exc:
                    if exc.kind == "rejected":
                        errors[f"{canonical_field}_query"] = exc.message
                    else:
                        raise ValidationError(
                            f"Cannot check the templates against {self.source.name}: {exc.message}"
                        ) from None
        if errors:
            raise ValidationError(errors)


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
    # Sizing (poolboard.sizing): what the budget must allow for, where the exporter cannot tell.
    server = models.ForeignKey(
        "databases.MonitoredServer", null=True, blank=True, on_delete=models.SET_NULL, related_name="pinned_services",
        help_text="The PostgreSQL server its pools connect to. Blank: learned from the snapshots (where its sessions are).",
    )
    datname = models.CharField(
        "database", max_length=200, blank=True, help_text="The database on that server. Blank: learned from the snapshots."
    )
    pool_overflow = models.PositiveIntegerField(
        "overflow", default=0,
        help_text="Connections each pool may open above the max its exporter reports (SQLAlchemy max_overflow).",
    )
    replicas = models.PositiveIntegerField(
        null=True, blank=True, help_text="Configured instance count. Blank: the most seen at once in the last 24 h."
    )
    replicas_max = models.PositiveIntegerField(
        "autoscaler max", null=True, blank=True,
        help_text="The autoscaler's maximum instances; wins over the count: scale-out is when budgets break.",
    )
    pooler = models.CharField(
        "PgBouncer", max_length=200, blank=True,
        help_text="Name of the PgBouncer its pools go through (services naming the same one share it). Blank: direct.",
    )
    pooler_pool_size = models.PositiveIntegerField(
        "PgBouncer default_pool_size", null=True, blank=True,
        help_text="Server connections PgBouncer opens per user/database pair (+ reserve_pool_size). Blank: 20.",
    )
    pooler_max_db_connections = models.PositiveIntegerField(
        "PgBouncer max_db_connections", null=True, blank=True, help_text="Blank or 0: unlimited."
    )
    pooler_instances = models.PositiveIntegerField(
        "PgBouncer instances", default=1, validators=[MinValueValidator(1)]
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
        preset = get_preset(self.preset)
        return preset.with_service_label(self.source.service_label) if preset else None

    def summary(self, now: datetime, pools=None, findings=None) -> poolmath.ServiceSummary:
        """This service's row: its pools added up, led by its open diagnosis findings.

        The overview, the service page and the API all take status and reason from here.
        `pools` ((values, sampled_at) pairs) and `findings` (open Finding rows) may be
        given by a caller that read them for many services at once.
        """
        # diagnosis.models imports this module: import it here, not at the top.
        from poolboard.diagnosis.models import Finding

        if pools is None:
            pools = [(p.values(), p.sampled_at) for p in self.pools.all()]
        if findings is None:
            findings = Finding.objects.open().filter(service=self)
        verdicts = [f.verdict() for f in sorted(findings, key=Finding.rank)]
        return poolmath.summarize_service(pools, now, stale_after().total_seconds(), verdicts)

    def stale_since_at(self, now: datetime, summary: poolmath.ServiceSummary | None = None) -> datetime | None:
        """The one answer to "is this service's data stale, since when" (None while fresh).

        Stale when its series vanished from Prometheus, when its source stopped answering,
        or when its newest sample is older than the stale threshold — whichever began first.
        """
        candidates = [self.stale_since, self.source.stale_since(now)]
        newest = summary.last_sample if summary is not None else max(
            (p.sampled_at for p in self.pools.all() if p.sampled_at), default=None
        )
        if newest is not None and now - newest > stale_after():
            candidates.append(newest)
        present = [c for c in candidates if c is not None]
        return min(present) if present else None


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
    # Connections checked out per rate window (the throughput signal), where the exporter counts them.
    acquisitions = models.FloatField(null=True, blank=True)
    acquire_s = models.FloatField(null=True, blank=True)
    hold_s = models.FloatField(null=True, blank=True)
    # Physical connections opened / closed per rate window (counts, not timestamps).
    conns_opened = models.FloatField(null=True, blank=True)
    conns_closed = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["service", "instance", "name"], name="fleet_pool_identity")]
        ordering = ["service__name", "instance", "name"]

    def __str__(self) -> str:
        return f"{self.service.name} {self.instance} {self.name}"

    def values(self) -> dict[str, float | None]:
        return {f: getattr(self, f) for f in CANONICAL_FIELDS}

    def status(self, now: datetime) -> poolmath.PoolStatus:
        return poolmath.pool_status(self.values(), self.sampled_at, now, stale_after().total_seconds())

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
    acquisitions = models.FloatField(null=True)
    acquire_s = models.FloatField(null=True)
    hold_s = models.FloatField(null=True)
    conns_opened = models.FloatField(null=True)
    conns_closed = models.FloatField(null=True)

    class Meta:
        managed = False
        db_table = "fleet_poolsample"

    def __str__(self) -> str:
        return f"pool {self.pool_id} at {self.ts:%Y-%m-%d %H:%M:%S}"
