"""The weekly report in real Chromium (CSP on), and the PDF's first page as an image: both looked at."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

import pytest

from poolboard.databases.models import MonitoredServer
from poolboard.fleet.models import PrometheusSource
from poolboard.reports import demo_history, pdf
from poolboard.reports.models import Report

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]
NOW = datetime(2026, 12, 2, 10, tzinfo=UTC)


@pytest.fixture
def demo_reports(settings):
    settings.REPORT_TIME_ZONE = "Europe/Paris"
    PrometheusSource.objects.create(name="demo", url="http://127.0.0.1:9", presets=["db_pool"])
    MonitoredServer.objects.create(name="demo", host="127.0.0.1", port=1, dbname="poolboard_demo", user="root")
    demo_history.seed(NOW, weeks=5)
    return Report.objects.of_week("2026-W48")


def login(page, live_server) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-password")
    page.click("button[type=submit]")


def test_it_shows_last_weeks_report_with_charts(live_server, browser_page, alice, demo_reports, csp_violations,
                                                 screenshot_dir):
    page = browser_page
    login(page, live_server)
    page.goto(f"{live_server.url}/reports/")
    page.click("#reports-list a:has-text('2026-W48')")
    page.wait_for_selector("#services-table")
    assert page.locator("h1").inner_text() == "Weekly capacity report 2026-W48"
    assert page.locator(".banner.demo").is_visible()
    assert page.locator("svg.report-chart").count() >= 7  # one per service and the server
    assert "search" in page.locator(".actions").inner_text()
    # Sorting by name swaps only the table (htmx) and pushes the URL.
    page.click("#services-table th >> text=Service")
    page.wait_for_url("**sort=name**")
    first = page.locator("#services-table tbody tr").first.inner_text()
    assert first.startswith("billing")
    page.screenshot(path=str(screenshot_dir / "report-page.png"), full_page=True)
    assert csp_violations == []


def test_its_pdf_first_page_renders(demo_reports, screenshot_dir, tmp_path):
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf.render_pdf(demo_reports))
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    assert "Pages:" in info
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(path),
                    str(screenshot_dir / "report-pdf-page1")], check=True)
    assert (screenshot_dir / "report-pdf-page1.png").stat().st_size > 10_000
    text = subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "Weekly capacity report 2026-W48" in text and "Most worth doing" in text
