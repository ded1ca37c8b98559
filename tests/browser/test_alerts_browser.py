"""The Alerts page and a rule's backtest in real Chromium, with the CSP on."""

from __future__ import annotations

import pytest
from django.utils import timezone

from poolboard.notify.models import Silence
from tests.dashboard.alert_factories import alert_fleet, rule
from tests.fleet.factories import write_samples

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]

TICK = 15


def login(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def test_it_shows_firing_then_pending_and_silences_one_for_an_hour(
    live_server, browser_page, bob, make_service, csp_violations, screenshot_dir
):
    fleet = alert_fleet(make_service)
    page = browser_page
    login(page, live_server, "bob", "bob-password")
    assert page.locator("header nav a[href='/alerts/'] .count").inner_text() == "1"
    page.click("header nav a[href='/alerts/']")
    rows = page.locator("#alerts-table tr.alert-row")
    assert rows.count() == 2
    assert "firing" in rows.nth(0).inner_text() and "PoolSaturated" in rows.nth(0).inner_text()
    assert "pending" in rows.nth(1).inner_text() and "billing" in rows.nth(1).inner_text()
    page.screenshot(path=str(screenshot_dir / "alerts.png"), full_page=True)

    rows.nth(0).locator("button", has_text="silence 1 h").click()
    page.wait_for_selector(".messages li")
    assert "Silenced PoolSaturated (service=search) until" in page.inner_text(".messages")
    first = page.locator("#alerts-table tr.alert-row").nth(0)
    assert "silenced until" in first.inner_text()
    assert Silence.objects.get().created_by == "bob"
    # the page polls itself: a new firing alert appears without a reload
    from tests.dashboard.alert_factories import instance

    instance(fleet["waiting"], fleet["search"], "firing", minutes=4, fired_minutes=2, value=2.0)
    page.wait_for_function("() => document.querySelectorAll('#alerts-table tr.alert-row').length === 3", timeout=15000)
    assert page.locator("#nav-firing").inner_text() == "2"  # the top bar follows (out-of-band swap)
    page.screenshot(path=str(screenshot_dir / "alerts-silenced.png"), full_page=True)

    page.click("#alerts-table a:text(\"PoolSaturated\") >> nth=0")
    page.wait_for_selector("#rule-state")
    assert "utilization > 90" in page.inner_text("#rule-definition")
    page.screenshot(path=str(screenshot_dir / "alert-rule.png"), full_page=True)

    page.goto(f"{live_server.url}/services/{fleet['search'].pk}/")
    panel = page.locator("#service-alerts")
    assert "PoolSaturated" in panel.inner_text() and "silenced until" in panel.inner_text()
    panel.screenshot(path=str(screenshot_dir / "service-alerts-panel.png"))
    assert csp_violations == []


@pytest.fixture
def waiting_history(make_service, settings):
    """Two hours of search's waiting: 2 callers for 10 minutes, 1 for a minute, 3 for 20 minutes.

    Raw samples are not a Django-managed table: the transactional test's flush leaves them,
    so they are truncated here afterwards (a later test's daily partition would clash with them).
    """
    from django.db import connection

    settings.COLLECT_INTERVAL = TICK
    search = make_service("search", instances=1, max=10, in_use=5, pending=0)
    start = (int(timezone.now().timestamp()) // TICK) * TICK - 479 * TICK
    rows = []
    for i in range(480):
        waiting = 2.0 if 40 <= i < 80 else 1.0 if 160 <= i < 164 else 3.0 if 300 <= i < 380 else 0.0
        rows.append((search.pools.get().pk, start + i * TICK, {"max": 10.0, "in_use": 10.0 if waiting else 5.0, "pending": waiting}))
    write_samples(rows)
    yield rule("PoolWaiting", signal="waiting", threshold=0, for_s=120, severity="warning")
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE fleet_poolsample")


def test_it_draws_the_backtest_on_the_rules_admin_page_and_previews_an_edit(
    live_server, browser_page, bob, waiting_history, csp_violations, screenshot_dir
):
    page = browser_page
    login(page, live_server, "bob", "bob-password")
    page.goto(f"{live_server.url}/admin/alerts/alertrule/{waiting_history.pk}/change/")
    page.wait_for_selector("#backtest .chart-canvas canvas")
    panel = page.locator("#backtest")
    assert panel.locator("b.fired").inner_text() == "2" and panel.locator("b.notifications").inner_text() == "4"
    # uPlot draws on the next frame: wait until the firing spans are painted (reddish pixels)
    canvas = page.locator("#backtest .chart-canvas canvas").first
    reddish = """(canvas) => {
        const ctx = canvas.getContext("2d");
        let n = 0;
        for (let x = 0; x < canvas.width; x += 4) {
          const [r, g, b, a] = ctx.getImageData(x, Math.round(canvas.height * 0.3), 1, 1).data;
          if (a > 0 && r > g + 30 && r > b + 30) n++;
        }
        return n > 5;
      }"""
    page.wait_for_function(reddish, arg=canvas.element_handle(), timeout=5000)
    panel.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshot_dir / "backtest-change-form.png"), full_page=True)

    # an unsaved edit: 'for' 15 minutes -> only the 20-minute episode fires
    page.fill("#id_for_s", "900")
    page.locator("#id_for_s").dispatch_event("change")
    page.wait_for_selector("#backtest .pill.warn")
    assert "unsaved edit: for_s" in panel.inner_text()
    assert panel.locator("b.fired").inner_text() == "1" and panel.locator("b.firing-time").inner_text() == "5m"
    waiting_history.refresh_from_db()
    assert waiting_history.for_s == 120

    page.goto(f"{live_server.url}/admin/alerts/alertrule/{waiting_history.pk}/backtest/?range=6h")
    page.wait_for_selector("#backtest .chart-canvas canvas")
    page.wait_for_function(reddish, arg=page.locator("#backtest .chart-canvas canvas").first.element_handle(), timeout=5000)
    page.screenshot(path=str(screenshot_dir / "backtest.png"), full_page=True)
    assert csp_violations == []
