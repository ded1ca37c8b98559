"""Alert rules (edited in the admin and the inventory file), their instances and every transition.

An instance is one (rule, label fingerprint): one service, one database or one server the rule
selects. Its state changes only through `poolboard.alerts.transitions.apply` — one
compare-and-set UPDATE on (state, version) plus the transition row and its outbox rows, in one
transaction — so two evaluators racing on the same instance make one transition and one
notification per channel (reliability.md R2.1).
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from poolboard.lib import alerting

SIGNAL_CHOICES = [(s.name, s.label) for s in alerting.SIGNALS.values()]
COMPARATOR_CHOICES = [(c, c) for c in alerting.COMPARATORS]
SEVERITY_CHOICES = [("critical", "critical"), ("warning", "warning"), ("info", "info")]
NO_DATA_CHOICES = [
    (alerting.NO_DATA_RESOLVE, "resolve (as Prometheus: no series, no alert)"),
    (alerting.NO_DATA_KEEP, "keep the last state"),
    (alerting.NO_DATA_ALERT, "alert (no data is a problem)"),
]
STATE_CHOICES = [(s, s) for s in alerting.STATES]
# Prometheus' rule file accepts an alert name that is a valid metric name.
RULE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Labels poolboard sets itself: a rule label of the same name would change the instance identity.
RESERVED_LABELS = ("alertname", "service", "server", "database", "severity")
DATASOURCE_ALERTNAME = "PoolboardDatasourceError"
# The age signals read the monitored servers' open episodes, and an episode starts only past
# its server's own threshold (MonitoredServer.query_s / idle_in_transaction_s): below it the
# signal reads 0, so a lower rule threshold would silently act as the server's.
EPISODE_THRESHOLD = {"query_s": "query_s", "db_query_s": "query_s",
                     "idle_in_transaction_s": "idle_in_transaction_s",
                     "db_idle_in_transaction_s": "idle_in_transaction_s"}


def validate_rule_name(value: str) -> None:
    if not RULE_NAME_RE.match(value or ""):
        raise ValidationError("Letters, digits and _ only, not starting with a digit (e.g. PoolSaturated): "
                              "it becomes the alertname label and the Prometheus alert name.")


def check_label_map(value, what: str) -> dict[str, str]:
    """A JSON object of label name -> string value, or ValidationError saying what is wrong."""
    if not isinstance(value, dict):
        raise ValidationError(f'Give a JSON object of {what}, e.g. {{"team": "payments"}}.')
    problems = []
    for name, label_value in value.items():
        if not re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", str(name)):
            problems.append(f"{name!r} is not a label name (letters, digits, _).")
        elif not isinstance(label_value, str):
            problems.append(f"the value of {name} must be a string, not {label_value!r}.")
    if problems:
        raise ValidationError(problems)
    return value


class AlertRuleQuerySet(models.QuerySet):
    def enabled(self):
        return self.filter(enabled=True)

    def for_evaluation(self):
        """Enabled rules with their overrides and channels: three queries whatever their number."""
        return self.enabled().prefetch_related("overrides", "channels").order_by("pk")


class AlertRule(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[validate_rule_name])
    enabled = models.BooleanField(default=True)
    signal = models.CharField(max_length=40, choices=SIGNAL_CHOICES)
    finding_kind = models.CharField(
        max_length=20, blank=True, help_text="For the 'open diagnosis finding' signal: which kind (leak, stuck, ...)."
    )
    service_glob = models.CharField(
        "services", max_length=200, blank=True, help_text="Service name glob, e.g. billing-* (blank: every service)."
    )
    service_labels = models.JSONField(
        default=dict, blank=True,
        help_text='Services whose labels have these values, e.g. {"source": "prod", "preset": "hikaricp"}. '
        "A service's labels: service, source, preset.",
    )
    database_glob = models.CharField(
        "databases", max_length=200, blank=True,
        help_text="For per-database signals: database name glob (datname); for the budget: server name glob. Blank: all.",
    )
    comparator = models.CharField(max_length=2, choices=COMPARATOR_CHOICES, default=">")
    threshold = models.FloatField(help_text="In the signal's unit: % for utilization and budget, seconds for ages and times.")
    for_s = models.PositiveIntegerField(
        "for (s)", default=0, help_text="The condition must hold at every evaluation for this long before it fires."
    )
    keep_firing_for_s = models.PositiveIntegerField(
        "keep firing for (s)", default=0, help_text="A firing alert stays firing this long after the condition stops."
    )
    severity = models.CharField(max_length=10, choices=SEVERITY_CHOICES, default="warning")
    labels = models.JSONField(default=dict, blank=True, help_text='Extra labels, e.g. {"team": "payments"}.')
    summary = models.CharField(
        max_length=300, blank=True, help_text="Variables: {{ service }}, {{ database }}, {{ server }}, {{ value }}, "
        "{{ threshold }}, {{ rule }}, {{ severity }}, and for utilization and free connections {{ instance }} "
        "and {{ pool }} (the worst pool the value comes from)."
    )
    description = models.TextField(blank=True, help_text="Same variables as the summary.")
    no_data = models.CharField(
        "when there is no data", max_length=10, choices=NO_DATA_CHOICES, default=alerting.NO_DATA_RESOLVE,
        help_text="A source that fails or is stale is not 'no data': it changes nothing, and after "
        "ALERTS_DATASOURCE_FAILURES evaluations one PoolboardDatasourceError alert fires.",
    )
    channels = models.ManyToManyField("notify.Channel", blank=True, related_name="alert_rules")
    max_instances = models.PositiveIntegerField(
        default=100, help_text="More active instances than this is an error on the rule (nothing is sent), not a storm."
    )
    origin = models.TextField(blank=True, help_text="Where the default comes from (shipped rules cite their source).")
    created = models.DateTimeField(default=timezone.now)

    # Health, written by the evaluation.
    last_evaluated_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    failing_evaluations = models.PositiveIntegerField(
        default=0, editable=False, help_text="Consecutive evaluations whose data source failed or was stale."
    )
    evaluations_missed = models.PositiveIntegerField(
        default=0, editable=False,
        help_text="Collection ticks with no evaluation (worker or beat down): skipped, never replayed, counted here.",
    )

    objects = AlertRuleQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def signal_info(self) -> alerting.Signal | None:
        return alerting.SIGNALS.get(self.signal)

    @property
    def health(self) -> str:
        if self.last_evaluated_at is None:
            return "unknown"
        return "error" if self.last_error else "ok"

    def clean(self) -> None:
        from poolboard.diagnosis.models import KIND_CHOICES

        errors: dict[str, list[str]] = {}

        def add(field_name: str, message: str) -> None:
            errors.setdefault(field_name, []).append(message)

        kinds = [k for k, _ in KIND_CHOICES]
        if self.signal == "finding":
            if self.finding_kind not in kinds:
                add("finding_kind", f"Choose the finding kind: {', '.join(kinds)}.")
        elif self.finding_kind:
            add("finding_kind", "Only the 'open diagnosis finding' signal takes a finding kind; leave it blank.")
        info = self.signal_info
        if info is not None and info.scope != alerting.SERVICE and (self.service_glob or self.service_labels):
            add("service_glob", f"The {self.signal} signal is per {info.scope}: select with 'databases', not services.")
        for field_name in ("service_glob", "database_glob"):
            if any(ch in (getattr(self, field_name) or "") for ch in "[]"):
                add(field_name, "Only * and ? are wildcards here (no [...] classes): the exported Prometheus "
                                "rules must select exactly what poolboard does.")
        for field_name, value, what in (("service_labels", self.service_labels, "service labels"),
                                        ("labels", self.labels, "labels")):
            try:
                check_label_map(value, what)
            except ValidationError as exc:
                for message in exc.messages:
                    add(field_name, message)
        if isinstance(self.labels, dict):
            clash = sorted(set(self.labels) & set(RESERVED_LABELS))
            if clash:
                add("labels", f"{', '.join(clash)} {'is' if len(clash) == 1 else 'are'} set by poolboard; use another name.")
        for field_name in ("summary", "description"):
            for message in alerting.template_errors(getattr(self, field_name)):
                add(field_name, message)
        if self.threshold is not None and self.threshold != self.threshold:  # NaN
            add("threshold", "Give a number.")
        else:
            for message in self._episode_threshold_errors():
                add("threshold", message)
        if self.keep_firing_for_s and self.keep_firing_for_s > 7 * 86400:
            add("keep_firing_for_s", "At most 7 days.")
        if self.for_s and self.for_s > 7 * 86400:
            add("for_s", "At most 7 days.")
        if self.max_instances is not None and self.max_instances < 1:
            add("max_instances", "At least 1.")
        if errors:
            raise ValidationError(errors)

    def _episode_threshold_errors(self) -> list[str]:
        field_name = EPISODE_THRESHOLD.get(self.signal)
        if field_name is None or self.threshold is None or self.comparator not in (">", ">="):
            return []
        from poolboard.databases.models import MonitoredServer

        above = list(MonitoredServer.objects.enabled().filter(**{f"{field_name}__gt": self.threshold})
                     .order_by(f"-{field_name}", "name").values_list("name", field_name))
        if not above:
            return []
        what = "long-query" if field_name == "query_s" else "idle-in-transaction"
        starts = ", ".join(f"{name} starts at {seconds} s" for name, seconds in above[:3])
        return [f"Ages are tracked only past each server's {what} threshold ({starts}), so below it this rule "
                f"would act as > {above[0][1]} s: raise it to {above[0][1]} or lower the server's threshold."]

    def threshold_for(self, service_id: int | None, overrides: dict[int, float] | None = None) -> float:
        if overrides is None:
            overrides = {o.service_id: o.threshold for o in self.overrides.all()}
        return overrides.get(service_id, self.threshold) if service_id is not None else self.threshold

    def instance_labels(self, identity: dict[str, str]) -> dict[str, str]:
        """The instance's final label set (its identity): rule labels, alertname, severity, the subject."""
        return {**self.labels, "alertname": self.name, "severity": self.severity, **identity}

    def datasource_labels(self) -> dict[str, str]:
        return {"alertname": DATASOURCE_ALERTNAME, "rule": self.name, "severity": "warning"}


class RuleOverride(models.Model):
    """Another threshold for one service (the batch service that is always at 95 %)."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="overrides")
    service = models.ForeignKey("fleet.Service", on_delete=models.CASCADE, related_name="alert_overrides")
    threshold = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "service"], name="alerts_one_override_per_service")]
        ordering = ["rule", "service"]

    def __str__(self) -> str:
        return f"{self.rule} for {self.service}: {self.threshold:g}"

    def clean(self) -> None:
        if self.threshold is not None and self.threshold != self.threshold:
            raise ValidationError({"threshold": "Give a number."})
        if self.rule_id and self.rule.signal_info and self.rule.signal_info.scope != alerting.SERVICE:
            raise ValidationError({"service": f"The rule's signal ({self.rule.signal}) is not per service."})


class AlertInstanceQuerySet(models.QuerySet):
    def active(self):
        return self.exclude(state=alerting.INACTIVE)

    def firing(self):
        return self.filter(state=alerting.FIRING)


class AlertInstance(models.Model):
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="instances")
    fingerprint = models.CharField(max_length=16)
    labels = models.JSONField(default=dict)
    state = models.CharField(max_length=10, choices=STATE_CHOICES, default=alerting.INACTIVE)
    # Bumped by every transition: the compare-and-set's second half, and the transition's sequence.
    version = models.PositiveIntegerField(default=0)
    active_since = models.DateTimeField(null=True, blank=True)
    fired_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    keep_firing_since = models.DateTimeField(null=True, blank=True)
    value = models.FloatField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    summary = models.CharField(max_length=500, blank=True)
    service = models.ForeignKey("fleet.Service", null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    server = models.ForeignKey(
        "databases.MonitoredServer", null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    datname = models.CharField(max_length=200, blank=True)

    objects = AlertInstanceQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "fingerprint"], name="alerts_instance_identity")]
        indexes = [
            # The alerts page, the nav count and each evaluation read the instances not inactive.
            models.Index(fields=["state"], condition=~models.Q(state="inactive"), name="alerts_instance_active"),
            models.Index(fields=["service"], condition=~models.Q(state="inactive"), name="alerts_instance_service"),
        ]
        ordering = ["rule", "fingerprint"]

    def __str__(self) -> str:
        return f"{self.rule_id} {self.labels} ({self.state})"

    def lib_state(self) -> alerting.InstanceState:
        return alerting.InstanceState(
            state=self.state, active_since=self.active_since, fired_at=self.fired_at,
            resolved_at=self.resolved_at, keep_firing_since=self.keep_firing_since, value=self.value,
        )

    @property
    def subject(self) -> str:
        labels = self.labels or {}
        if labels.get("service"):
            return labels["service"]
        if labels.get("database"):
            return f"{labels['database']} on {labels.get('server', '?')}"
        return labels.get("server") or labels.get("rule") or ""


class AlertTransition(models.Model):
    """Append-only state history: one row per change of one instance (the alert pages and the backtest overlay)."""

    instance = models.ForeignKey(AlertInstance, on_delete=models.CASCADE, related_name="transitions")
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="transitions")
    seq = models.PositiveIntegerField(help_text="The instance's version after this transition.")
    at = models.DateTimeField()
    from_state = models.CharField(max_length=10, choices=STATE_CHOICES)
    to_state = models.CharField(max_length=10, choices=STATE_CHOICES)
    value = models.FloatField(null=True, blank=True)
    reason = models.CharField(max_length=30, blank=True, help_text="NoData, Error, ... when not the value itself.")

    class Meta:
        constraints = [
            # The backstop: one transition per (instance, version), whatever the evaluators do.
            models.UniqueConstraint(fields=["instance", "seq"], name="alerts_transition_once"),
        ]
        indexes = [models.Index(fields=["rule", "-at"], name="alerts_transition_rule")]
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.instance_id} {self.from_state} -> {self.to_state} at {self.at:%Y-%m-%d %H:%M:%S}"
