from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand

from poolboard.inventory.registry import export_inventory


class Command(BaseCommand):
    help = "Write the inventory (Prometheus sources, custom presets, services, ...) as YAML."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--output", "-o", help="file to write (default: stdout)")

    def handle(self, *args, output: str | None = None, **options) -> None:
        text = export_inventory()
        if output:
            Path(output).write_text(text, encoding="utf-8")
            self.stderr.write(f"inventory written to {output}")
        else:
            self.stdout.write(text, ending="")
