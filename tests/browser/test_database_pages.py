"""The database pages in real Chromium: hostile query text stays text (no request, no dialog)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from poolboard.databases.models import snapshot_interval
from poolboard.databases.snapshots import snapshot_server
from tests.pg import wait_for_next_slot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

HOSTILE_RAW = (
    "SELECT pg_sleep(60), '<img src=x onerror=alert(1)>' AS a,"
    " '<div hx-get=\"/boom-literal\" hx-trigger=\"load\">x</div>' AS b,"
    " 1 AS \"<div hx-get='/boom-ident' hx-trigger='load'>y</div>\","
    " 2 AS \"<script>alert('ident')</script>\", '{{7*7}}' AS c"
)


def login(page, live_server) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-password")
    page.click("button[type=submit]")


@pytest.fixture
def fleet_db(monitored, sessions, make_service, fast_slots):
    for name in ("billing", "reports", "search", "hostile"):
        make_service(name)
    for _ in range(4):
        sessions.idle("billing")
    sessions.idle_in_transaction("billing", "UPDATE pg_class SET relname = relname WHERE false")
    sessions.idle("search")
    sessions.active("reports", "SELECT pg_sleep(60), count(*) FROM pg_class WHERE relname = 'secret-literal'")
    return monitored, sessions


def take_two_snapshots(db, sessions):
    # Past the 1 s thresholds, then a second snapshot in the next slot: episodes with a history.
    sessions.wait_seen({"billing": "idle in transaction", "reports": "active"}, older_than=1)
    assert snapshot_server(db).status == "ok"
    wait_for_next_slot(db.snapshots.latest("taken_at").taken_at, snapshot_interval())
    assert snapshot_server(db).status == "ok"


def test_it_keeps_hostile_query_text_inert(fleet_db, settings, alice, live_server, browser_page):
    db, sessions = fleet_db
    settings.QUERY_TEXT_MODE = "raw"  # the worst case: literals kept as sent
    sessions.active("hostile", HOSTILE_RAW)
    # Past the 1 s query threshold before the snapshots, or it is not an episode yet.
    sessions.wait_seen({"hostile": "active"}, older_than=1)
    take_two_snapshots(db, sessions)

    page = browser_page
    requests, dialogs = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    login(page, live_server)
    for url in ["/servers/orders-db/", "/queries/slow/"]:
        page.goto(live_server.url + url)
        page.wait_for_load_state("networkidle")
        text = page.inner_text("main")
        assert "<img src=x onerror=alert(1)>" in text  # shown as text
        assert "<script>alert('ident')</script>" in text
        assert page.locator("main img").count() == 0
        assert page.locator("main script").count() == 0
    # A filter change swaps the live region through htmx: still inert afterwards.
    page.goto(live_server.url + "/servers/orders-db/")
    expect(page.locator("#db-live")).to_contain_text("secret-literal")  # the reports session, before the filter
    page.select_option("select[name=app]", "hostile")
    # Swapped once the other services' sessions are gone from the live region.
    expect(page.locator("#db-live")).not_to_contain_text("secret-literal")
    assert "<img src=x onerror=alert(1)>" in page.inner_text("#db-live")
    assert not [u for u in requests if "boom" in u or "/x" == u[-2:]], requests
    assert dialogs == []
    assert page.locator("text=Raw query text is being stored").count() == 1


def test_it_draws_the_database_and_slow_queries_pages(fleet_db, alice, live_server, browser_page, csp_violations, screenshot_dir):
    db, sessions = fleet_db
    take_two_snapshots(db, sessions)
    page = browser_page
    login(page, live_server)
    page.goto(live_server.url + "/servers/orders-db/")
    assert page.locator(".budget .seg").count() >= 3
    assert page.locator(".budget .warn-line").count() == 1
    page.screenshot(path=str(screenshot_dir / "database-page.png"), full_page=True)
    page.goto(live_server.url + "/queries/slow/")
    assert "pg_sleep($1)" in page.inner_text("main") and "reports" in page.inner_text("main")
    page.screenshot(path=str(screenshot_dir / "slow-queries-page.png"), full_page=True)
    assert csp_violations == []  # budget bars, sessions table and filters all pass the CSP
