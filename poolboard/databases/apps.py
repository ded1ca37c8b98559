from django.apps import AppConfig


class DatabasesConfig(AppConfig):
    name = "poolboard.databases"
    verbose_name = "Monitored databases"

    def ready(self) -> None:
        from poolboard.fleet.inventory import register_section

        from .inventory import export_databases, import_databases

        register_section("databases", export_databases, import_databases)
