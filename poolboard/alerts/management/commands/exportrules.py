from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand

from poolboard.alerts.evaluate import db_now
from poolboard.alerts.export import export_rules


class Command(BaseCommand):
    help = "Write the enabled alert rules as a Prometheus rule file (the presets' PromQL)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--output", "-o", help="file to write (default: stdout)")

    def handle(self, *args, output: str | None = None, **options) -> None:
        text = export_rules(db_now())
        if output:
            Path(output).write_text(text, encoding="utf-8")
            self.stderr.write(f"rules written to {output}")
        else:
            self.stdout.write(text, ending="")
