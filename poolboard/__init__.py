# Celery's shared_task binds to this app (Celery's "First steps with Django" layout).
try:
    from .celery import app as celery_app
except ModuleNotFoundError as exc:
    # poolboard.agent runs inside other people's services, which may have neither Celery nor
    # Django; anything else missing is a real error.
    if exc.name not in ("celery", "django"):
        raise
else:
    __all__ = ["celery_app"]
