"""poolboard settings: one module, read from the environment.

The defaults make a fresh checkout work on a machine with PostgreSQL and Redis on
localhost (what `make demo` and `make test` expect). Anything malformed fails loudly
at start-up with the variable's name, and `poolboard.checks` reports the rest.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from poolboard import dburl
from poolboard.fleet.schedules import every_slot

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str) -> bool:
    value = os.getenv(name, default)
    if value.lower() not in ("", "true", "false", "1", "0", "yes", "no"):
        raise ImproperlyConfigured(f"Unexpected value {name}={value!r}: use true or false")
    return value.lower() in ("true", "1", "yes")


def envint(name: str, default: str) -> int:
    value = os.getenv(name, default)
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"Unexpected value {name}={value!r}: expected a whole number") from None


def envsecret(name: str, default: str = "") -> str:
    """Read NAME, or the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    path = os.getenv(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc.strerror}") from None
    return os.getenv(name, default)


def envlist(name: str, default: str = "") -> list[str]:
    """A comma-separated list; blanks dropped."""
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


def is_loopback_only(hosts: list[str]) -> bool:
    """True when every allowed host is this machine: a development or demo set-up over http."""
    return bool(hosts) and all(h in ("127.0.0.1", "localhost", "[::1]", "::1") for h in hosts)


def proxy_ssl_header(value: str) -> tuple[str, str] | None:
    """SECURE_PROXY_SSL_HEADER from the name of the header the TLS proxy sets (X-Forwarded-Proto)."""
    if not value:
        return None
    if not value.replace("-", "").replace("_", "").isalnum():
        raise ImproperlyConfigured(
            f"Unexpected value SECURE_PROXY_SSL_HEADER={value!r}: give a header name such as X-Forwarded-Proto"
        )
    return ("HTTP_" + value.upper().replace("-", "_"), "https")


def parse_database_url(url: str, application_name: str) -> dict:
    """Turn postgresql://user:pass@host:port/name?opt=v into a DATABASES entry (poolboard.dburl)."""
    try:
        params = dburl.parse(url)
    except dburl.DatabaseUrlError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL {exc}") from None
    name = params.pop("dbname", "")
    if not name:
        raise ImproperlyConfigured("DATABASE_URL has no database name (postgresql://host:5432/NAME)")
    server = {key: params.pop(key, "") for key in ("user", "password", "host", "port")}
    options: dict[str, object] = dict(params)
    options.setdefault("application_name", application_name)
    # Bounded waits: poolboard must never hang on its own database either.
    options.setdefault("connect_timeout", 5)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": server["user"],
        "PASSWORD": server["password"],
        "HOST": server["host"],
        "PORT": server["port"],
        "OPTIONS": options,
        # One persistent connection per process thread; closed when it errors.
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"NAME": os.getenv("POOLBOARD_TEST_DB", f"test_{name}")},
    }




def guess_process_kind(argv: list[str]) -> str:
    """web, worker, beat, test or manage: from the command line when not given."""
    words = " ".join(argv)
    if "pytest" in sys.modules:
        return "test"
    if "celery" in words:
        return "beat" if " beat" in words else "worker"
    if "gunicorn" in words or "runserver" in words:
        return "web"
    return "manage"


# Which kind of process this is: it names our sessions in pg_stat_activity
# (poolboard-web, poolboard-worker, ...) so the database side can leave them out.
PROCESS_KIND = os.getenv("POOLBOARD_PROCESS") or guess_process_kind(sys.argv)

SECRET_KEY = envsecret("SECRET_KEY") or "poolboard-development-only-secret-key-change-me-in-production-0123456789"
DEBUG = envbool("DEBUG", "false")
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost")
# Origins (scheme://host[:port]) allowed to POST when they differ from the Host header,
# e.g. https://poolboard.example.com behind a proxy that rewrites Host.
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")

# --- https -----------------------------------------------------------------------
# HTTPS_ONLY: poolboard is reached over https only (directly or through a TLS proxy).
# Secure by default: on as soon as ALLOWED_HOSTS names anything but this machine, so a
# production deploy gets secure cookies, HSTS and the http->https redirect without
# asking; off for DEBUG and for the loopback-only defaults that `make demo` and the
# tests run over plain http. HTTPS_ONLY=false serves a LAN over plain http knowingly.
HTTPS_ONLY = envbool("HTTPS_ONLY", "false" if DEBUG or is_loopback_only(ALLOWED_HOSTS) else "true")
SESSION_COOKIE_SECURE = HTTPS_ONLY
CSRF_COOKIE_SECURE = HTTPS_ONLY
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", str(HTTPS_ONLY))
# Load balancers and Prometheus often probe over plain http inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
# Behind a TLS-terminating proxy Django sees http; name the header the proxy sets
# (X-Forwarded-Proto) so it knows the request was https. Only set it when the proxy
# strips that header from clients, or a client could claim https.
SECURE_PROXY_SSL_HEADER = proxy_ssl_header(os.getenv("SECURE_PROXY_SSL_HEADER", ""))
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", "31536000" if HTTPS_ONLY else "0")
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", "true")
# Preloading is a promise to browser vendors about the whole domain; poolboard cannot make
# it for its operators, so it is opt-in and its deploy warning (W021) is silenced.
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", "false")
SILENCED_SYSTEM_CHECKS = ["security.W021"]

DATABASE_URL = os.getenv("DATABASE_URL", "postgresql://root@127.0.0.1:5432/poolboard")
DATABASES = {"default": parse_database_url(DATABASE_URL, f"poolboard-{PROCESS_KIND}")}
REDIS_URL = os.getenv("REDIS_URL", "redis://127.0.0.1:6379/0")
PROMETHEUS_URL = os.getenv("PROMETHEUS_URL", "http://127.0.0.1:9090")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "axes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "poolboard.inventory",
    "poolboard.fleet",
    "poolboard.dashboard",
    "poolboard.api",
    "poolboard.databases",
    "poolboard.history",
    "poolboard.diagnosis",
    "poolboard.statements",
    "poolboard.notify",
    "poolboard.reports",
    # After fleet and notify: alert rules refer to services and channels (inventory order too).
    "poolboard.alerts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "poolboard.middleware.ContentSecurityPolicyMiddleware",
    "poolboard.middleware.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "poolboard.middleware.HtmxLoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# Content-Security-Policy of every response (poolboard.middleware). Scripts and styles
# come from our own static files only: no inline <script>, no on...= handlers, no eval
# (htmx's allowEval is off in base.html, so hx-trigger filters are not used). Inline
# style *attributes* are allowed for the data-driven bar widths; with img-src, font-src
# and connect-src limited to 'self' an injected style cannot load or send anything.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

ROOT_URLCONF = "poolboard.urls"
WSGI_APPLICATION = "poolboard.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "poolboard.dashboard.context_processors.nav_section",
            ],
        },
    }
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    # django-axes first: it refuses a locked-out login before the password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Login throttling (django-axes, attempts stored in poolboard's database so every
# gunicorn worker sees them): LOGIN_FAILURE_LIMIT wrong passwords for one username
# from one address lock that pair out for LOGIN_LOCKOUT_MINUTES. Per username *and*
# address, so nobody can lock a colleague out from elsewhere during an incident.
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", "10")
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_LOCKOUT_MINUTES", "60"))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# No start-up banner on every manage.py command; failed logins and lockouts are still logged.
AXES_VERBOSE = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:overview"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.getenv("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
# WhiteNoise serves from STATIC_ROOT after collectstatic and from the finders before;
# poolboard.middleware.StaticFilesMiddleware creates the folder when a web process
# starts (importing settings creates nothing).
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

EMAIL_BACKEND = os.getenv("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.getenv("DEFAULT_FROM_EMAIL", "poolboard@localhost")
# For EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend (make demo writes mail to var/demo/mail/).
EMAIL_FILE_PATH = os.getenv("EMAIL_FILE_PATH") or None

SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# --- collection ----------------------------------------------------------------
# Seconds between collection ticks; a tick reads every enabled Prometheus source.
COLLECT_INTERVAL = envint("COLLECT_INTERVAL", "15")
# A service whose newest sample is older than this many ticks is shown as stale.
STALE_AFTER_TICKS = envint("STALE_AFTER_TICKS", "3")
# Seconds of history each diagnosis pass judges (raw samples, snapshots, episodes): long
# enough to see a slow leak's floor rise (1 connection per 10 min shows as 3 steps).
DIAGNOSIS_WINDOW = envint("DIAGNOSIS_WINDOW", "1800")
# HTTP timeout (seconds) for every Prometheus call; each source may lower it.
PROMETHEUS_TIMEOUT = envint("PROMETHEUS_TIMEOUT", "10")
# Most series one preset query may return; above it the tick fails for that source.
PROMETHEUS_MAX_SERIES = envint("PROMETHEUS_MAX_SERIES", "20000")
# Raw samples are kept this many days, then their daily partitions are dropped.
RAW_RETENTION_DAYS = envint("RAW_RETENTION", "14")
# 5-minute and 1-hour rollups are kept this many days (capacity reports read them).
ROLLUP_RETENTION_DAYS = envint("ROLLUP_RETENTION", "400")

# --- monitored databases (pg_stat_activity snapshots) -------------------------------
# Seconds between snapshots of each monitored server (a snapshot costs ~20 ms; at 10 s a
# query over the 30 s threshold is caught within one interval of the truth).
DATABASE_SNAPSHOT_INTERVAL = envint("DATABASE_SNAPSHOT_INTERVAL", "10")
# Most poolboard-monitor sessions allowed on one target; above it a snapshot is skipped.
MAX_MONITOR_CONNECTIONS = envint("MAX_MONITOR_CONNECTIONS", "3")
# normalize (literals and comments removed) | none (no text) | raw (shows a banner on every page).
QUERY_TEXT_MODE = os.getenv("QUERY_TEXT_MODE", "normalize")
if QUERY_TEXT_MODE not in ("normalize", "none", "raw"):
    raise ImproperlyConfigured(f"Unexpected value QUERY_TEXT_MODE={QUERY_TEXT_MODE!r}: use normalize, none or raw")
# Cancel/terminate from the sessions table: off unless set (plus a per-database admin login and a permission).
ALLOW_BACKEND_SIGNALS = envbool("ALLOW_BACKEND_SIGNALS", "false")

# --- statement statistics (pg_stat_statements; poolboard/statements) ----------------
# Seconds between readings of pg_stat_statements on each monitored server (PgHero: 5 min).
STATEMENTS_INTERVAL = envint("STATEMENTS_INTERVAL", "300")
# Statements read each time: the top N by total execution time, plus those already tracked.
STATEMENTS_TOP = envint("STATEMENTS_TOP", "500")
# Per-interval deltas are kept this many days (PgHero: 14), their hourly sums this many.
STATEMENTS_INTERVAL_DAYS = envint("STATEMENTS_INTERVAL_DAYS", "14")
STATEMENTS_HOURLY_DAYS = envint("STATEMENTS_HOURLY_DAYS", "400")

# --- sizing (poolboard/sizing, lib/sizing.py) -------------------------------------
# Demand is read over this many seconds of 1-hour rollups (7 days: a week's busy hours).
SIZING_WINDOW = envint("SIZING_WINDOW", "604800")
# Below this much pool history a pool gets "not enough data" (and how much more is needed).
SIZING_MIN_HISTORY = envint("SIZING_MIN_HISTORY", "3600")
# Headroom over p99 demand (seed 001: 20 %), the admin/migration reserve taken out of usable
# (10 % of max_connections) and the rolling-deploy surge (Kubernetes' default maxSurge 25 %).
SIZING_HEADROOM = envint("SIZING_HEADROOM_PCT", "20") / 100
SIZING_ADMIN_RESERVE = envint("SIZING_ADMIN_RESERVE_PCT", "10") / 100
SIZING_DEPLOY_SURGE = envint("SIZING_DEPLOY_SURGE_PCT", "25") / 100

# --- notifications (poolboard/notify) ---------------------------------------------
# Networks (CIDRs or addresses) webhook/Slack/PagerDuty requests may go to although they are
# loopback, private or link-local, which are refused otherwise (e.g. "10.0.0.0/8").
NOTIFY_ALLOW_NETWORKS = envlist("NOTIFY_ALLOW_NETWORKS")
# Seconds one notification request may take; a hung receiver is cut off here and retried.
NOTIFY_TIMEOUT = envint("NOTIFY_TIMEOUT", "10")
# Failed sends (5xx, timeouts, connection errors) are retried with backoff this many seconds.
NOTIFY_RETRY_DEADLINE = envint("NOTIFY_RETRY_DEADLINE", "3600")

# --- alert rules (poolboard/alerts) ---------------------------------------------------
# Consecutive evaluations whose data source failed or was stale (which change no alert state)
# before a rule's one PoolboardDatasourceError alert fires (5 ticks of 15 s: about a minute).
ALERTS_DATASOURCE_FAILURES = envint("ALERTS_DATASOURCE_FAILURES", "5")

# --- weekly capacity reports (poolboard/reports) ------------------------------------
# The zone whose Monday 00:00 starts a report's week (default TIME_ZONE).
REPORT_TIME_ZONE = os.getenv("REPORT_TIME_ZONE", TIME_ZONE)
# Where the report emails' links point (the page, the unsubscribe link), e.g. https://poolboard.example.org
PUBLIC_URL = os.getenv("PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")

# --- Celery ----------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Collection and dispatch tasks are idempotent (unique (source, slot)), so late ack
# is safe and a killed worker's task is redelivered rather than lost.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 120
CELERY_TASK_SOFT_TIME_LIMIT = 100
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BEAT_SCHEDULE = {
    "collect-pools": {
        "task": "poolboard.fleet.collect_pools",
        # As each slot begins, not COLLECT_INTERVAL after beat started (see fleet/schedules.py).
        "schedule": every_slot(COLLECT_INTERVAL),
        # A stale collection is useless: never let a backlog of them pile up.
        "options": {"expires": COLLECT_INTERVAL},
    },
    "snapshot-databases": {
        "task": "poolboard.databases.snapshot_databases",
        "schedule": every_slot(DATABASE_SNAPSHOT_INTERVAL),
        "options": {"expires": DATABASE_SNAPSHOT_INTERVAL},
    },
    # pg_stat_statements deltas; never resets the view (poolboard/statements).
    "collect-statements": {
        "task": "poolboard.statements.collect_statements",
        "schedule": every_slot(STATEMENTS_INTERVAL),
        "options": {"expires": STATEMENTS_INTERVAL},
    },
    "rollup-statements": {"task": "poolboard.statements.rollup_statements", "schedule": crontab(minute="*/5"), "options": {"expires": 300}},
    "expire-statements": {"task": "poolboard.statements.expire_statements", "schedule": crontab(hour=3, minute=37), "options": {"expires": 3600}},
    # The outbox's dispatcher; enqueue() also wakes it after each commit (poolboard/notify).
    "dispatch-notifications": {"task": "poolboard.notify.dispatch_notifications", "schedule": 5, "options": {"expires": 5}},
    "prune-notifications": {"task": "poolboard.notify.prune_notifications", "schedule": crontab(hour=3, minute=37), "options": {"expires": 3600}},
    "discover-services": {"task": "poolboard.fleet.discover_services", "schedule": 300, "options": {"expires": 300}},
    "maintain-partitions": {
        "task": "poolboard.fleet.maintain_partitions",
        "schedule": crontab(minute=7),
        "options": {"expires": 3600},
    },
    "rollup-pools": {"task": "poolboard.history.rollup_recent", "schedule": crontab(minute="*/5"), "options": {"expires": 300}},
    "expire-rollups": {"task": "poolboard.history.expire_rollups", "schedule": crontab(hour=3, minute=17), "options": {"expires": 3600}},
    "prune-snapshots": {"task": "poolboard.databases.prune_snapshots", "schedule": crontab(minute=47), "options": {"expires": 3600}},
    # Builds last week's report once (a claim on the period) and sends the subscriptions that are due.
    "weekly-report": {"task": "poolboard.reports.weekly_report", "schedule": 600, "options": {"expires": 600}},
    "prune-agent-reports": {"task": "poolboard.diagnosis.prune_agent_reports", "schedule": crontab(hour=3, minute=27), "options": {"expires": 3600}},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
