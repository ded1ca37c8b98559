"""The database pages in real Chromium: hostile query text stays text (no request, no dialog)."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from poolboard.databases.models import snapshot_interval
from poolboard.databases.snapshots import snapshot_server
from tests.pg import Sessions, throwaway_database, wait_for_next_slot

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


@pytest.fixture
def second_db(fleet_db):
    """Another database on the same server, with a billing session idle in transaction."""
    with throwaway_database(f"pb_test_browser_second_{os.getpid()}") as name:
        second = Sessions(name)
        second.idle_in_transaction("billing", "SELECT 2")
        yield name
        second.close()


def test_it_draws_the_server_and_slow_queries_pages(
    fleet_db, second_db, alice, live_server, browser_page, csp_violations, screenshot_dir
):
    db, sessions = fleet_db
    # A transaction that ends between the two snapshots: its episode has both bounds.
    ending = sessions.idle_in_transaction("cron", "SELECT 1")
    sessions.wait_seen({"billing": "idle in transaction", "reports": "active", "cron": "idle in transaction"}, older_than=1)
    assert snapshot_server(db).status == "ok"
    ending.rollback()
    wait_for_next_slot(db.snapshots.latest("taken_at").taken_at, snapshot_interval())
    assert snapshot_server(db).status == "ok"
    page = browser_page
    login(page, live_server)
    page.goto(live_server.url + "/databases/")
    row = page.locator("#databases-table tbody tr", has_text="orders-db")
    expect(row).to_contain_text(sessions.dbname)
    expect(row).to_contain_text(second_db)
    page.screenshot(path=str(screenshot_dir / "databases-list.png"), full_page=True)
    page.goto(live_server.url + "/servers/orders-db/")
    assert page.locator(".budget .seg").count() >= 3
    assert page.locator(".budget .warn-line").count() == 1
    expect(page.locator("#db-databases")).to_contain_text(second_db)
    expect(page.locator("#recent-episodes")).to_contain_text("≤")  # the ended transaction, bounded
    page.screenshot(path=str(screenshot_dir / "server-page.png"), full_page=True)
    # One database: the sessions table narrows to it through htmx; the budget stays the server's.
    page.select_option("select[name=database]", second_db)
    expect(page.locator("table.sessions")).not_to_contain_text("reports")
    expect(page.locator("table.sessions")).to_contain_text(second_db)
    assert page.locator(".budget .seg").count() >= 3
    page.screenshot(path=str(screenshot_dir / "server-page-one-database.png"), full_page=True)
    page.goto(live_server.url + "/queries/slow/")
    assert "pg_sleep($1)" in page.inner_text("main") and "reports" in page.inner_text("main")
    page.screenshot(path=str(screenshot_dir / "slow-queries-page.png"), full_page=True)
    assert csp_violations == []  # budget bars, sessions table and filters all pass the CSP
