from __future__ import annotations

import pytest

from tests.notify.receiver import Receiver


@pytest.fixture(autouse=True)
def notify_settings(settings):
    """Loopback allow-listed (the receivers are local); no Celery wake-up; a short request timeout."""
    settings.NOTIFY_ALLOW_NETWORKS = ["127.0.0.1"]
    settings.NOTIFY_WAKE_DISPATCHER = False
    settings.NOTIFY_TIMEOUT = 0.5
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.PUBLIC_URL = "https://poolboard.example.org"
    return settings


@pytest.fixture
def receiver():
    """make(script) -> a running Receiver; all closed at the end."""
    made = []

    def make(*script):
        made.append(Receiver(script or (200,)))
        return made[-1]

    yield make
    for r in made:
        r.close()
