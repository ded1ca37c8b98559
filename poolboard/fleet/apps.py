from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "poolboard.fleet"
    verbose_name = "Fleet"

    def ready(self) -> None:
        from poolboard import checks  # noqa: F401  (registers the system checks)

        from .inventory import register

        register()  # the inventory file's sources:, presets: and services: sections
