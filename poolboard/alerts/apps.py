from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "poolboard.alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        from poolboard.inventory.registry import register_section

        from .inventory import export_rules, import_rules

        register_section("alert_rules", export_rules, import_rules)
