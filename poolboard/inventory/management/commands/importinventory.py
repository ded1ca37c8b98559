from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from poolboard.inventory.registry import InventoryError, import_inventory


class Command(BaseCommand):
    help = "Create or update what an inventory YAML file lists (sources, presets, services, databases, ...), all or nothing."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="inventory YAML (from exportinventory), or - for stdin")

    def handle(self, *args, file: str, **options) -> None:
        if file == "-":
            import sys

            text = sys.stdin.read()
        else:
            try:
                text = Path(file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError(f"cannot read {file}: {exc}") from None
        try:
            results = import_inventory(text)
        except InventoryError as exc:
            raise CommandError(f"{file}: nothing was imported:\n{exc}") from None
        for section, stats in results.items():
            if isinstance(stats, dict):
                detail = ", ".join(f"{v} {k}" for k, v in stats.items())
            else:
                detail = str(stats)
            self.stdout.write(f"{section}: {detail}")
