"""The Reports pages: the list, one report (HX partial, CSV, PDF), the profile's subscription
and the unsubscribe link."""

from __future__ import annotations

import csv
import io
import re
import subprocess
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from poolboard.lib import capacity
from poolboard.reports import build
from poolboard.reports.models import Subscription
from tests.reports import factories
from tests.reports.test_build import PREVIOUS, WEEK, busy_week, quiet_week

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _report_settings(settings):
    settings.REPORT_TIME_ZONE = "Europe/Paris"
    settings.PUBLIC_URL = "http://poolboard.test"


@pytest.fixture
def report(make_service):
    search = make_service("search", "hikaricp", instances=1)
    factories.week_of_rollups(search.pools.get(), PREVIOUS, quiet_week)
    factories.week_of_rollups(search.pools.get(), WEEK, busy_week)
    quiet = make_service("quiet", instances=1)
    factories.week_of_rollups(quiet.pools.get(), WEEK, lambda i, at: {"in_use_avg": 1, "max_avg": 10})
    return build.build(WEEK, WEEK.end + timedelta(hours=1))


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_it_lists_reports_newest_first(alice_client, report):
    build.build(WEEK.previous(), WEEK.end)
    response = alice_client.get(reverse("dashboard:reports"))
    assert response.status_code == 200
    body = response.content.decode()
    assert body.index("2026-W47") < body.index("2026-W46")
    assert 'aria-current="page">Reports' in body


def test_it_says_how_to_get_a_first_report(alice_client):
    body = alice_client.get(reverse("dashboard:reports")).content.decode()
    assert "No report yet" in body and "manage.py report --week" in body


def test_it_shows_one_report_with_its_figures_and_charts(alice_client, report):
    response = alice_client.get(reverse("dashboard:report", args=[WEEK.key]))
    assert response.status_code == 200
    body = response.content.decode()
    text = text_of(body)
    assert "Weekly capacity report 2026-W47" in text
    # search: p95 40 %, p99 90 %, peak 100 % (↑ +50 pts), saturated 40 min (new).
    row = text_of(re.search(r'<tr id="row-search">.*?</tr>', body, re.S).group())
    assert "100 % ↑ +50 pts" in row and "40 % →" in row and "90 %" in row and "40 min new" in row
    assert body.count("<svg") >= 2  # a chart per service
    assert "No monitored server" in text
    assert "search: saturated 40 min this week" in text


def test_it_sorts_the_services_table_in_an_htmx_partial(alice_client, report):
    url = reverse("dashboard:report", args=[WEEK.key])
    response = alice_client.get(url + "?sort=name&dir=asc", headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="services-table">') and "<html" not in body
    assert body.index("row-quiet") < body.index("row-search")
    body = alice_client.get(url + "?sort=p95&dir=desc", headers={"HX-Request": "true"}).content.decode()
    assert body.index("row-search") < body.index("row-quiet")
    # Junk sorts fall back to the default instead of failing.
    assert alice_client.get(url + "?sort=<x>&dir=sideways").status_code == 200


def test_it_answers_404_for_a_week_without_report(alice_client, report):
    response = alice_client.get(reverse("dashboard:report", args=["2020-W01"]))
    assert response.status_code == 404
    response = alice_client.get(reverse("dashboard:report", args=[WEEK.key]) + "?version=7")
    assert response.status_code == 404


def test_it_downloads_each_table_as_csv(alice_client, report):
    response = alice_client.get(reverse("dashboard:report-csv", args=[WEEK.key, "services"]))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    search = next(r for r in rows if r["service"] == "search")
    assert float(search["saturation_minutes"]) == pytest.approx(40)
    assert float(search["p95_util"]) == pytest.approx(0.4)
    assert alice_client.get(reverse("dashboard:report-csv", args=[WEEK.key, "databases"])).status_code == 200
    assert alice_client.get(reverse("dashboard:report-csv", args=[WEEK.key, "secrets"])).status_code == 404


def test_saturation_minutes_are_minutes_with_callers_waiting_and_the_report_says_so(alice_client, report):
    from html import unescape

    from poolboard.reports.models import Report

    text = unescape(text_of(alice_client.get(reverse("dashboard:report", args=[WEEK.key])).content.decode()))
    assert "Saturated: minutes with callers waiting for a connection (waiting > 0)" in text
    rows = list(csv.DictReader(io.StringIO(
        alice_client.get(reverse("dashboard:report-csv", args=[WEEK.key, "services"])).content.decode())))
    by_name = {r["service"]: r for r in rows}
    # search was full 100 minutes and made callers wait 40 of them; quiet's exporter gives no
    # waiting count: unknown, not 0.
    assert float(by_name["search"]["saturation_minutes"]) == pytest.approx(40)
    assert by_name["quiet"]["saturation_minutes"] == ""
    # A report stored before the definition narrowed keeps saying what it counted.
    Report.objects.filter(pk=report.pk).update(inputs={**report.inputs, "figures_version": 1})
    text = text_of(alice_client.get(reverse("dashboard:report", args=[WEEK.key])).content.decode())
    assert "Saturated: minutes with callers waiting or every connection in use" in text


def test_its_pdf_carries_the_pages_numbers(alice_client, report, tmp_path):
    page = alice_client.get(reverse("dashboard:report", args=[WEEK.key])).content.decode()
    response = alice_client.get(reverse("dashboard:report-pdf", args=[WEEK.key]))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    path = tmp_path / "r.pdf"
    path.write_bytes(response.content)
    text = " ".join(subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                                   check=True).stdout.split())
    row = text_of(re.search(r'<tr id="row-search">.*?</tr>', page, re.S).group()).strip()
    assert row.split()[0] == "search"
    for figure in ("100 % ↑ +50 pts", "40 % →", "90 %", "40 min new"):
        assert figure in row and figure in text, figure
    assert "Weekly capacity report 2026-W47" in text


def test_it_saves_a_subscription_from_the_profile(alice_client, alice, make_service):
    make_service("search")
    make_service("checkout")
    response = alice_client.get(reverse("dashboard:profile"))
    assert response.status_code == 200 and "Weekly capacity report by email" in response.content.decode()
    response = alice_client.post(reverse("dashboard:profile"), {
        "active": "on", "weekday": "2", "hour": "9", "time_zone": "Europe/Paris", "services": "search, checkout",
        "databases": "",
    })
    assert response.status_code == 302
    sub = Subscription.objects.get(user=alice)
    assert (sub.active, sub.weekday, sub.hour, sub.services, sub.databases) == (True, 2, 9, ["search", "checkout"], [])
    local = sub.next_send_at.astimezone(capacity.zone("Europe/Paris"))
    assert local.weekday() == 2 and local.hour == 9 and sub.next_send_at > timezone.now()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("time_zone", "Mars/Olympus", "Unknown time zone"), ("hour", "25", "less than or equal to 23"),
     ("services", "serach", "No service named serach."), ("databases", "nope", "No monitored server named nope.")],
)
def test_it_says_what_is_wrong_with_a_bad_subscription(alice_client, field, value, message):
    data = {"active": "on", "weekday": "0", "hour": "9", "time_zone": "UTC", "services": "", "databases": ""}
    response = alice_client.post(reverse("dashboard:profile"), {**data, field: value})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Subscription.objects.exists()


def test_it_unsubscribes_by_link_without_login(client, alice):
    sub = Subscription.objects.create(user=alice, weekday=0, hour=9, time_zone="UTC")
    url = reverse("dashboard:report-unsubscribe", args=[sub.unsubscribe_token()])
    page = client.get(url)
    assert page.status_code == 200 and "Unsubscribe?" in page.content.decode()
    assert Subscription.objects.get(pk=sub.pk).active is True  # a GET (a link scanner) changes nothing
    done = client.post(url)  # RFC 8058 one-click: no CSRF token, no session
    assert done.status_code == 200 and "Unsubscribed" in done.content.decode()
    assert Subscription.objects.get(pk=sub.pk).active is False


def test_it_refuses_a_forged_unsubscribe_link(client, alice):
    sub = Subscription.objects.create(user=alice, weekday=0, hour=9, time_zone="UTC")
    token = sub.unsubscribe_token()
    response = client.post(reverse("dashboard:report-unsubscribe", args=[token[:-3] + "abc"]))
    assert response.status_code == 404 and "This link does not work" in response.content.decode()
    assert Subscription.objects.get(pk=sub.pk).active is True


@pytest.mark.parametrize("name", ["dashboard:reports", "dashboard:profile"])
def test_the_list_and_the_profile_answer_an_htmx_request_with_their_page(alice_client, report, name):
    # Neither swaps a part of itself: an HX-Request (a boosted link) gets the whole page.
    response = alice_client.get(reverse(name), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "<html" in response.content.decode()


def test_it_says_what_to_install_when_pdfs_cannot_be_made(alice_client, report, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pango(name, *args, **kwargs):
        if name == "weasyprint":
            raise OSError("cannot load library 'libpango-1.0-0'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pango)
    response = alice_client.get(reverse("dashboard:report-pdf", args=[WEEK.key]))
    assert response.status_code == 503
    assert "apt-get install libpango-1.0-0 libpangoft2-1.0-0" in response.content.decode()


def test_a_change_too_small_to_show_reads_as_none(alice_client, make_service):
    # 0.2 saturated minutes after a week of none: shown as "0 min", so no "new" beside it.
    svc = make_service("calm", instances=1)
    factories.week_of_rollups(svc.pools.get(), PREVIOUS, quiet_week)
    factories.week_of_rollups(svc.pools.get(), WEEK, lambda i, at: {**quiet_week(i, at), "waiting_s": 12 if i == 0 else 0})
    build.build(WEEK, WEEK.end)
    body = alice_client.get(reverse("dashboard:report", args=[WEEK.key])).content.decode()
    row = text_of(re.search(r'<tr id="row-calm">.*?</tr>', body, re.S).group())
    assert "0 min →" in row and "new" not in row
