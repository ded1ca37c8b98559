from django.apps import AppConfig


class StatementsConfig(AppConfig):
    name = "poolboard.statements"
    verbose_name = "Statement statistics"
