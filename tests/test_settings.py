"""Settings parsing and system checks: bad configuration gets a clear message."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from poolboard import checks
from poolboard.settings import envbool, envint, envsecret, parse_database_url, proxy_ssl_header


def test_database_url_becomes_a_databases_entry_with_application_name() -> None:
    entry = parse_database_url("postgresql://pb:s%40cret@db.internal:6543/poolboard?sslmode=require", "poolboard-web")
    assert entry["NAME"] == "poolboard" and entry["USER"] == "pb" and entry["PASSWORD"] == "s@cret"
    assert (entry["HOST"], entry["PORT"]) == ("db.internal", "6543")
    assert entry["OPTIONS"] == {"sslmode": "require", "application_name": "poolboard-web", "connect_timeout": 5}


def test_an_explicit_application_name_in_the_url_wins() -> None:
    entry = parse_database_url("postgresql://h/db?application_name=custom", "poolboard-web")
    assert entry["OPTIONS"]["application_name"] == "custom"


@pytest.mark.parametrize(
    ("url", "message"),
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


def test_system_checks_never_print_a_password_from_a_url(settings) -> None:
    settings.REDIS_URL = "redis//:s3cret@redis.internal:6379/0"
    settings.PROMETHEUS_URL = "ftp://scraper:s3cret@prometheus:9090"
    messages = [problem.msg for problem in checks.configuration_check(None)]
    assert "REDIS_URL='redis//***@redis.internal:6379/0' is not a Redis URL." in messages
    assert "PROMETHEUS_URL='ftp://***@prometheus:9090' is not an http(s) URL." in messages
    assert not any("s3cret" in m for m in messages)


def test_a_login_throttle_that_cannot_work_is_an_error(settings) -> None:
    from datetime import timedelta

    settings.AXES_COOLOFF_TIME = timedelta(minutes=0)
    ids = {problem.id: problem for problem in checks.configuration_check(None)}
    assert ids["poolboard.E007"].msg == "LOGIN_FAILURE_LIMIT=10 / LOGIN_LOCKOUT_MINUTES=0 cannot throttle logins."
    assert ids["poolboard.E007"].hint == "Use a limit of 1 or more wrong passwords and a lockout of 1 minute or more."


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

    real_pytest = sys.modules["pytest"]
    monkeypatch.delitem(sys.modules, "pytest")
    try:
        assert module.guess_process_kind(["/venv/bin/celery", "-A", "poolboard", "beat"]) == "beat"
        assert module.guess_process_kind(["/venv/bin/celery", "-A", "poolboard", "worker"]) == "worker"
        assert module.guess_process_kind(["/venv/bin/gunicorn", "poolboard.wsgi:application"]) == "web"
        assert module.guess_process_kind(["manage.py", "migrate"]) == "manage"
    finally:
        sys.modules["pytest"] = real_pytest


# --- production settings from the environment -------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
# Every variable these tests set or that changes what they read; the rest of the
# environment (PATH, DATABASE_URL, ...) is passed through.
CONTROLLED = (
    "DEBUG", "SECRET_KEY", "SECRET_KEY_FILE", "ALLOWED_HOSTS", "HTTPS_ONLY", "SECURE_SSL_REDIRECT",
    "SECURE_PROXY_SSL_HEADER", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD",
    "CSRF_TRUSTED_ORIGINS", "DJANGO_SETTINGS_MODULE",
    # tests/conftest.py sets it for Playwright; a deployment never does (async.E001).
    "DJANGO_ALLOW_ASYNC_UNSAFE",
)
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "x7Hq2vLm9RtY4wZp8KcN3bJf6GdS1aUe5oIiQyXrTnVhWkMlPzCgBsDjFuEaO0",
    "ALLOWED_HOSTS": "poolboard.example.com",
}


def run_in(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**clean, "DJANGO_SETTINGS_MODULE": "poolboard.settings", **env},
        capture_output=True, text=True, timeout=60,
    )


def settings_in(env: dict[str, str], monkeypatch) -> dict:
    """The settings module's values under `env`: its code run afresh in this process (it has no side effects)."""
    for name in CONTROLLED:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    values = runpy.run_path(str(ROOT / "poolboard" / "settings.py"))
    names = [
        "HTTPS_ONLY", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER", "CSRF_TRUSTED_ORIGINS",
    ]
    return {name: values[name] for name in names}


@pytest.mark.slow  # a fresh `manage.py check --deploy` process: 3-5 s
def test_it_passes_check_deploy_with_production_env_vars() -> None:
    done = run_in(PRODUCTION, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr
    # W021 (HSTS preload) is the one silenced on purpose: see SECURE_HSTS_PRELOAD.
    assert done.stdout.strip() == "System check identified no issues (1 silenced)."


@pytest.mark.slow  # a fresh `manage.py check --deploy` process: 3-5 s
def test_check_deploy_names_what_a_plain_http_production_lacks() -> None:
    done = run_in({**PRODUCTION, "HTTPS_ONLY": "false"}, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 1
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in done.stderr, check


def test_it_is_https_only_as_soon_as_it_serves_a_real_host_name(monkeypatch) -> None:
    assert settings_in(PRODUCTION, monkeypatch) == {
        "HTTPS_ONLY": True, "SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True, "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000, "SECURE_HSTS_INCLUDE_SUBDOMAINS": True, "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": None, "CSRF_TRUSTED_ORIGINS": [],
    }


def test_the_loopback_defaults_stay_on_plain_http_for_the_demo_and_the_tests(monkeypatch) -> None:
    values = settings_in({}, monkeypatch)
    assert (values["HTTPS_ONLY"], values["SESSION_COOKIE_SECURE"], values["CSRF_COOKIE_SECURE"]) == (False, False, False)
    assert (values["SECURE_SSL_REDIRECT"], values["SECURE_HSTS_SECONDS"]) == (False, 0)
    assert settings_in({**PRODUCTION, "HTTPS_ONLY": "false"}, monkeypatch)["SESSION_COOKIE_SECURE"] is False


def test_proxy_header_and_trusted_origins_come_from_the_environment(monkeypatch) -> None:
    values = settings_in({
        **PRODUCTION,
        "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
        "CSRF_TRUSTED_ORIGINS": "https://poolboard.example.com, https://ops.example.com",
        "SECURE_HSTS_SECONDS": "600",
    }, monkeypatch)
    assert values["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://poolboard.example.com", "https://ops.example.com"]
    assert values["SECURE_HSTS_SECONDS"] == 600


def test_a_proxy_header_with_a_value_is_refused_with_the_form_to_use() -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        proxy_ssl_header("X-Forwarded-Proto: https")
    assert str(info.value) == (
        "Unexpected value SECURE_PROXY_SSL_HEADER='X-Forwarded-Proto: https': give a header name such as X-Forwarded-Proto"
    )


def test_importing_settings_creates_no_directories(monkeypatch) -> None:
    # Record every directory creation the settings code would make, instead of making it.
    made: list[str] = []
    monkeypatch.setattr(Path, "mkdir", lambda self, *a, **k: made.append(str(self)))
    monkeypatch.setattr(os, "makedirs", lambda name, *a, **k: made.append(str(name)))
    monkeypatch.setattr(os, "mkdir", lambda name, *a, **k: made.append(str(name)))
    runpy.run_path(str(ROOT / "poolboard" / "settings.py"))
    assert made == []


def test_the_web_process_makes_the_static_folder_when_it_starts(tmp_path, settings) -> None:
    from poolboard.middleware import StaticFilesMiddleware

    settings.STATIC_ROOT = tmp_path / "var" / "static"
    StaticFilesMiddleware(lambda request: None, settings=settings)
    assert settings.STATIC_ROOT.is_dir()


@pytest.mark.parametrize(
    ("argv", "warned"),
    [(["manage.py", "check"], True), (["manage.py", "runserver"], True), (["manage.py", "collect", "--once"], False),
     (["manage.py", "migrate"], False)],
)
def test_it_warns_about_the_development_secret_key_only_where_someone_reads_the_checks(
    argv, warned, monkeypatch, settings
) -> None:
    settings.DEBUG = False
    settings.SECRET_KEY = "poolboard-development-only-secret-key-change-me-in-production-0123456789"
    monkeypatch.setattr(sys, "argv", argv)
    ids = [problem.id for problem in checks.configuration_check(None)]
    assert ("poolboard.W006" in ids) is warned
