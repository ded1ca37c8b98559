from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "poolboard.notify"
    verbose_name = "Notifications"
