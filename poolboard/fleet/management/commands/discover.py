from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from poolboard.fleet.discovery import discover_source
from poolboard.fleet.models import PrometheusSource


class Command(BaseCommand):
    help = "Find which presets each Prometheus source has data for; create or refresh services and pools."

    def add_arguments(self, parser) -> None:
        parser.add_argument("source", nargs="?", help="source name (default: every enabled source)")

    def handle(self, *args, source: str | None = None, **options) -> None:
        if source:
            sources = list(PrometheusSource.objects.filter(name=source))
            if not sources:
                raise CommandError(f"no Prometheus source named {source!r}")
        else:
            sources = list(PrometheusSource.objects.filter(enabled=True))
            if not sources:
                self.stdout.write("no enabled Prometheus source: add one in the admin (Fleet › Prometheus sources)")
        failed = 0
        for src in sources:
            result = discover_source(src)
            if result.status == "failed":
                failed += 1
                self.stderr.write(result.summary())
            else:
                self.stdout.write(result.summary())
        if failed:
            raise SystemExit(1)
