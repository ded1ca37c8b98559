from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _report_settings(settings):
    settings.REPORT_TIME_ZONE = "Europe/Paris"
    settings.PUBLIC_URL = "http://poolboard.test"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.NOTIFY_WAKE_DISPATCHER = False
    return settings
