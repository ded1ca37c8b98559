from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand

from poolboard.fleet.collection import collect_all, current_slot


class Command(BaseCommand):
    help = "Collect pool metrics from every enabled Prometheus source (--once: one tick, synchronously)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="run one full collection and exit")

    def handle(self, *args, once: bool = False, **options) -> None:
        while True:
            failed = self.tick()
            if once:
                if failed:
                    raise SystemExit(1)
                return
            time.sleep(settings.COLLECT_INTERVAL - time.time() % settings.COLLECT_INTERVAL)

    def tick(self) -> int:
        failed = 0
        results = collect_all(current_slot())
        if not results:
            self.stdout.write("no enabled Prometheus source: add one in the admin (Fleet › Prometheus sources)")
        for result in results:
            if result.status == "failed":
                failed += 1
                self.stderr.write(f"{result.source}: FAILED: {result.error}")
            elif result.status == "skipped":
                # Not an error: each slot is collected once, by whoever gets there first
                # (`collect --once` from cron, the beat, a second worker).
                self.stdout.write(f"{result.source}: {result.error}; nothing to do")
            else:
                new = f", new services: {', '.join(result.new_services)}" if result.new_services else ""
                self.stdout.write(f"{result.source}: {result.samples} pools from {result.queries} queries{new}")
        failed += self.snapshot_databases()
        if any(r.status == "ok" and r.samples for r in results):
            self.diagnose()
        return failed

    def diagnose(self) -> None:
        """Judge the services whose samples just arrived (what the beat's collect task does too)."""
        from poolboard.diagnosis.tasks import diagnose_fleet

        result = diagnose_fleet()
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(result["kinds"].items())) or "nothing"
        self.stdout.write(
            f"diagnosis: {result['services']} services ({kinds}); findings {result['opened']} opened,"
            f" {result['closed']} closed"
        )

    def snapshot_databases(self) -> int:
        """The database side: one pg_stat_activity snapshot per monitored database."""
        from poolboard.databases.snapshots import snapshot_all

        failed = 0
        for result in snapshot_all():
            if result.status == "failed":
                failed += 1
                self.stderr.write(f"server {result.server}: FAILED: {result.error}")
            elif result.status == "skipped":
                self.stdout.write(
                    f"server {result.server}: this snapshot slot was already stored by another run; nothing to do"
                )
            else:
                self.stdout.write(
                    f"server {result.server}: {result.total} connections; episodes"
                    f" {result.opened} new, {result.updated} ongoing, {result.closed} ended"
                )
        return failed
