"""The Sizing page and the server page's what-if calculator in real Chromium, with the CSP on."""

from __future__ import annotations

import pytest

from poolboard.fleet.models import Service
from tests.sizing.factories import demo_fleet_stored

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]


def login(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def test_the_sizing_page_and_the_what_if_calculator(live_server, browser_page, bob, make_source, csp_violations,
                                                    screenshot_dir):
    server, _now = demo_fleet_stored(make_source())
    page = browser_page
    login(page, live_server, "bob", "bob-password")
    page.click("header nav a[href='/sizing/']")
    page.wait_for_selector("#server-demo .ledger .seg")
    assert "Within budget: if every pool filled, 58 of 84 usable connections." in page.inner_text("#server-demo")
    assert "grow" in page.inner_text("#rec-search") and "+10" in page.inner_text("#rec-search")
    assert "fix the leak first" in page.inner_text("#rec-billing")
    # The bar: one segment per pool and the surge, the 80 % line left of usable.
    assert page.locator("#server-demo .ledger .seg").count() == 7
    warn_x = page.locator("#server-demo .ledger .warn-line").bounding_box()["x"]
    usable_x = page.locator("#server-demo .ledger .usable-line").bounding_box()["x"]
    assert warn_x < usable_x
    page.screenshot(path=str(screenshot_dir / "sizing.png"), full_page=True)

    page.goto(f"{live_server.url}/servers/{server.name}/")
    page.wait_for_selector("#what-if form")
    page.select_option("#what-if select[name=pool]", "search")
    page.fill("#what-if input[name=max]", "20")
    page.fill("#what-if input[name=replicas]", "4")
    url = page.url
    page.click("#what-if button[type=submit]")
    # Filling "max" already sent a change (search at 20 × 1); wait for the answer with both values.
    page.wait_for_selector("#what-if h3:has-text('20 per process × 4 replicas')")
    assert page.url == url  # no page reload: the calculator swapped itself
    text = page.inner_text("#what-if")
    assert "Overcommitted: if every pool filled, 143 connections would be asked of a server that accepts 84." in text
    assert page.locator("#what-if .verdict.error").count() == 1
    page.locator("#what-if").screenshot(path=str(screenshot_dir / "sizing-what-if.png"))

    # The service page loads its own recommendation after the page.
    page.goto(f"{live_server.url}/services/{Service.objects.get(name='search').pk}/")
    page.wait_for_selector("#service-sizing .advice.grow")
    assert "max 15 per process (+10 from 5)" in page.inner_text("#service-sizing")
    page.locator("#service-sizing").screenshot(path=str(screenshot_dir / "sizing-service-panel.png"))
    assert csp_violations == []


def test_a_standby_below_its_primary_shows_on_its_ledger_and_server_page(live_server, browser_page, bob,
                                                                          csp_violations, screenshot_dir):
    from django.utils import timezone

    from tests.sizing.factories import server_with_snapshot

    now = timezone.now()
    primary = server_with_snapshot("orders-db", now, max_connections=200)
    replica = server_with_snapshot("orders-replica", now, max_connections=100)
    replica.in_recovery, replica.primary = True, primary
    replica.save()
    page = browser_page
    login(page, live_server, "bob", "bob-password")
    page.goto(f"{live_server.url}/sizing/")
    error = page.locator("#server-orders-replica .standby-error")
    assert "raise max_connections on replica orders-replica to at least 200" in error.inner_text()
    assert page.locator("#server-orders-db .standby-error").count() == 0
    page.locator("#server-orders-replica").screenshot(path=str(screenshot_dir / "sizing-standby.png"))
    page.goto(f"{live_server.url}/servers/orders-replica/")
    assert "its primary orders-db has 200" in page.inner_text("#db-budget .standby-error")
    page.locator("#db-budget").screenshot(path=str(screenshot_dir / "server-standby.png"))
    assert csp_violations == []
