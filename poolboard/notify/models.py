"""Channels, the notification outbox and silences.

The outbox (Notification) is written in the same transaction as what it announces (an alert
transition, a weekly report) by poolboard.notify.outbox.enqueue, and delivered at least once by
poolboard.notify.dispatch: dispatchers claim rows with SELECT ... FOR UPDATE SKIP LOCKED and a
lease, so a dispatcher killed mid-send is replaced after the lease by another that sends the
same request again, with the same idempotency key.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.utils import timezone

from poolboard.databases.models import SecretError, read_secret
from poolboard.fleet.models import validate_env_name
from poolboard.lib import matchers as lib_matchers
from poolboard.lib import urlpolicy

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


def validate_secret_file(value: str) -> None:
    if value and not value.startswith("/"):
        raise ValidationError("Give an absolute path to a file holding the secret.")


def allowed_networks() -> list:
    return urlpolicy.parse_networks(list(getattr(settings, "NOTIFY_ALLOW_NETWORKS", [])))


class Channel(models.Model):
    """Where notifications go, and how alerts are grouped into requests (as an Alertmanager receiver + route)."""

    EMAIL, WEBHOOK, SLACK, PAGERDUTY = "email", "webhook", "slack", "pagerduty"
    KINDS = [(EMAIL, "Email"), (WEBHOOK, "Webhook (Alertmanager v4 JSON)"), (SLACK, "Slack incoming webhook"),
             (PAGERDUTY, "PagerDuty Events v2")]

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=KINDS)
    enabled = models.BooleanField(default=True)
    settings = models.JSONField(
        default=dict, blank=True,
        help_text='Per kind. email: {"to": ["oncall@example.org"]}; webhook: {"url": "https://...", "max_alerts": 0 (no limit)}; '
        'pagerduty: {"url": "..."} (optional, default the PagerDuty Events v2 endpoint); slack: {} (the URL is the secret).',
    )
    secret_env = models.CharField(
        "secret environment variable", max_length=100, blank=True, validators=[validate_env_name],
        help_text="Name of an environment variable holding the secret: the Slack webhook URL, the PagerDuty routing key "
        "or the webhook's bearer token (never stored here).",
    )
    secret_file = models.CharField(max_length=500, blank=True, validators=[validate_secret_file],
                                   help_text="Or: absolute path of a file holding the secret.")
    group_by = models.JSONField(
        default=list, blank=True,
        help_text='Labels whose values form a group, as Alertmanager\'s group_by: e.g. ["alertname", "service"]. '
        'Empty: ["alertname"].',
    )
    group_wait_s = models.PositiveIntegerField("group wait (s)", default=30,
                                               help_text="How long a new group waits for more alerts before its first notification.")
    group_interval_s = models.PositiveIntegerField("group interval (s)", default=300,
                                                   help_text="Least time between two notifications of one group.")
    repeat_interval_s = models.PositiveIntegerField("repeat interval (s)", default=4 * 3600,
                                                    help_text="A group still firing is notified again after this long.")
    send_resolved = models.BooleanField(default=True, help_text="Also notify when alerts resolve.")

    created = models.DateTimeField(default=timezone.now)
    last_ok_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        config = self.settings if isinstance(self.settings, dict) else None
        if config is None:
            errors["settings"] = ["Give a JSON object, e.g. {}."]
            config = {}
        if self.secret_env and self.secret_file:
            errors["secret_file"] = ["Give the secret as an environment variable or a file, not both."]
        has_secret = bool(self.secret_env or self.secret_file)
        if self.kind == self.EMAIL:
            to = config.get("to")
            # An empty list is allowed: the report channel's emails name their recipients themselves.
            if not isinstance(to, list):
                errors.setdefault("settings", []).append('An email channel needs {"to": ["someone@example.org", ...]}.')
            else:
                for address in to:
                    try:
                        validate_email(address)
                    except ValidationError:
                        errors.setdefault("settings", []).append(f"{address!r} is not an email address.")
        elif self.kind == self.WEBHOOK:
            if not isinstance(config.get("url"), str) or not config.get("url"):
                errors.setdefault("settings", []).append('A webhook channel needs {"url": "https://..."}.')
            else:
                self._check_url(config["url"], "settings", errors)
            if not isinstance(config.get("max_alerts", 0), int) or config.get("max_alerts", 0) < 0:
                errors.setdefault("settings", []).append("max_alerts is a whole number, 0 for no limit.")
        elif self.kind == self.SLACK:
            if not has_secret:
                errors["secret_env"] = ["A Slack channel needs its incoming-webhook URL as a secret (environment variable or file)."]
        elif self.kind == self.PAGERDUTY:
            if not has_secret:
                errors["secret_env"] = ["A PagerDuty channel needs its routing key as a secret (environment variable or file)."]
            if "url" in config:
                self._check_url(str(config["url"]), "settings", errors)
        if not isinstance(self.group_by, list) or not all(isinstance(x, str) and lib_matchers.NAME_RE.match(x) for x in self.group_by):
            errors["group_by"] = ['Give a list of label names, e.g. ["alertname", "service"].']
        if has_secret and not errors.get("secret_env") and not errors.get("secret_file"):
            try:
                secret = self.secret()
            except SecretError as exc:
                errors.setdefault("secret_env" if self.secret_env else "secret_file", []).append(str(exc))
            else:
                if self.kind == self.SLACK and secret:
                    self._check_url(secret, "secret_env" if self.secret_env else "secret_file", errors, secret=True)
        if errors:
            raise ValidationError(errors)

    @staticmethod
    def _check_url(url: str, field: str, errors: dict, secret: bool = False) -> None:
        """Refuse at save time what the dispatcher would refuse at send time (it checks again: DNS changes)."""
        from poolboard.sources.http import guard

        what = "The URL in the secret" if secret else "The URL"
        try:
            guard(url, allowed_networks())
        except urlpolicy.AddressRefused as exc:
            errors.setdefault(field, []).append(f"{what} is refused: {exc}.")
        except ValueError as exc:  # a malformed NOTIFY_ALLOW_NETWORKS (the system check says so too)
            errors.setdefault(field, []).append(f"{what} cannot be checked: NOTIFY_ALLOW_NETWORKS: {exc}.")

    def secret(self) -> str | None:
        return read_secret(self.secret_env, self.secret_file, f"channel {self.name} secret")

    def effective_group_by(self) -> list[str]:
        return list(self.group_by) or ["alertname"]

    def group_labels(self, labels: dict) -> dict:
        return {name: str(labels.get(name, "")) for name in self.effective_group_by()}

    def group_key(self, labels: dict) -> str:
        """Alertmanager's groupKey shape: `{}:{alertname="x",service="y"}`, stable per (channel, group labels)."""
        from poolboard.lib.alertgroups import group_key

        return group_key(self.group_labels(labels))


class NotificationQuerySet(models.QuerySet):
    def waiting(self):
        return self.filter(state__in=[Notification.PENDING, Notification.SUPPRESSED])

    def due(self, now: datetime):
        """Waiting rows whose time has come, on enabled channels, not leased to a dispatcher."""
        return (
            self.waiting().filter(next_attempt_at__lte=now, channel__enabled=True)
            .filter(models.Q(lease_until__isnull=True) | models.Q(lease_until__lte=now))
        )


class Notification(models.Model):
    """One outbox row: one alert transition, one report or one test, for one channel.

    The idempotency key is the caller's (`<fingerprint>:<transition>` for alerts); unique per
    channel, it is the backstop that makes a second insert of the same transition impossible.
    `batch_key` is set when a dispatcher claims the row into a request; a retry or a re-send
    after an expired lease sends the same batch again under the same key.
    """

    ALERT, REPORT, TEST = "alert", "report", "test"
    KINDS = [(ALERT, "alert"), (REPORT, "report"), (TEST, "test")]
    PENDING, SENT, FAILED, SUPPRESSED, DROPPED = "pending", "sent", "failed", "suppressed", "dropped"
    STATES = [(PENDING, "pending"), (SENT, "sent"), (FAILED, "failed"), (SUPPRESSED, "suppressed (silenced)"),
              (DROPPED, "dropped (not to be sent)")]

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="notifications")
    idempotency_key = models.CharField(max_length=255)
    kind = models.CharField(max_length=10, choices=KINDS)
    payload = models.JSONField(default=dict)
    state = models.CharField(max_length=12, choices=STATES, default=PENDING)
    # Alerts only: which group the row belongs to and whose alert it is.
    group_key = models.CharField(max_length=500, blank=True)
    fingerprint = models.CharField(max_length=64, blank=True)
    created = models.DateTimeField()
    next_attempt_at = models.DateTimeField()
    deadline_at = models.DateTimeField(help_text="Retries stop after this.")
    attempts = models.PositiveIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    batch_key = models.CharField(max_length=255, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    suppressed_by = models.ForeignKey("Silence", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "idempotency_key"], name="notify_one_row_per_key_and_channel"),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="notify_due",
                         condition=models.Q(state__in=["pending", "suppressed"])),
            models.Index(fields=["channel", "group_key"], name="notify_group",
                         condition=models.Q(state__in=["pending", "suppressed"])),
            models.Index(fields=["batch_key"], name="notify_batch", condition=~models.Q(batch_key="")),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.idempotency_key} → {self.channel_id}"


class AlertGroup(models.Model):
    """What a channel's receiver last heard about one group: when, and which of its alerts are firing.

    Alertmanager's notification log, per (channel, group key): group_interval counts from
    last_sent_at, repeat_interval resends `firing`, and a resolved alert the receiver never
    heard firing is not announced.
    """

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="groups")
    group_key = models.CharField(max_length=500)
    group_labels = models.JSONField(default=dict)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    # {fingerprint: {"key": idempotency key of the row that announced it, "alert": its payload}}
    firing = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "group_key"], name="notify_one_group_state")]

    def __str__(self) -> str:
        return self.group_key


def validate_matchers(value) -> None:
    if not isinstance(value, list) or not value:
        raise ValidationError('Give at least one matcher, e.g. [{"name": "service", "value": "billing", "isRegex": false, "isEqual": true}].')
    for matcher in value:
        try:
            lib_matchers.validate(matcher)
        except lib_matchers.MatcherError as exc:
            raise ValidationError(str(exc)) from None


class SilenceQuerySet(models.QuerySet):
    def active(self, now: datetime):
        return self.filter(starts_at__lte=now, ends_at__gt=now)


class Silence(models.Model):
    """Mutes the alerts whose labels match every matcher, from starts_at to ends_at (Alertmanager's silence)."""

    matchers = models.JSONField(validators=[validate_matchers])
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField()
    created_by = models.CharField(max_length=150)
    comment = models.TextField()
    created = models.DateTimeField(default=timezone.now)

    objects = SilenceQuerySet.as_manager()

    class Meta:
        ordering = ["-ends_at"]

    def __str__(self) -> str:
        return ", ".join(lib_matchers.format_matcher(m) for m in self.matchers or [])

    def save(self, *args, **kwargs) -> None:
        super().save(*args, **kwargs)
        self.recheck_suppressed()

    def delete(self, *args, **kwargs):
        self.recheck_suppressed()
        return super().delete(*args, **kwargs)

    def clean(self) -> None:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "A silence must end after it starts."})

    def matches(self, labels: dict) -> bool:
        return lib_matchers.matches(self.matchers, labels)

    def is_active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def state(self, now: datetime) -> str:
        return "pending" if now < self.starts_at else "active" if now < self.ends_at else "expired"

    def recheck_suppressed(self) -> None:
        """Rows this silence held back are looked at again now: it may have been shortened or removed."""
        Notification.objects.filter(state=Notification.SUPPRESSED, suppressed_by=self).update(
            next_attempt_at=models.F("created")
        )
