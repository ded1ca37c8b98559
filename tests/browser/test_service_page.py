"""The service page in real Chromium: uPlot charts drawn from the embedded JSON, range buttons."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone

import pytest
from django.db import connection

from poolboard.fleet.models import Pool, PrometheusSource, Service
from poolboard.history import rollup
from tests.fleet.factories import write_samples

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


@pytest.fixture
def busy_service():
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE fleet_poolsample")
    now = time.time()
    source = PrometheusSource.objects.create(name="demo", url="http://127.0.0.1:9", presets=["hikaricp"])
    service = Service.objects.create(name="search", source=source, preset="hikaricp", last_seen_at=datetime.now(timezone.utc))
    rows = []
    for i in range(3):
        pool = Pool.objects.create(
            service=service, instance=f"10.0.0.{i + 1}:8080", name="HikariPool-1",
            sampled_at=datetime.now(timezone.utc), max=10, min=10, in_use=6 + i, idle=4 - i, pending=0, timeouts=0,
            acquire_s=0.003, hold_s=0.08,
        )
        t = now - 8 * 86400
        while t <= now:
            # Busier by day, a surge with waiters every few hours; no samples 3-2 hours ago.
            if not now - 3 * 3600 <= t < now - 2 * 3600:
                day = 0.5 + 0.4 * math.sin(2 * math.pi * t / 86400 + i)
                surge = (t // 600) % 30 == 0
                in_use = 10.0 if surge else round(10 * day)
                rows.append((pool.id, t, {
                    "max": 10.0, "min": 10.0, "in_use": in_use, "idle": 10.0 - in_use,
                    "pending": 4.0 + i if surge else 0.0, "timeouts": 1.0 if surge and i == 0 else 0.0,
                    "acquire_s": 0.25 if surge else 0.002 + 0.002 * day, "hold_s": 0.06 + 0.04 * day,
                }))
            t += 15 if t > now - 86400 else 60
    write_samples(rows)
    start = datetime.fromtimestamp(now - 8 * 86400, tz=timezone.utc)
    end = datetime.fromtimestamp(now + 1, tz=timezone.utc)
    rollup.rollup(rollup.RES_5M, start, end)
    rollup.rollup(rollup.RES_1H, start, end)
    yield service
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE fleet_poolsample")


def login(page, live_server) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-password")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def test_it_draws_the_charts_and_switches_range(browser_page, live_server, alice, busy_service, screenshot_dir) -> None:
    page = browser_page
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, live_server)

    page.goto(f"{live_server.url}/services/{busy_service.pk}/")
    page.wait_for_selector("[data-chart=timeouts] .chart-canvas canvas")
    assert page.locator(".chart-canvas canvas").count() == 3
    assert page.locator(".chart-canvas .uplot").count() == 3
    assert "HikariCP does not export closed connections" in page.inner_text("#pool-charts")
    legend = page.inner_text("[data-chart=connections]").lower()
    assert "in use" in legend and "waiting" in legend
    page.screenshot(path=str(screenshot_dir / "service-1h.png"), full_page=True)

    page.click("nav.ranges >> text=7d")
    page.wait_for_url("**/?range=7d")
    page.wait_for_selector("#pool-charts .ranges a.on >> text=7d")
    page.wait_for_selector("[data-chart=connections] .chart-canvas canvas")
    assert "5-minute rollups" in page.inner_text("#pool-charts")
    # The old charts were destroyed, not stacked up.
    assert page.locator(".chart-canvas canvas").count() == 3
    page.screenshot(path=str(screenshot_dir / "service-7d.png"), full_page=True)

    page.go_back()
    page.wait_for_url(f"**/services/{busy_service.pk}/")
    page.wait_for_selector("#pool-charts .ranges a.on >> text=1h")
    page.wait_for_selector("[data-chart=connections] .chart-canvas canvas")
    assert page.locator(".chart-canvas canvas").count() == 3
    assert errors == []
