"""The leak suspects page and the Diagnosis panel in real Chromium, with the CSP on."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from django.db import connection

from poolboard.diagnosis.models import AgentReport, Finding
from poolboard.fleet.models import Pool, PrometheusSource, Service
from poolboard.lib import diagnosis as engine
from tests.fleet.factories import write_samples

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def leaking_billing():
    """billing: in use climbing 3 → 9 of 10 over 14 min, a leak finding and an agent stack."""
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE fleet_poolsample")
    now = datetime.now(timezone.utc)
    source = PrometheusSource.objects.create(name="demo", url="http://127.0.0.1:9", presets=["db_pool"])
    service = Service.objects.create(name="billing", source=source, preset="db_pool", last_seen_at=now)
    pool = Pool.objects.create(service=service, instance="10.0.0.1:8080", name="main", sampled_at=now,
                               max=10, in_use=9, idle=1, pending=0, timeouts=0, acquisitions=240, hold_s=0.02)
    start = time.time() - 20 * 60
    rows = [(pool.id, start + i * 15, {"max": 10.0, "in_use": float(min(9, 3 + i // 10)), "idle": float(10 - min(9, 3 + i // 10)),
                                       "pending": 0.0, "acquisitions": 240.0, "hold_s": 0.02}) for i in range(80)]
    write_samples(rows)
    since = now - timedelta(minutes=14)
    Finding.objects.record({service.id: [engine.Finding(
        kind="leak", severity="crit", confidence=0.9, since=since,
        evidence=(engine.Evidence("in use rose 3 → 9 of 10 over 14 min while acquisitions stayed at 4.0/s ±0 %", since, now),),
        fix="Return the connection checked out in billing.exports.leaky_invoice_export.", suspected_leaked=6,
    )]}, now)
    AgentReport.objects.create(
        service=service, service_name="billing", instance="10.0.0.1:8080", fingerprint="f" * 40,
        function="billing.exports.leaky_invoice_export",
        stack='File "billing/exports.py", line 42, in leaky_invoice_export', count=6, oldest_hold_s=840,
        reported_at=now, received_at=now, first_reported_at=since,
    )
    yield service
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE fleet_poolsample")


def login(page, live_server) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-password")
    page.click("button[type=submit]")


def test_it_shows_the_leak_suspects_and_the_diagnosis_panel(
    live_server, browser_page, alice, leaking_billing, csp_violations, screenshot_dir
):
    page = browser_page
    login(page, live_server)
    page.goto(f"{live_server.url}/leaks/")
    suspect = page.locator("#suspect-billing")
    assert "~6 connections held" in suspect.inner_text()
    assert "billing.exports.leaky_invoice_export" in suspect.locator("details.stack summary").inner_text()
    assert "line 42, in leaky_invoice_export" in suspect.locator("details.stack pre").inner_text()
    page.screenshot(path=str(screenshot_dir / "leaks.png"), full_page=True)

    page.click("#suspect-billing h2 a")
    page.wait_for_selector("#pool-charts .chart-canvas canvas")
    panel = page.locator("#diagnosis")
    assert "leak suspected" in panel.inner_text() and "in use rose 3 → 9 of 10" in panel.inner_text()
    # The panel sits above the charts, and the evidence's range is drawn on them: sample the
    # connections chart's canvas inside the band (reddish) and left of it (plain background).
    box = page.locator('[data-chart="connections"] .chart-canvas canvas').first
    # uPlot draws on the next frame: wait for the band rather than read the canvas at once.
    band_drawn = """(canvas) => {
         const ctx = canvas.getContext("2d");
         const reddish = (x) => {  // band-coloured pixels in the middle of the plot at x
           let n = 0;
           for (let y = Math.round(canvas.height * 0.25); y < canvas.height * 0.6; y += 2) {
             const [r, g, b, a] = ctx.getImageData(Math.round(canvas.width * x), y, 1, 1).data;
             if (a > 0 && r > g + 5 && r > b + 5) n++;
           }
           return n;
         };
         return reddish(0.9) > 10 && reddish(0.35) === 0;
       }"""
    page.wait_for_function(band_drawn, arg=box.element_handle(), timeout=5000)
    page.screenshot(path=str(screenshot_dir / "diagnosis-panel.png"), full_page=True)
    assert csp_violations == []


def test_it_shows_the_empty_state_and_pages_a_large_fleet_of_suspects(live_server, browser_page, alice, screenshot_dir):
    page = browser_page
    login(page, live_server)
    page.goto(f"{live_server.url}/leaks/")
    assert "No leak suspected" in page.inner_text("#leaks-table")
    assert page.locator("header nav a[aria-current=page]").inner_text() == "Leak suspects"
    page.screenshot(path=str(screenshot_dir / "leaks-empty.png"), full_page=True)

    now = datetime.now(timezone.utc)
    source = PrometheusSource.objects.create(name="big", url="http://127.0.0.1:9", presets=["db_pool"])
    services = Service.objects.bulk_create(
        [Service(name=f"svc-{i:03d}", source=source, preset="db_pool", last_seen_at=now) for i in range(60)]
    )
    Finding.objects.record({s.id: [engine.Finding(
        kind="leak", severity="warn", confidence=0.7, since=now - timedelta(minutes=5),
        evidence=(engine.Evidence(f"{i} held", now - timedelta(minutes=5), now),), fix="Return it.", suspected_leaked=i,
    )] for i, s in enumerate(services)}, now)
    page.goto(f"{live_server.url}/leaks/")
    assert page.locator("article.suspect").count() == 50
    assert page.locator("article.suspect h2").first.inner_text() == "svc-059"  # most leaked first
    assert "page 1 of 2" in page.inner_text(".pager")
    page.screenshot(path=str(screenshot_dir / "leaks-60.png"))
    page.click("text=next →")
    assert page.locator("article.suspect").count() == 10
