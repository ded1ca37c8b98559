"""python manage.py report [--week 2026-W48] [--pdf FILE] [--email ADDR]

Builds a new version of one week's report (default: the last complete week) and stores it;
the stored versions are never changed. --pdf writes its PDF, --email queues its email to an
address through the outbox (at-least-once, like the subscribers' emails).
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from poolboard.lib import capacity
from poolboard.reports import build, email, pdf
from poolboard.reports.models import report_time_zone


class Command(BaseCommand):
    help = "Generate (or regenerate, as a new version) the weekly capacity report of one ISO week."

    def add_arguments(self, parser):
        parser.add_argument("--week", help="ISO week, e.g. 2026-W48 (default: the last complete week)")
        parser.add_argument("--pdf", metavar="FILE", help="also write the report's PDF to FILE")
        parser.add_argument("--email", metavar="ADDR", action="append", default=[],
                            help="also email it to ADDR (repeatable), through the notification outbox")
        parser.add_argument("--demo", action="store_true", help="mark the report as built from demo data")

    def handle(self, *args, week=None, pdf=None, email=None, demo=False, **options):
        now = timezone.now()
        tz = report_time_zone()
        try:
            period = capacity.parse_week(week, tz) if week else capacity.last_complete_period(now, tz)
        except capacity.PeriodError as exc:
            raise CommandError(str(exc)) from None
        if period.end > now:
            raise CommandError(f"{period.key} is not over yet (it ends {period.end:%Y-%m-%d %H:%M} UTC): "
                               "a report covers a complete week.")
        for address in email or []:
            try:
                validate_email(address)
            except Exception:
                raise CommandError(f"{address!r} is not an email address.") from None
        report = build.build(period, now, created_by="manage.py report", demo=demo)
        headline = report.numbers["headline"]
        self.stdout.write(
            f"{report.week} version {report.version}: {headline['services']} services, {headline['databases']} "
            f"databases, {len(headline['actions'])} things worth doing ({period.start:%Y-%m-%d %H:%M} to "
            f"{period.end:%Y-%m-%d %H:%M} UTC, {period.real_hours:.0f} h)"
        )
        if pdf:
            path = Path(pdf)
            path.write_bytes(_pdf(report))
            self.stdout.write(f"PDF written to {path}")
        if email:
            from poolboard.notify.outbox import enqueue

            payload = _payload(report, email)
            with transaction.atomic():
                row = enqueue(_channel(), f"report:{report.week}:v{report.version}:{','.join(email)}", "report",
                              payload, now)
            self.stdout.write(f"email to {', '.join(email)} queued" if row else "that email was already queued")


def _pdf(report) -> bytes:
    return pdf.render_pdf(report)


def _payload(report, addresses) -> dict:
    return email.render_payload(report, None, to=list(addresses))


def _channel():
    return email.report_channel()
