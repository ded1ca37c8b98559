from __future__ import annotations

from pathlib import Path

import yaml
from django.core.management.base import BaseCommand, CommandError

from poolboard.databases.inventory import InventoryError, apply_databases


class Command(BaseCommand):
    help = "Create or update monitored databases from the `databases:` list of an inventory YAML file."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path")

    def handle(self, *args, path: str, **options) -> None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise CommandError(f"{path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise CommandError(f"{path}: not valid YAML: {exc}") from None
        try:
            for line in apply_databases(data.get("databases", [])):
                self.stdout.write(line)
        except InventoryError as exc:
            raise CommandError(f"{path}: {exc}") from None
