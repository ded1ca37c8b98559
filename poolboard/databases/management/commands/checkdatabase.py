from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from poolboard.databases.models import MonitoredServer


class Command(BaseCommand):
    help = (
        "Check a monitored server: reachability, server version, privileges, max_connections,"
        " and whether pg_stat_statements is installed, preloaded and readable (and how to enable it)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="the monitored server's name (see the admin)")

    def handle(self, *args, name: str, **options) -> None:
        db = MonitoredServer.objects.filter(name=name).first()
        if db is None:
            known = ", ".join(MonitoredServer.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"no monitored server named {name!r} (known: {known})")
        result = db.check_connection()
        target = db.target().describe()
        if not result.ok:
            raise CommandError(f"{db.name} ({target}): {result.error_kind or 'error'}: {result.error}")
        self.stdout.write(
            f"{db.name} ({target}): OK, PostgreSQL {result.server_version},"
            f" max_connections {result.max_connections},"
            f" query text {'visible' if result.can_read_all_stats else 'HIDDEN'}"
        )
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        # Optional: without it the slow-query pages fall back to snapshots. The status is stored,
        # so the server page says the same.
        from poolboard.statements.collection import check_server

        statements = check_server(db)
        if statements.ok:
            self.stdout.write(
                f"pg_stat_statements: OK, version {statements.extension_version}, track {statements.track},"
                f" max {statements.max_entries}"
            )
        else:
            self.stderr.write(f"pg_stat_statements: {statements.state.replace('_', ' ')}: {statements.message}")
        # From the stored snapshots (this server's and its primary's): an error, so the exit status says it.
        standby_error = db.standby_error()
        if standby_error:
            raise CommandError(f"{db.name}: standby: {standby_error}")
