"""python manage.py rollup [--days N]: (re)compute rollups from the raw samples still kept.

The beat task only rolls up the last few buckets; this fills in history after an
upgrade, an outage of the worker, or a restore. Idempotent: safe to run any time.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from poolboard.history import rollup


class Command(BaseCommand):
    help = "Recompute 5-minute and 1-hour rollups of the last N days of raw samples (default: RAW_RETENTION)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=settings.RAW_RETENTION_DAYS)

    def handle(self, *args, days: int, **options) -> None:
        if days < 1:
            raise CommandError("--days must be at least 1")
        now = timezone.now()
        start = now - timedelta(days=days)
        # A day at a time keeps each statement's sort small.
        totals = {"5m": 0, "1h": 0}
        day = start
        while day < now:
            end = min(day + timedelta(days=1), now)
            totals["5m"] += rollup.rollup(rollup.RES_5M, day, end)
            totals["1h"] += rollup.rollup(rollup.RES_1H, day, end)
            day = end
        self.stdout.write(f"rolled up {days} day(s): {totals['5m']} 5-minute rows, {totals['1h']} 1-hour rows")
