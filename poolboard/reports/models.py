"""Weekly capacity reports (stored once, never edited) and who receives them.

A Report is the numbers of one ISO week as JSON plus the versions of what they were computed
from, so next month's page of this week says what this week's email said. Regenerating a
week (`manage.py report --week`) adds a new version; the stored one is never updated.

The beat claims each period once with a compare-and-set on ReportSchedule (healthchecks'
"sort of optimistic lock"), and each subscription's next send time the same way, so two
racing workers make one report and one email.
"""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.db.models import Max, Q
from django.utils import timezone

from poolboard.lib import capacity

UNSUBSCRIBE_SALT = "poolboard.reports.unsubscribe"
WEEKDAYS = [(0, "Monday"), (1, "Tuesday"), (2, "Wednesday"), (3, "Thursday"), (4, "Friday"), (5, "Saturday"),
            (6, "Sunday")]


def report_time_zone() -> str:
    return getattr(settings, "REPORT_TIME_ZONE", None) or settings.TIME_ZONE


class ImmutableError(Exception):
    pass


class ReportQuerySet(models.QuerySet):
    def newest_versions(self):
        """One row per week, its newest version, newest week first."""
        return self.order_by("-period_start", "week", "-version").distinct("period_start", "week")

    def of_week(self, week: str, version: int | None = None):
        rows = self.filter(week=week)
        if version is not None:
            return rows.filter(version=version).first()
        return rows.order_by("-version").first()


class Report(models.Model):
    week = models.CharField(max_length=8, help_text="ISO week, e.g. 2026-W48")
    version = models.PositiveIntegerField(default=1)
    time_zone = models.CharField(max_length=64)
    period_start = models.DateTimeField(help_text="Monday 00:00 local, in UTC")
    period_end = models.DateTimeField(help_text="the next Monday 00:00 local, in UTC (excluded)")
    created = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150, help_text="beat, or who ran manage.py report")
    numbers = models.JSONField(help_text="everything the page, the PDF and the email show")
    inputs = models.JSONField(default=dict, help_text="versions of the data and code the numbers came from")
    demo = models.BooleanField(default=False, help_text="built from seeddemohistory's demo data")

    objects = ReportQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["week", "version"], name="report_week_version")]
        ordering = ["-period_start", "-version"]

    def __str__(self) -> str:
        return f"{self.week} v{self.version}"

    def save(self, *args, **kwargs):
        # Stored once: a report someone quoted must read the same next month.
        if not self._state.adding:
            raise ImmutableError("A stored report is never edited: regenerate the week for a new version.")
        super().save(*args, **kwargs)

    @property
    def local_start(self) -> datetime:
        return self.period_start.astimezone(ZoneInfo(self.time_zone))

    @property
    def local_end(self) -> datetime:
        return self.period_end.astimezone(ZoneInfo(self.time_zone))

    @property
    def period(self) -> capacity.Period:
        return capacity.parse_week(self.week, self.time_zone)

    @classmethod
    def next_version(cls, week: str) -> int:
        return (cls.objects.filter(week=week).aggregate(v=Max("version"))["v"] or 0) + 1


class ReportSchedule(models.Model):
    """One row: the start of the newest period the beat has claimed."""

    last_period_start = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "report schedule"

    def __str__(self) -> str:
        return f"reports claimed up to {self.last_period_start}"

    @classmethod
    def claim(cls, period: capacity.Period) -> bool:
        """Move the claim to `period` if nobody has: True for exactly one caller per period.

        The UPDATE's WHERE is re-checked after a concurrent UPDATE commits (READ COMMITTED),
        so the loser sees the new value and updates nothing.
        """
        cls.objects.get_or_create(pk=1)
        claimed = (
            cls.objects.filter(pk=1)
            .filter(Q(last_period_start__isnull=True) | Q(last_period_start__lt=period.start))
            .update(last_period_start=period.start)
        )
        return claimed == 1


def validate_time_zone(value: str) -> None:
    try:
        capacity.zone(value)
    except capacity.PeriodError as exc:
        raise ValidationError(str(exc)) from None


def validate_names(value) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValidationError('Give a list of names, e.g. ["checkout", "search"], or [] for all.')


class SubscriptionQuerySet(models.QuerySet):
    def due(self, now: datetime):
        return self.filter(active=True, next_send_at__lte=now)


class Subscription(models.Model):
    """Who gets the weekly report by email, when (weekday and hour in their zone), about what.

    A user subscribes on their profile page; staff may subscribe a team address (no user)
    in the admin. Empty `services` / `databases` mean all of them.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="report_subscriptions")
    email = models.EmailField(blank=True, help_text="a team address; leave empty to use the user's email")
    active = models.BooleanField(default=True)
    weekday = models.PositiveSmallIntegerField(choices=WEEKDAYS, default=0)
    hour = models.PositiveSmallIntegerField(default=9, help_text="0–23, in the time zone below")
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    services = models.JSONField(default=list, blank=True, validators=[validate_names],
                                help_text="service names to include; empty: all")
    databases = models.JSONField(default=list, blank=True, validators=[validate_names],
                                 help_text="monitored server names to include; empty: all")
    next_send_at = models.DateTimeField(null=True, blank=True)
    last_sent_week = models.CharField(max_length=8, blank=True)
    created = models.DateTimeField(default=timezone.now)

    objects = SubscriptionQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(hour__lte=23), name="subscription_hour_0_23"),
            models.CheckConstraint(condition=~Q(user=None) | ~Q(email=""), name="subscription_has_recipient"),
        ]

    def __str__(self) -> str:
        return f"{self.recipient} weekly ({self.get_weekday_display()} {self.hour:02d}:00 {self.time_zone})"

    def clean(self) -> None:
        if self.user_id is None and not self.email:
            raise ValidationError("Give a user or a team email address.")
        if self.email:
            validate_email(self.email)
        if not 0 <= (self.hour or 0) <= 23:
            raise ValidationError({"hour": "Give an hour from 0 to 23."})

    @property
    def recipient(self) -> str:
        return self.email or (self.user.email if self.user_id else "")

    def next_send_after(self, now: datetime, jitter_s: int | None = None) -> datetime:
        """The next chosen weekday and hour in the subscriber's zone after `now`, plus up to
        20 minutes of jitter so a thousand subscribers do not all render at 09:00:00."""
        tz = ZoneInfo(self.time_zone)
        local = now.astimezone(tz)
        day = local.date()
        if jitter_s is None:
            jitter_s = random.randrange(0, 1200)
        for _ in range(8):
            at = datetime.combine(day, time(self.hour), tzinfo=tz) + timedelta(seconds=jitter_s)
            if day.weekday() == self.weekday and at > local:
                return at.astimezone(ZoneInfo("UTC"))
            day += timedelta(days=1)
        raise AssertionError("a weekday recurs within 8 days")

    def claim_send(self, now: datetime) -> bool:
        """Advance next_send_at if it still holds what we read: True for exactly one worker."""
        upcoming = self.next_send_after(now)
        claimed = Subscription.objects.filter(pk=self.pk, next_send_at=self.next_send_at).update(next_send_at=upcoming)
        if claimed:
            self.next_send_at = upcoming
        return claimed == 1

    def unsubscribe_token(self) -> str:
        return signing.dumps({"s": self.pk}, salt=UNSUBSCRIBE_SALT, compress=True)

    @classmethod
    def from_unsubscribe_token(cls, token: str) -> Subscription | None:
        try:
            data = signing.loads(token, salt=UNSUBSCRIBE_SALT)
        except signing.BadSignature:
            return None
        return cls.objects.filter(pk=data.get("s")).first() if isinstance(data, dict) else None

    def includes_service(self, name: str) -> bool:
        return not self.services or name in self.services

    def includes_database(self, name: str) -> bool:
        return not self.databases or name in self.databases
