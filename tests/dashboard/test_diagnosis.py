"""The leak suspects page, the Diagnosis panel and the overview row led by a verdict."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from poolboard.diagnosis.models import Finding
from tests.diagnosis.factories import verdict


@pytest.fixture
def billing(make_service):
    return make_service("billing", instances=1, max=10, in_use=9, idle=1)


def test_it_ranks_leak_suspects_on_the_leaks_page(alice_client, billing, make_service):
    worse = make_service("invoices", instances=1, max=10, in_use=10)
    now = timezone.now()
    Finding.objects.record({
        billing.id: [verdict("leak", now - timedelta(minutes=20), leaked=3, text="billing evidence")],
        worse.id: [verdict("leak", now - timedelta(minutes=5), leaked=8, text="invoices evidence")],
    }, now)
    page = alice_client.get("/leaks/").content.decode()
    assert "<h1>Leak suspects</h1>" in page
    assert page.index("invoices evidence") < page.index("billing evidence")
    assert "~8 connections held" in page
    by_since = alice_client.get("/leaks/?sort=since").content.decode()
    assert by_since.index("billing evidence") < by_since.index("invoices evidence")
    partial = alice_client.get("/leaks/", headers={"HX-Request": "true"}).content.decode()
    assert partial.lstrip().startswith('<section id="leaks-table"') and "<h1>" not in partial
    assert "invoices evidence" in partial


def test_it_says_so_when_no_leak_is_suspected(alice_client, billing):
    page = alice_client.get("/leaks/").content.decode()
    assert "No leak suspected" in page


def test_it_shows_the_diagnosis_panel_with_evidence_and_history(alice_client, billing):
    now = timezone.now()
    Finding.objects.record({billing.id: [verdict("saturation", now - timedelta(hours=2))]}, now - timedelta(hours=1))
    Finding.objects.record({billing.id: [verdict("leak", now - timedelta(minutes=14), leaked=6)]}, now)
    panel = alice_client.get(f"/services/{billing.pk}/diagnosis/", headers={"HX-Request": "true"}).content.decode()
    assert panel.lstrip().startswith('<section id="diagnosis"')
    assert "leak suspected" in panel and "~6 connections held" in panel and "in use rose 3 → 9 of 10" in panel
    assert "Return the connection" in panel
    assert "Earlier findings (1)" in panel and "saturated" in panel


def test_it_calls_a_service_without_findings_healthy(alice_client, billing):
    panel = alice_client.get(f"/services/{billing.pk}/diagnosis/").content.decode()
    assert "<b>Healthy</b>" in panel


def test_it_leads_the_overview_row_with_the_verdict(alice_client, billing):
    """A leaking service at 60 % in use is no longer 'healthy': the row says leak, since when."""
    from poolboard.fleet.models import Pool

    Pool.objects.filter(service=billing).update(in_use=6, idle=4)
    since = timezone.now() - timedelta(minutes=14)
    Finding.objects.record({billing.id: [verdict("leak", since, "warn", leaked=3, text="6 of billing's sessions idle > 60 s")]}, timezone.now())
    page = alice_client.get("/").content.decode()
    row = page[page.index(f'href="/services/{billing.pk}/"') - 300:]
    assert "status-warn" in row[:400]
    assert "leak suspected</b> since " + timezone.localtime(since).strftime("%H:%M") in row
    assert "6 of billing&#x27;s sessions idle &gt; 60 s" in row


def test_it_shows_the_diagnosis_panel_on_the_service_page_with_chart_bands(alice_client, billing):
    since = timezone.now() - timedelta(minutes=14)
    Finding.objects.record({billing.id: [verdict("leak", since, "crit", leaked=6)]}, timezone.now())
    page = alice_client.get(f"/services/{billing.pk}/").content.decode()
    assert page.index('id="diagnosis"') < page.index('id="pool-charts"')
    assert "~6 connections held" in page
    from poolboard.dashboard.views.services import highlights

    bands = highlights(Finding.objects.open().filter(service=billing))
    assert bands == [{"start": since.timestamp(), "end": (since + timedelta(minutes=14)).timestamp(),
                      "label": "leak suspected", "severity": "crit"}]
    api = alice_client.get("/api/v1/services/billing/").json()
    assert (api["status"], api["reason"], api["verdict"]["kind"]) == ("crit", "leak suspected", "leak")
