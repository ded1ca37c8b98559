"""An empty fleet and a fleet of 1 000 services: the page, the email and the PDF render."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest
from django.urls import reverse

from poolboard.fleet.models import Pool, Service
from poolboard.history.models import PoolRollup5m
from poolboard.reports import build, email, pdf

from .test_build import WEEK

pytestmark = pytest.mark.django_db


def pdf_text(tmp_path, document: bytes) -> str:
    path = tmp_path / "r.pdf"
    path.write_bytes(document)
    return subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout


def test_an_empty_fleets_report_renders_everywhere(alice_client, tmp_path):
    report = build.build(WEEK, WEEK.end)
    page = alice_client.get(reverse("dashboard:report", args=[WEEK.key]))
    assert page.status_code == 200 and "No service was watched this week." in page.content.decode()
    payload = email.render_payload(report, to=["ops@example.org"])
    assert "No service was watched this week." in payload["text"] and "No monitored server." in payload["text"]
    assert "No service is watched yet" in pdf_text(tmp_path, pdf.render_pdf(report))


@pytest.fixture
def thousand_services(make_source):
    source = make_source()
    services = Service.objects.bulk_create(Service(name=f"svc-{i:04d}", source=source, preset="db_pool")
                                           for i in range(1000))
    pools = Pool.objects.bulk_create(Pool(service=s, instance="10.0.0.1:8080", name="main") for s in services)
    PoolRollup5m.objects.bulk_create(
        (PoolRollup5m(pool=p, bucket=WEEK.start + timedelta(hours=h), samples=20, in_use_avg=(p.pk % 10), in_use_max=10,
                      max_avg=10, waiting_s=60 * (p.pk % 3)) for p in pools for h in range(0, 168, 12)),
        batch_size=5000,
    )
    return build.build(WEEK, WEEK.end)


def test_a_report_of_1000_services_renders_on_the_page_and_in_the_email(alice_client, thousand_services):
    report = thousand_services
    assert len(report.numbers["services"]) == 1000
    body = alice_client.get(reverse("dashboard:report", args=[WEEK.key])).content.decode()
    assert body.count('<tr id="row-svc-') == 1000
    assert body.count('class="report-chart"') == 60 + 0  # charts for the first 60 services; no server
    assert "Charts are drawn for the first 60 services" in body
    payload = email.render_payload(report, to=["ops@example.org"], attach_pdf=False)
    assert payload["text"].count("\n- svc-") == 20 and "20 of 1000, the rest on the page" in payload["text"]
    assert len(payload["inline_images"]) == 6
    assert len(payload["html"]) < 100_000


@pytest.mark.slow
def test_a_report_of_1000_services_renders_as_pdf(thousand_services, tmp_path):
    text = pdf_text(tmp_path, pdf.render_pdf(thousand_services))
    assert "svc-0000" in text and "svc-0999" in text
