"""Settings parsing and system checks: bad configuration gets a clear message."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from poolboard import checks
from poolboard.settings import envbool, envint, envsecret, parse_database_url


def test_database_url_becomes_a_databases_entry_with_application_name() -> None:
    entry = parse_database_url("postgresql://pb:s%40cret@db.internal:6543/poolboard?sslmode=require", "poolboard-web")
    assert entry["NAME"] == "poolboard" and entry["USER"] == "pb" and entry["PASSWORD"] == "s@cret"
    assert (entry["HOST"], entry["PORT"]) == ("db.internal", "6543")
    assert entry["OPTIONS"] == {"sslmode": "require", "application_name": "poolboard-web", "connect_timeout": 5}


def test_an_explicit_application_name_in_the_url_wins() -> None:
    entry = parse_database_url("postgresql://h/db?application_name=custom", "poolboard-web")
    assert entry["OPTIONS"]["application_name"] == "custom"


@pytest.mark.parametrize(
    "url, message",
    [
        ("mysql://h/db", "DATABASE_URL must start with postgresql:// (got scheme 'mysql')"),
        ("postgresql://h:5432/", "DATABASE_URL has no database name (postgresql://host:5432/NAME)"),
        ("postgresql://h:port/db", "DATABASE_URL has a port that is not a number"),
    ],
)
def test_malformed_database_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        parse_database_url(url, "poolboard-web")
    assert str(info.value) == message


def test_env_helpers_reject_junk_with_the_variable_name(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PB_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="Unexpected value PB_FLAG='maybe': use true or false"):
        envbool("PB_FLAG", "false")
    monkeypatch.setenv("PB_NUM", "ten")
    with pytest.raises(ImproperlyConfigured, match="Unexpected value PB_NUM='ten': expected a whole number"):
        envint("PB_NUM", "1")
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("PB_SECRET_FILE", str(secret))
    assert envsecret("PB_SECRET") == "s3cret"
    monkeypatch.setenv("PB_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="PB_SECRET_FILE=.* cannot be read"):
        envsecret("PB_SECRET")


def test_system_checks_report_bad_urls_and_intervals(settings) -> None:
    settings.REDIS_URL = "localhost:6379"
    settings.PROMETHEUS_URL = "prometheus:9090"
    settings.COLLECT_INTERVAL = 1
    ids = {problem.id: problem.msg for problem in checks.configuration_check(None)}
    assert ids["poolboard.E001"] == "REDIS_URL='localhost:6379' is not a Redis URL."
    assert ids["poolboard.E002"] == "PROMETHEUS_URL='prometheus:9090' is not an http(s) URL."
    assert ids["poolboard.E004"] == "COLLECT_INTERVAL=1 is below 5 seconds."


def test_the_default_configuration_passes_the_checks(settings) -> None:
    settings.DEBUG = True
    assert checks.configuration_check(None) == []


def test_every_beat_entry_expires_within_its_period(settings) -> None:
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert "expires" in entry["options"], name
        if isinstance(entry["schedule"], (int, float)):
            assert entry["options"]["expires"] <= entry["schedule"], name


def test_celery_is_configured_for_idempotent_late_ack(settings) -> None:
    assert settings.CELERY_TASK_ACKS_LATE and settings.CELERY_TASK_REJECT_ON_WORKER_LOST
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    assert settings.CELERY_TASK_TIME_LIMIT > settings.CELERY_TASK_SOFT_TIME_LIMIT
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] >= 2 * settings.CELERY_TASK_TIME_LIMIT


def test_every_poolboard_connection_is_named(settings) -> None:
    assert settings.DATABASES["default"]["OPTIONS"]["application_name"].startswith("poolboard-")


def test_the_process_kind_is_guessed_from_the_command_line(monkeypatch) -> None:
    import sys

    from poolboard import settings as module

    monkeypatch.delitem(sys.modules, "pytest")
    try:
        assert module.guess_process_kind(["/venv/bin/celery", "-A", "poolboard", "beat"]) == "beat"
        assert module.guess_process_kind(["/venv/bin/celery", "-A", "poolboard", "worker"]) == "worker"
        assert module.guess_process_kind(["/venv/bin/gunicorn", "poolboard.wsgi:application"]) == "web"
        assert module.guess_process_kind(["manage.py", "migrate"]) == "manage"
    finally:
        import pytest as real_pytest

        sys.modules["pytest"] = real_pytest
