"""System checks: missing or malformed configuration is reported clearly at start-up."""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Warning, register

from poolboard.lib.redact import redact_url

# Where someone is looking at the configuration. Every management command runs the
# checks, and `collect --once` from cron every 15 s printed the key warning each time.
SECRET_KEY_WARNING_COMMANDS = ("check", "runserver")


@register()
def configuration_check(app_configs, **kwargs):
    problems = []
    redis = urlsplit(settings.REDIS_URL)
    if redis.scheme not in ("redis", "rediss", "unix") or not (redis.hostname or redis.path):
        problems.append(
            Error(
                f"REDIS_URL={redact_url(settings.REDIS_URL)!r} is not a Redis URL.",
                hint="Use redis://host:6379/0.",
                id="poolboard.E001",
            )
        )
    prom = urlsplit(settings.PROMETHEUS_URL)
    if prom.scheme not in ("http", "https") or not prom.hostname:
        problems.append(
            Error(
                f"PROMETHEUS_URL={redact_url(settings.PROMETHEUS_URL)!r} is not an http(s) URL.",
                hint="Use http://host:9090 (without a trailing /api/v1).",
                id="poolboard.E002",
            )
        )
    elif settings.PROMETHEUS_URL.endswith("/"):
        problems.append(
            Warning(
                "PROMETHEUS_URL ends with '/'; it is stripped before use.",
                id="poolboard.W003",
            )
        )
    if settings.COLLECT_INTERVAL < 5:
        problems.append(
            Error(
                f"COLLECT_INTERVAL={settings.COLLECT_INTERVAL} is below 5 seconds.",
                hint="Prometheus rate windows need several scrapes; use 15 or more.",
                id="poolboard.E004",
            )
        )
    if settings.AXES_FAILURE_LIMIT < 1 or settings.AXES_COOLOFF_TIME.total_seconds() < 60:
        problems.append(
            Error(
                f"LOGIN_FAILURE_LIMIT={settings.AXES_FAILURE_LIMIT} / "
                f"LOGIN_LOCKOUT_MINUTES={settings.AXES_COOLOFF_TIME.total_seconds() / 60:g} cannot throttle logins.",
                hint="Use a limit of 1 or more wrong passwords and a lockout of 1 minute or more.",
                id="poolboard.E007",
            )
        )
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        if "expires" not in entry.get("options", {}):
            problems.append(
                Error(
                    f"Beat entry {name!r} has no options.expires.",
                    hint="A stalled worker would pile up stale runs; set expires to the period.",
                    id="poolboard.E005",
                )
            )
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if (
        not settings.DEBUG
        and settings.SECRET_KEY.startswith("poolboard-development-only")
        and command in SECRET_KEY_WARNING_COMMANDS
    ):
        problems.append(
            Warning(
                "SECRET_KEY is the development default.",
                hint="Set SECRET_KEY or SECRET_KEY_FILE before exposing poolboard to anyone.",
                id="poolboard.W006",
            )
        )
    return problems
