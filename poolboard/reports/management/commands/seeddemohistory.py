"""python manage.py seeddemohistory [--weeks 2] [--base-port 9201]

DEMO DATA ONLY: writes made-up history for the demo fleet's services (poolboard.demo) for the
weeks before this one and builds last week's report, flagged as demo. `make demo` runs it;
it does nothing when last week already has a report. Never run it against a real fleet.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from poolboard.reports import demo_history


class Command(BaseCommand):
    help = "DEMO DATA: backfill a few weeks of the demo fleet's history and build last week's (demo) report."

    def add_arguments(self, parser):
        parser.add_argument("--weeks", type=int, default=demo_history.ROLLUP_WEEKS,
                            help="complete weeks of pool history to make up (the server's: always 6, for the forecast)")
        parser.add_argument("--base-port", type=int, default=9201, help="the demo exporters' first port (DEMO_BASE_PORT)")

    def handle(self, *args, weeks: int, base_port: int, **options):
        if not 1 <= weeks <= 12:
            raise CommandError("--weeks: give 1 to 12.")
        try:
            result = demo_history.seed(timezone.now(), weeks=weeks, base_port=base_port)
        except demo_history.DemoHistoryError as exc:
            raise CommandError(str(exc)) from None
        if not result["seeded"]:
            self.stdout.write(f"demo history: nothing to do ({result['reason']})")
            return
        self.stdout.write(
            f"DEMO DATA written: {result['rollups']} rollups, {result['snapshots']} snapshots, {result['episodes']} "
            f"episodes, {result['findings']} findings; demo report built for {', '.join(result['reports'])}, "
            f"its email queued to {result['emails']} subscriber(s) ({demo_history.DEMO_REPORT_ADDRESS})"
        )
