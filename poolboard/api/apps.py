from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "poolboard.api"
    verbose_name = "API"
