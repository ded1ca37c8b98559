"""Once per period, once per subscriber: the beat's claims, and what the email carries."""

from __future__ import annotations

import re
import subprocess
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.urls import reverse

from poolboard.notify.channels.email import report_message
from poolboard.notify.dispatch import dispatch_due
from poolboard.notify.models import Notification
from poolboard.reports import delivery
from poolboard.reports.models import Report, Subscription

from . import factories
from .test_build import PREVIOUS, WEEK, busy_week, quiet_week

# Tuesday of the week after WEEK, 10:00 UTC: WEEK is the last complete one.
NOW = WEEK.end + timedelta(days=1, hours=9)


@pytest.fixture
def fleet(make_service):
    search = make_service("search", "hikaricp", instances=1)
    factories.week_of_rollups(search.pools.get(), PREVIOUS, quiet_week)
    factories.week_of_rollups(search.pools.get(), WEEK, busy_week)
    other = make_service("checkout", instances=1)
    factories.week_of_rollups(other.pools.get(), WEEK, quiet_week)
    return search


def due_subscription(user, **extra) -> Subscription:
    return Subscription.objects.create(user=user, weekday=1, hour=9, time_zone="UTC",
                                       next_send_at=NOW - timedelta(minutes=5), **extra)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_report_tasks_make_one_report_and_one_email(fleet, alice):
    due_subscription(alice)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def task() -> None:
        try:
            barrier.wait(timeout=30)
            results.append(delivery.run(NOW))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=task) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors
    assert Report.objects.filter(week=WEEK.key).count() == 1
    assert sorted(r["queued"] for r in results) == [0, 1]
    assert sum(1 for r in results if r["built"]) == 1
    assert Notification.objects.filter(kind="report").count() == 1
    # A third run later the same week builds and sends nothing more.
    assert delivery.run(NOW + timedelta(hours=2)) == {"built": None, "queued": 0}
    dispatch_due(NOW + timedelta(seconds=1))
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["alice@example.org"]


@pytest.mark.django_db
def test_it_sends_nothing_before_the_report_exists_and_keeps_the_subscription_due(alice, fleet):
    sub = due_subscription(alice)
    assert delivery.send_due(NOW) == 0
    sub.refresh_from_db()
    assert sub.next_send_at == NOW - timedelta(minutes=5)


@pytest.mark.django_db
def test_it_sends_each_subscriber_only_their_services(alice, bob, fleet):
    due_subscription(alice, services=["search"])
    due_subscription(bob)
    assert delivery.run(NOW)["queued"] == 2
    payloads = {n.payload["to"][0]: n.payload for n in Notification.objects.filter(kind="report")}
    assert "checkout" not in payloads["alice@example.org"]["text"]
    assert "checkout" in payloads["bob@example.org"]["text"]
    # Next week's send is due on the chosen weekday and hour.
    sub = Subscription.objects.get(user=alice)
    assert sub.next_send_at.weekday() == 1 and sub.next_send_at.hour == 9 and sub.next_send_at > NOW
    assert sub.last_sent_week == WEEK.key


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


@pytest.mark.django_db
def test_the_emails_html_text_and_pdf_carry_the_pages_numbers(alice, alice_client, fleet, tmp_path):
    from poolboard.databases.models import Episode, QueryFingerprint
    from poolboard.diagnosis.models import Finding
    from poolboard.fleet.models import Service

    checkout = Service.objects.get(name="checkout")
    Finding.objects.create(service=checkout, kind="leak", severity="crit", confidence=0.8,
                           opened_at=WEEK.end - timedelta(days=1), last_seen_at=WEEK.end,
                           summary="in use climbing without load", fix="find it")
    fp = QueryFingerprint.objects.create(fingerprint="abcd", text="SELECT pg_sleep($1)", first_seen=WEEK.start,
                                         last_seen=WEEK.start)
    at = WEEK.start + timedelta(hours=10)
    Episode.objects.create(server=factories.server(), kind="long_query", pid=100, started=at, first_seen=at,
                           last_seen=at, ended=at + timedelta(seconds=90), peak_age_s=90, service=checkout, query=fp)
    due_subscription(alice)
    delivery.run(NOW)
    payload = Notification.objects.get(kind="report").payload
    message = report_message(payload, payload["to"], "key-1")
    page = alice_client.get(reverse("dashboard:report", args=[WEEK.key])).content.decode()
    row = text_of(re.search(r'<tr id="row-search">.*?</tr>', page, re.S).group())
    html = text_of(payload["html"])
    text = " ".join(payload["text"].split())
    files = [a for a in message.attachments if isinstance(a, tuple)]  # the MIME parts are the inline charts
    assert [f[0] for f in files] == [f"poolboard-report-{WEEK.key}-v1.pdf"]
    (tmp_path / "r.pdf").write_bytes(files[0][1])
    pdf = " ".join(subprocess.run(["pdftotext", str(tmp_path / "r.pdf"), "-"], capture_output=True, text=True,
                                  check=True).stdout.split())
    for figure in ("100 % ↑ +50 pts", "40 % →", "90 %", "40 min new", "0.02"):
        assert figure in row, figure
        assert figure in html, ("html", figure)
        assert figure in text, ("text", figure)
        assert figure in pdf, ("pdf", figure)
    assert "search: saturated 40 min this week" in text and "search: saturated 40 min this week" in pdf
    # The service's finding (first seen) and its long query with the top fingerprint, in every rendering.
    page_text = text_of(page)
    for part, rendered in (("page", page_text), ("html", html), ("text", text), ("pdf", pdf)):
        assert "in use climbing without load" in rendered, part
        assert "SELECT pg_sleep($1)" in rendered, part
        assert "Preset changes: none" in rendered, part
    # The message: text + HTML alternatives, the charts inline by cid, the PDF attached, one-click unsubscribe.
    assert message.alternatives[0][1] == "text/html"
    cids = re.findall(r'src="cid:([^"]+)"', payload["html"])
    assert cids and {img["cid"] for img in payload["inline_images"]} == set(cids)
    raw = message.message().as_string()
    assert "multipart/related" in raw and "Content-ID: <service-0@poolboard>" in raw and "image/png" in raw
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "http://poolboard.test/reports/2026-W47/" in payload["text"]


@pytest.mark.django_db
def test_the_unsubscribe_link_in_the_email_works_without_login(alice, fleet):
    due_subscription(alice)
    delivery.run(NOW)
    payload = Notification.objects.get(kind="report").payload
    link = re.search(r"Unsubscribe: http://poolboard.test(\S+)", payload["text"]).group(1)
    assert payload["headers"]["List-Unsubscribe"] == f"<http://poolboard.test{link}>"
    response = Client().post(link)
    assert response.status_code == 200
    sub = Subscription.objects.get(user=alice)
    assert sub.active is False
    sub_due = Subscription.objects.filter(pk=sub.pk)
    sub_due.update(next_send_at=NOW)
    assert delivery.send_due(NOW + timedelta(days=7)) == 0  # an inactive subscription is never due


@pytest.mark.django_db
def test_it_delivers_the_pdf_and_charts_through_the_outbox(alice, fleet):
    due_subscription(alice)
    delivery.run(NOW)
    dispatch_due(NOW + timedelta(seconds=1))
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.subject.startswith(f"poolboard weekly capacity report {WEEK.key}")
    assert any(name.endswith(".pdf") for name, *_ in sent.attachments), "the PDF is attached"
    assert "image/png" in sent.message().as_string(), "the charts are inline"


@pytest.mark.django_db
def test_subscribers_with_the_same_share_cost_one_pdf(alice, bob, fleet, monkeypatch):
    from poolboard.reports import pdf

    renders = []
    real = pdf.render_pdf
    monkeypatch.setattr(pdf, "render_pdf", lambda report, numbers=None: renders.append(1) or real(report, numbers))
    due_subscription(alice)
    due_subscription(bob)
    assert delivery.run(NOW)["queued"] == 2
    assert len(renders) == 1


@pytest.mark.django_db
def test_the_email_goes_without_its_pdf_where_pdfs_cannot_be_made(alice, fleet, monkeypatch):
    from poolboard.reports import pdf

    def unavailable(report, numbers=None):
        raise pdf.PdfUnavailable("PDFs need WeasyPrint's system libraries")

    monkeypatch.setattr(pdf, "render_pdf", unavailable)
    due_subscription(alice)
    assert delivery.run(NOW)["queued"] == 1
    payload = Notification.objects.get(kind="report").payload
    assert payload["attachments"] == [] and payload["inline_images"]
