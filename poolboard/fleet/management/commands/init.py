"""`python manage.py init PROMETHEUS_URL`: from an empty database to your services on the overview.

It only chains what the other commands do, in the order a newcomer needs them:
migrate, a Prometheus source (presets left to discovery), discovery, one collection.
"""

from __future__ import annotations

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from poolboard.fleet.collection import collect_all, current_slot
from poolboard.fleet.discovery import discover_source
from poolboard.fleet.models import PrometheusSource, Service


class Command(BaseCommand):
    help = (
        "Set poolboard up against your Prometheus in one step: migrate, add the source (presets "
        "found by discovery unless --presets), discover services, collect once."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("url", help="your Prometheus' base URL, e.g. http://prometheus:9090 (no /api/v1)")
        parser.add_argument("--name", default="main", help="the source's name (default: main)")
        parser.add_argument("--presets", default="", help="comma-separated preset names (default: discover them)")
        parser.add_argument("--rate-window", default="5m", help="at least 4× your scrape interval (default: 5m)")

    def handle(self, *args, url: str, name: str, presets: str, rate_window: str, **options) -> None:
        self.stdout.write("1/4 migrating poolboard's database")
        call_command("migrate", verbosity=0, interactive=False)
        self.stdout.write(f"2/4 source {name!r} → {url}")
        call_command("ensuresource", name, url, presets=presets, rate_window=rate_window, stdout=self.stdout)
        source = PrometheusSource.objects.get(name=name)
        self.stdout.write("3/4 discovering which exporters your Prometheus has data for")
        found = discover_source(source)
        if found.status == "failed":
            raise CommandError(
                f"{found.summary()}\nCheck the URL (the base URL, without /api/v1) and that poolboard can reach it; "
                f"then run `python manage.py init {url}` again."
            )
        self.stdout.write(f"    {found.summary()}")
        self.stdout.write("4/4 collecting once")
        failed = [r for r in collect_all(current_slot()) if r.status == "failed"]
        for result in failed:
            self.stderr.write(f"    {result.source}: {result.error}")
        services = Service.objects.filter(source=source).count()
        if not services:
            self.stdout.write(
                "No pool metrics found. `python manage.py discover` lists what each preset looks for; "
                "the README's preset table names the metrics each one reads."
            )
            return
        self.stdout.write(
            f"Done: {services} service{'s' if services != 1 else ''} on the overview. Next: create a login with "
            "`python manage.py createsuperuser`, then run the web server, one Celery worker and one beat "
            "(README, 'Monitor your own fleet')."
        )
