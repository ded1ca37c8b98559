# Celery's shared_task binds to this app (Celery's "First steps with Django" layout).
from .celery import app as celery_app

__all__ = ["celery_app"]
