"""The overview in real Chromium: log in through the form, see the fleet, sort it."""

from __future__ import annotations

import pytest

from tests.fleet import factories

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


@pytest.fixture
def demo_like_fleet():
    src = factories.source(name="demo")
    factories.service_with_pool(src, "search", max=5, in_use=5, idle=0, pending=11, timeouts=0, acquire_s=0.42, hold_s=0.09)
    factories.service_with_pool(src, "billing", max=10, in_use=7, idle=3, pending=0, timeouts=2)
    factories.service_with_pool(src, "checkout", max=8, in_use=2, idle=6, pending=0, timeouts=0)
    factories.service_with_pool(src, "notifications", max=6, in_use=2, idle=4, pending=0, timeouts=0)
    factories.service_with_pool(src, "reports", max=6, in_use=5, idle=1, pending=0, timeouts=0)
    factories.service_with_pool(src, "sessions", max=5, in_use=1, idle=4, pending=0, timeouts=0)
    factories.service_with_pool(src, "legacy-batch", age_s=4000, max=4, in_use=0, idle=4)
    return src


def test_it_logs_in_and_shows_the_fleet(browser_page, live_server, alice, demo_like_fleet, screenshot_dir) -> None:
    page = browser_page
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    page.goto(f"{live_server.url}/")
    assert "/login/" in page.url
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-password")
    page.click("button[type=submit]")
    page.wait_for_selector("#fleet-table table.fleet")

    rows = page.locator("table.fleet tbody tr")
    assert rows.count() == 7
    assert page.locator("table.fleet tbody tr").first.inner_text().strip().startswith("CRIT")
    assert "exhausted: all connections in use, 11 waiting" in page.inner_text("#fleet-table")
    assert page.evaluate("typeof window.htmx") == "object"
    page.screenshot(path=str(screenshot_dir / "overview.png"), full_page=True)

    # Sorting by name swaps the table in place and updates the address bar.
    page.click("th >> text=Service")
    page.wait_for_url("**/?sort=name*")
    page.wait_for_function("document.querySelectorAll('table.fleet tbody tr a')[1].textContent === 'checkout'")
    names = page.eval_on_selector_all("table.fleet tbody tr td:nth-child(2) > a", "els => els.map(e => e.textContent)")
    assert names == sorted(names)
    assert errors == []


def test_the_empty_state_tells_a_new_user_what_to_do(browser_page, live_server, bob, screenshot_dir) -> None:
    page = browser_page
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "bob")
    page.fill("#id_password", "bob-password")
    page.click("button[type=submit]")
    page.wait_for_selector(".empty")
    assert "No Prometheus source yet" in page.inner_text(".empty")
    page.screenshot(path=str(screenshot_dir / "overview-empty.png"))
    page.click("text=Admin › Fleet › Prometheus sources")
    assert "/admin/fleet/prometheussource/add/" in page.url


def test_a_large_fleet_with_a_failing_source_pages_and_says_data_is_stale(
    browser_page, live_server, alice, screenshot_dir
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    src = factories.source(
        name="prod",
        last_success_at=timezone.now() - timedelta(minutes=7),
        last_error_at=timezone.now() - timedelta(seconds=20),
        last_error="Prometheus at http://prometheus:9090 did not answer within 10s",
    )
    for i in range(150):
        factories.service_with_pool(src, f"svc-{i:03d}", age_s=420, max=20, in_use=i % 21, idle=20 - i % 21, pending=0)
    page = browser_page
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-password")
    page.click("button[type=submit]")
    page.wait_for_selector("#fleet-table")

    banner = page.inner_text(".banner.stale")
    assert "Data stale since" in banner and "did not answer within 10s" in banner
    assert page.locator("table.fleet tbody tr").count() == 100
    assert "page 1 of 2" in page.inner_text(".pager")
    page.screenshot(path=str(screenshot_dir / "overview-large-stale.png"))
    page.click(".pager >> text=next →")
    page.wait_for_selector(".pager >> text=page 2 of 2")
    assert page.locator("table.fleet tbody tr").count() == 50
