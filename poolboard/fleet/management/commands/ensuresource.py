from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from poolboard.fleet.models import PrometheusSource


class Command(BaseCommand):
    help = "Create or update a Prometheus source (used by `make demo`; handy for scripted set-ups)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("url")
        parser.add_argument("--presets", default="", help="comma-separated preset names")
        parser.add_argument("--rate-window", default="5m")

    def handle(self, *args, name: str, url: str, presets: str, rate_window: str, **options) -> None:
        source = PrometheusSource.objects.filter(name=name).first() or PrometheusSource(name=name)
        source.url = url
        source.presets = [p.strip() for p in presets.split(",") if p.strip()]
        source.rate_window = rate_window
        try:
            source.full_clean()
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        source.save()
        self.stdout.write(f"source {source.name}: {source.url} presets={','.join(source.presets)}")
