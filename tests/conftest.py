"""Plain fixtures, built explicitly (healthchecks-style personas), no factory library.

- alice: a normal user; bob: staff (admin access).
- `prometheus_with`: the real Prometheus binary scraping exposition servers.
- `browser_page`: Playwright driving Debian's Chromium (/usr/bin/chromium).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.prom import ExpositionServer, PrometheusServer

FIXTURES = Path(__file__).parent / "fixtures"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def exposition(name: str) -> str:
    return (FIXTURES / "exposition" / f"{name}.prom").read_text()


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
def make_source(db):
    from poolboard.fleet.models import PrometheusSource

    def make(name: str = "main", url: str = "http://127.0.0.1:9", presets=None, **extra):
        return PrometheusSource.objects.create(
            name=name, url=url, presets=presets if presets is not None else ["db_pool", "hikaricp", "otel"], **extra
        )

    return make


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
def screenshot_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# Playwright's sync API runs an event loop in this thread; Django refuses ORM calls
# from a thread with a running loop unless told this is deliberate (tests only).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
