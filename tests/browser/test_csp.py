"""The pages under the Content-Security-Policy in real Chromium: nothing blocked, charts drawn.

`csp_violations` (tests/conftest.py) collects what Chromium reports, both as
`securitypolicyviolation` events and as console messages, on every page opened.
"""

from __future__ import annotations

import time

import pytest
from django.db import connection

from poolboard.fleet.models import Pool
from tests.fleet import factories
from tests.fleet.factories import write_samples
from tests.wait import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

@pytest.fixture
def charted_service():
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE fleet_poolsample")
    source = factories.source(name="demo")
    service = factories.service_with_pool(source, "search", max=10, in_use=6, idle=4, pending=0, timeouts=0)
    factories.service_with_pool(source, "billing", max=10, in_use=10, idle=0, pending=3, timeouts=1)
    pool = Pool.objects.get(service=service)
    now = time.time()
    write_samples(
        (pool.id, now - age, {"max": 10.0, "in_use": 5.0 + (age // 60) % 4, "idle": 5.0 - (age // 60) % 4, "pending": 0.0,
                              "acquire_s": 0.002, "hold_s": 0.05, "timeouts": 0.0})
        for age in range(0, 3600, 15)
    )
    yield service
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE fleet_poolsample")


def test_it_renders_every_page_without_a_csp_violation(browser_page, csp_violations, live_server, alice, charted_service) -> None:
    page = browser_page
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    response = page.goto(f"{live_server.url}/login/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-password")
    page.click("button[type=submit]")
    page.wait_for_selector("#fleet-table table.fleet")
    assert page.locator("table.fleet tbody tr").count() == 2
    # htmx runs under the policy: it took its config from the meta tag and injected no <style>.
    assert page.evaluate("htmx.config.allowEval") is False
    assert page.evaluate("document.querySelectorAll('head style').length") == 0

    page.goto(f"{live_server.url}/services/{charted_service.pk}/")
    page.wait_for_selector("[data-chart=connections] .chart-canvas canvas")
    assert page.locator(".chart-canvas canvas").count() >= 1
    assert page.locator(".chart-canvas .uplot").count() == page.locator(".chart-canvas canvas").count()
    # The database-side panel arrives by an htmx request after load: htmx works.
    page.wait_for_selector("#database-side:not(:has-text('Loading the database side'))")
    # A bar width set by a style attribute is applied (style-src-attr allows it): 6 of 10 in use.
    share = page.eval_on_selector(
        "td.util .bar .fill", "el => el.getBoundingClientRect().width / el.parentElement.getBoundingClientRect().width"
    )
    assert share == pytest.approx(0.6, abs=0.02)

    for path in ("/databases/", "/queries/slow/", "/leaks/"):
        assert page.goto(f"{live_server.url}{path}").status == 200, path
        page.wait_for_load_state("networkidle")

    assert csp_violations == []
    assert errors == []


def test_the_check_would_see_a_violation(browser_page, csp_violations, live_server) -> None:
    """The listeners are not blind: an inline script on a real page is blocked and reported both ways."""
    page = browser_page
    page.goto(f"{live_server.url}/login/")
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.ran = 1'; document.body.appendChild(s); }"
    )
    # Each page.evaluate lets Playwright deliver the reports the page has sent meanwhile.
    wait_until(lambda: page.evaluate("1") and len(csp_violations) >= 2, timeout=5, what="both CSP reports")
    assert page.evaluate("window.ran") is None
    assert any(v.startswith("script-src-elem blocked inline") for v in csp_violations), csp_violations
    assert any("violates the following Content Security Policy directive" in v for v in csp_violations), csp_violations


def test_the_admin_renders_without_a_csp_violation(browser_page, csp_violations, live_server, bob, charted_service) -> None:
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "bob")
    page.fill("#id_password", "bob-password")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    for path in ("/admin/", "/admin/fleet/service/", f"/admin/fleet/service/{charted_service.pk}/change/",
                 "/admin/fleet/prometheussource/add/", "/admin/axes/accessattempt/"):
        assert page.goto(f"{live_server.url}{path}").status == 200, path
        page.wait_for_load_state("load")
    assert csp_violations == []


def test_a_hidden_tab_does_not_poll_and_catches_up_when_shown(browser_page, live_server, alice, charted_service) -> None:
    """The visibility rule that replaced the hx-trigger eval filter (static/js/app.js)."""
    page = browser_page
    page.add_init_script("""
      window.__hidden = false;
      Object.defineProperty(document, "visibilityState", { get: function () { return window.__hidden ? "hidden" : "visible"; } });
    """)
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if request.headers.get("hx-request") else None)
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-password")
    page.click("button[type=submit]")
    page.wait_for_selector("#fleet-table table.fleet")

    # What the browser does when the tab goes to the background (the 10 s timer's requests
    # meet the same htmx:beforeRequest rule).
    page.evaluate("window.__hidden = true; document.dispatchEvent(new Event('visibilitychange'))")
    page.wait_for_timeout(300)
    assert polls == []

    with page.expect_request(lambda request: request.headers.get("hx-request") == "true"):
        page.evaluate("window.__hidden = false; document.dispatchEvent(new Event('visibilitychange'))")
    assert polls and polls[0].startswith(f"{live_server.url}/")
