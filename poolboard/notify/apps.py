from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "poolboard.notify"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from poolboard.notify import checks  # noqa: F401  (registers the system check)
