from django.apps import AppConfig


class DatabasesConfig(AppConfig):
    name = "poolboard.databases"
    verbose_name = "Monitored databases"

    def ready(self) -> None:
        from .inventory import register

        register()  # the inventory file's databases: section
