from django.apps import AppConfig


class DatabasesConfig(AppConfig):
    name = "poolboard.databases"
    verbose_name = "Monitored databases"
