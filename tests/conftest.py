"""Plain fixtures, built explicitly (healthchecks-style personas), no factory library.

One fixture per concept, here, for every test package:
- alice: a normal user; bob: staff (admin access); `token`/`auth`: an API token of alice's.
- `make_source`, `make_service`: Prometheus sources and services with pools.
- `monitored`, `sessions`, `snapped`: a monitored PostgreSQL database (a throwaway one on the
  local server) with real sessions in chosen states, and one snapshot of them.
- `pg_cluster`: a throwaway PostgreSQL cluster with pg_stat_statements preloaded (poolboard.pgcluster).
- `prometheus_with`: the real Prometheus binary scraping exposition servers.
- `browser_page`: Playwright driving Debian's Chromium (/usr/bin/chromium).

A test that starts Prometheus, Chromium or the demo is marked `slow` here (see
`pytest_collection_modifyitems`): `pytest -m "not slow"` is the quick loop.
"""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from tests.pg import HOST, PORT, SUPERUSER, Sessions, throwaway_database
from tests.prom import ExpositionServer, PrometheusServer

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(autouse=True, scope="session")
def fast_password_hasher():
    """MD5 in tests: PBKDF2 is slow on purpose (0.37 s a hash here), paid per user created and per login."""
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True)
def fresh_sizing_panels():
    """Each test starts without this process's copy of the fleet's sizing (recommend.recent_fleet_sizing)."""
    from poolboard.sizing.recommend import forget_fleet_sizing

    forget_fleet_sizing()


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.org", "alice-password")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", "bob@example.org", "bob-password", is_staff=True, is_superuser=True)


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def token(alice) -> str:
    """A bearer token of alice's (the plaintext, which only its creator ever sees)."""
    from poolboard.api.models import ApiToken

    return ApiToken.issue(alice, name="test")[1]


@pytest.fixture
def auth(token) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def make_source(db):
    from poolboard.fleet.models import PrometheusSource

    def make(name: str = "main", url: str = "http://127.0.0.1:9", presets=None, **extra):
        return PrometheusSource.objects.create(
            name=name, url=url, presets=presets if presets is not None else ["db_pool", "hikaricp", "otel"], **extra
        )

    return make


@pytest.fixture
def make_service(make_source):
    """make_service("orders", "db_pool", instances=2, **values) -> a Service of the "main" source.

    It has `instances` pools named "main" at 10.0.0.0:8080, 10.0.0.1:8080, ... Pool values given
    (max=10, in_use=4, ...) are every pool's latest reading, sampled 5 s ago, and the service was
    seen now; without values the pools have no reading yet.
    """
    from django.utils import timezone

    from poolboard.fleet.models import Pool, PrometheusSource, Service

    sources: list[PrometheusSource] = []

    def make(name: str = "orders", preset: str = "db_pool", *, instances: int = 0, **values) -> Service:
        if not sources:
            sources.append(PrometheusSource.objects.filter(name="main").first() or make_source())
        now = timezone.now()
        service = Service.objects.create(name=name, source=sources[0], preset=preset, last_seen_at=now if values else None)
        reading = {"sampled_at": now - timedelta(seconds=5), **values} if values else {}
        if instances:
            Pool.objects.bulk_create(
                Pool(service=service, instance=f"10.0.0.{i}:8080", name="main", **reading) for i in range(instances)
            )
        return service

    return make


@pytest.fixture(scope="session")
def target_dbname():
    """A throwaway database on the local server for monitored sessions, dropped after the run."""
    with throwaway_database(f"pb_test_dbside_{os.getpid()}") as name:
        yield name


@pytest.fixture(scope="session")
def pg_cluster():
    """A PostgreSQL cluster of the test session's own (poolboard.pgcluster), with
    pg_stat_statements preloaded and compute_query_id on; superuser `root`, trust auth.
    The machine's server does not preload it and is never restarted. Stopped at the end."""
    from poolboard.pgcluster import PgCluster

    with PgCluster(statements=True, max_connections=60) as cluster:
        yield cluster


@pytest.fixture
def sessions(target_dbname):
    s = Sessions(target_dbname)
    yield s
    s.close()


@pytest.fixture
def fast_slots(settings):
    # One snapshot slot per second, so a test can take several snapshots.
    settings.DATABASE_SNAPSHOT_INTERVAL = 1
    return settings


@pytest.fixture
def monitored(db, target_dbname):
    from poolboard.databases.models import MonitoredServer

    return MonitoredServer.objects.create(
        name="orders-db", host=HOST, port=PORT, dbname=target_dbname, user=SUPERUSER,
        idle_in_transaction_s=1, query_s=1, transaction_s=3600,
    )


# Query text a page or the API must never run or show unescaped: markup in literals and identifiers.
HOSTILE_QUERY = (
    "SELECT pg_sleep(30), '<script>alert(1)</script>' AS \"<script>alert('x')</script>\","
    " 1 AS \"<div hx-get='/admin/' hx-trigger='load'>x</div>\", 'card=4111111111111111'"
)


@pytest.fixture
def snapped(monitored, sessions, make_service, fast_slots):
    """`monitored` after one snapshot: service hostile-svc running HOSTILE_QUERY, and a session of
    idle-svc idle in transaction. Thresholds of 0 s make both episodes at once (no waiting for
    them to age); the tests of the thresholds themselves are in tests/databases/test_snapshots.py."""
    from poolboard.databases.snapshots import snapshot_server

    monitored.idle_in_transaction_s = monitored.query_s = 0
    monitored.save(update_fields=["idle_in_transaction_s", "query_s"])
    svc = make_service("hostile-svc")
    sessions.active("hostile-svc", HOSTILE_QUERY)
    sessions.idle_in_transaction("idle-svc")
    sessions.wait_seen({"hostile-svc": "active", "idle-svc": "idle in transaction"})
    assert snapshot_server(monitored).status == "ok"
    monitored.refresh_from_db()
    return monitored, svc


@pytest.fixture
def fake_prometheus():
    """fake_prometheus(answer) -> a local server answering like a broken Prometheus would
    (tests/sources/fakes.py: answer(query) -> (status, content type, body)), closed after the test."""
    from tests.sources.fakes import FakePrometheus

    servers: list[FakePrometheus] = []

    def start(answer) -> FakePrometheus:
        servers.append(FakePrometheus(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def exporters():
    """Start exposition servers: exporters({"job": text, ...}) -> {job: ExpositionServer}."""
    started: list[ExpositionServer] = []

    def start(texts: dict[str, str]) -> dict[str, ExpositionServer]:
        servers = {job: ExpositionServer(text) for job, text in texts.items()}
        started.extend(servers.values())
        return servers

    yield start
    for server in started:
        server.close()


@pytest.fixture
def prometheus_with(exporters):
    """prometheus_with({"job": exposition_text}) -> a running PrometheusServer scraping each job."""
    running: list[PrometheusServer] = []

    def start(texts: dict[str, str], scrape_interval: str = "1s") -> PrometheusServer:
        servers = exporters(texts)
        prom = PrometheusServer({job: [s.address] for job, s in servers.items()}, scrape_interval=scrape_interval)
        prom.exporters = servers
        running.append(prom)
        return prom

    yield start
    for prom in running:
        prom.close()


@pytest.fixture(scope="session")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `make test`, which installs Debian's chromium")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def browser_page(browser):
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def csp_violations(browser_page) -> list[str]:
    """Every Content-Security-Policy violation the page reports, on every page it opens.

    Chromium reports a blocked script, style or eval twice: a `securitypolicyviolation`
    event (recorded by a script Playwright injects before the page's own, outside its
    policy) and a console message "... violates the following Content Security Policy ...".
    """
    found: list[str] = []
    browser_page.expose_binding("__pbViolation", lambda source, text: found.append(text))
    browser_page.add_init_script(
        """document.addEventListener("securitypolicyviolation", function (e) {
             window.__pbViolation(e.violatedDirective + " blocked " + (e.blockedURI || "inline")
                                  + " at " + e.sourceFile + ":" + e.lineNumber);
           });"""
    )
    browser_page.on("console", lambda msg: found.append(msg.text) if "Content Security Policy" in msg.text else None)
    return found


@pytest.fixture
def screenshot_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# Tests that start something heavy: the real Prometheus binary, Chromium, or the demo fleet.
SLOW_MARKERS = {"prometheus", "browser", "demo"}
SLOW_FIXTURES = {"prometheus_with", "exporters", "browser", "browser_page"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if SLOW_MARKERS & {mark.name for mark in item.iter_markers()} or SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


# Playwright's sync API runs an event loop in this thread; Django refuses ORM calls
# from a thread with a running loop unless told this is deliberate (tests only).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
