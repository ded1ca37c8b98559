from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "poolboard.reports"
    verbose_name = "Reports"
