from django.apps import AppConfig


class HistoryConfig(AppConfig):
    name = "poolboard.history"
    verbose_name = "History"
