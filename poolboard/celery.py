from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "poolboard.settings")
# Worker and beat processes tag their database sessions so that poolboard can
# recognise (and leave out) its own sessions in pg_stat_activity.
os.environ.setdefault("POOLBOARD_PROCESS", "worker")

app = Celery("poolboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
