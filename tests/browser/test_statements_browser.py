"""The slow-queries page, a statement's page and the service page's "queries holding this pool"
panel in real Chromium, with the CSP on; screenshots in test-artifacts/."""

from __future__ import annotations

import pytest
from django.utils import timezone

from tests.dashboard.statement_factories import make_statement, statement_fleet

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]


def login(page, live_server) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-password")
    page.click("button[type=submit]")


def test_it_draws_the_slow_queries_and_a_statement_page(
    live_server, browser_page, alice, monitored, make_service, settings, csp_violations, screenshot_dir
):
    fleet = statement_fleet(monitored, make_service, settings)
    # Two hours of a busier statement, so the statement page's charts have a shape.
    report = make_statement(
        monitored, "SELECT status, count(*), sum(amount_cents) FROM orders GROUP BY status", 444,
        now=timezone.now(), calls=[40 + (i * 37) % 90 for i in range(24)], mean_ms=50, rows_per_call=4, max_ms=900,
    )
    page = browser_page
    login(page, live_server)
    page.goto(f"{live_server.url}/queries/slow/")
    first_row = page.locator("table.statements tbody tr").first
    assert "SELECT pg_sleep($1)" in first_row.inner_text()
    assert "reports 3 of 5 in its pool (60%)" in first_row.inner_text()
    assert "6 calls" in first_row.inner_text()
    page.screenshot(path=str(screenshot_dir / "slow-queries-statements.png"), full_page=True)

    # A filter swaps the table through htmx (no full reload) and keeps the address.
    page.select_option("select[name=sort]", "calls")
    page.wait_for_url("**sort=calls**")
    assert "orders" in page.locator("table.statements tbody tr").first.inner_text()

    page.goto(f"{live_server.url}/statements/{report.pk}/")
    page.wait_for_selector('[data-chart="mean"] .chart-canvas canvas')
    assert page.locator("#statement-history .chart-canvas .uplot").count() == 2
    page.screenshot(path=str(screenshot_dir / "statement-page.png"), full_page=True)
    page.goto(f"{live_server.url}/statements/{fleet['sleep'].pk}/")
    assert "reports" in page.locator("#statement-history table.services").inner_text()
    assert "pid 4242" in page.locator("#episodes").inner_text()

    page.goto(f"{live_server.url}/services/{fleet['reports'].pk}/")
    page.wait_for_selector("#service-statements:not(:has-text('Loading the queries'))")
    panel = page.locator("#service-statements").inner_text()
    assert "SELECT pg_sleep($1)" in panel and "3 of 5 (60%)" in panel
    page.locator("#service-statements").screenshot(path=str(screenshot_dir / "service-statements-panel.png"))
    assert csp_violations == []


def test_it_says_how_to_enable_pg_stat_statements_and_keeps_the_episode_list(
    live_server, browser_page, alice, monitored, make_service, settings, csp_violations, screenshot_dir
):
    from poolboard.sources import pgstatements
    from poolboard.statements.models import Statement, StatementsStatus

    fleet = statement_fleet(monitored, make_service, settings)
    Statement.objects.all().delete()  # a server that never gave statistics
    StatementsStatus.objects.filter(server=monitored).update(
        state=pgstatements.NOT_PRELOADED, message=pgstatements.enable_message(pgstatements.NOT_PRELOADED, "app", "root"),
    )
    page = browser_page
    login(page, live_server)
    page.goto(f"{live_server.url}/queries/slow/")
    banner = page.locator(".statements-problem").inner_text()
    assert "No statement statistics from orders-db" in banner and "shared_preload_libraries = 'pg_stat_statements'" in banner
    assert "No statement ran in the last 24h on a server whose statistics poolboard can read." in page.inner_text("main")
    fallback = page.locator("#statements-table table").last.inner_text()
    assert "SELECT pg_sleep($1)" in fallback and "reports" in fallback
    page.screenshot(path=str(screenshot_dir / "slow-queries-not-enabled.png"), full_page=True)
    page.click(f"a[href='/queries/{fleet['sleep'].query.fingerprint}/']")
    assert "pid 4242" in page.inner_text("main")
    assert csp_violations == []
