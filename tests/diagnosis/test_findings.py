"""Findings are stored when they open and close; pages and API show them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from poolboard.diagnosis.models import Finding
from poolboard.lib import diagnosis as engine


def verdict(kind: str, since, severity: str = "warn", leaked: float = 0.0, text: str = "in use rose 3 → 9 of 10") -> engine.Finding:
    return engine.Finding(
        kind=kind,
        severity=severity,
        confidence=0.8,
        since=since,
        evidence=(engine.Evidence(text=text, start=since, end=since + timedelta(minutes=14)),),
        fix="Return the connection: close the session in a finally block.",
        suspected_leaked=leaked,
        detail={"signals": ["floor"]},
    )


@pytest.fixture
def billing(make_service):
    return make_service("billing", instances=1, max=10, in_use=9, idle=1)


def test_it_opens_updates_and_closes_one_row_per_kind(billing):
    now = timezone.now()
    since = now - timedelta(minutes=14)
    assert Finding.objects.record({billing.id: [verdict("leak", since, leaked=6)]}, now) == {"opened": 1, "updated": 0, "closed": 0}
    later = now + timedelta(seconds=15)
    counts = Finding.objects.record({billing.id: [verdict("leak", since, "crit", leaked=7), verdict("saturation", later)]}, later)
    assert counts == {"opened": 1, "updated": 1, "closed": 0}
    leak = Finding.objects.get(service=billing, kind="leak")
    assert (leak.opened_at, leak.last_seen_at, leak.severity, leak.peak_severity, leak.suspected_leaked) == (since, later, "crit", "crit", 7)
    end = later + timedelta(seconds=15)
    assert Finding.objects.record({billing.id: [engine.Finding("healthy", "ok", 1.0, end, (), "")]}, end)["closed"] == 2
    assert list(Finding.objects.open()) == []
    assert Finding.objects.get(kind="leak").closed_at == end
    # It comes back: a new row, the old one stays as history.
    Finding.objects.record({billing.id: [verdict("leak", end)]}, end + timedelta(seconds=15))
    assert Finding.objects.filter(kind="leak").count() == 2


def test_it_leaves_services_it_did_not_judge_alone(billing, make_service):
    other = make_service("search", instances=1, max=5, in_use=5)
    now = timezone.now()
    Finding.objects.record({billing.id: [verdict("leak", now)], other.id: [verdict("saturation", now)]}, now)
    Finding.objects.record({billing.id: []}, now + timedelta(seconds=15))
    assert list(Finding.objects.open().values_list("service__name", flat=True)) == ["search"]


def test_it_records_many_services_in_a_fixed_number_of_queries(make_service, django_assert_max_num_queries):
    services = [make_service(f"svc{i}") for i in range(30)]
    now = timezone.now()
    Finding.objects.record({s.id: [verdict("leak", now)] for s in services[:10]}, now)
    with django_assert_max_num_queries(8):
        Finding.objects.record({s.id: [verdict("saturation", now)] for s in services}, now + timedelta(seconds=15))
    assert Finding.objects.open().count() == 30


def test_it_filters_findings_in_the_api(client, auth, billing, make_service):
    search = make_service("search")
    now = timezone.now()
    Finding.objects.record({billing.id: [verdict("leak", now - timedelta(minutes=5), leaked=4)], search.id: [verdict("saturation", now)]}, now)
    Finding.objects.record({billing.id: [verdict("leak", now - timedelta(minutes=5), leaked=4)], search.id: []}, now + timedelta(seconds=15))
    data = client.get("/api/v1/findings/?kind=leak&open=1", headers=auth).json()
    assert [(f["service"], f["kind"], f["open"], f["suspected_leaked"]) for f in data["findings"]] == [("billing", "leak", True, 4.0)]
    assert data["findings"][0]["evidence"][0]["text"] == "in use rose 3 → 9 of 10"
    closed = client.get("/api/v1/findings/?service=search&open=0", headers=auth).json()["findings"]
    assert [(f["kind"], f["closed_at"] is not None) for f in closed] == [("saturation", True)]
    bad = client.get("/api/v1/findings/?kind=nonsense", headers=auth)
    assert bad.status_code == 400 and "unknown kind 'nonsense'" in bad.json()["error"]
    missing = client.get("/api/v1/findings/?service=nope", headers=auth)
    assert missing.status_code == 404 and missing.json()["error"] == "no service named 'nope'"
    paged = client.get("/api/v1/findings/?limit=1", headers=auth).json()
    assert len(paged["findings"]) == 1 and paged["next_offset"] == 1


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


def test_it_exports_open_findings_in_metrics(client, billing, make_service):
    search = make_service("search")
    now = timezone.now()
    Finding.objects.record({billing.id: [verdict("leak", now, "crit", leaked=5)], search.id: [verdict("saturation", now)]}, now)
    Finding.objects.record({search.id: []}, now + timedelta(seconds=15))
    text = client.get("/metrics").content.decode()
    assert 'poolboard_finding{kind="leak",service="billing",severity="crit"} 1.0' in text
    assert 'poolboard_finding_suspected_leaked_connections{service="billing"} 5.0' in text
    assert 'service="search"' not in text


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


def test_it_refuses_unknown_or_negative_threshold_overrides_in_the_admin(client, bob, billing):
    from poolboard.diagnosis.models import ServiceThresholds

    client.force_login(bob)
    url = "/admin/diagnosis/servicethresholds/add/"
    bad = client.post(url, {"service": billing.pk, "overrides": '{"leak_secs": 120, "stuck_s": -1}'}).content.decode()
    assert "&#x27;leak_secs&#x27; is not a threshold" in bad and "stuck_s must be a positive number, not -1" in bad
    assert not ServiceThresholds.objects.exists()
    client.post(url, {"service": billing.pk, "overrides": '{"leak_s": 120}'})
    assert ServiceThresholds.objects.get().overrides == {"leak_s": 120}
    page = client.get("/admin/diagnosis/finding/").content.decode()
    assert "Findings" in page


def test_it_leads_with_the_leak_when_the_leak_has_made_the_pool_stuck(billing):
    now = timezone.now()
    Finding.objects.record({billing.id: [verdict("stuck", now, "crit"), verdict("leak", now - timedelta(minutes=3), "warn", leaked=10)]}, now)
    summary = billing.summary(now)
    assert (summary.status, summary.reason, summary.verdict.kind) == ("crit", "leak suspected", "leak")


@pytest.mark.django_db(transaction=True)
def test_it_skips_a_pass_while_another_is_running(make_service):
    """A slow pass on a big fleet must not pile up behind itself: the second one skips."""
    import psycopg
    from django.db import connection

    from poolboard.diagnosis.tasks import LOCK_CLASS, diagnose_fleet

    make_service("billing", instances=1, max=10, in_use=3)
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k in ("host", "port", "user", "dbname")}) as other:
        other.execute("BEGIN")
        other.execute("SELECT pg_advisory_xact_lock(%s, 0)", [LOCK_CLASS])
        assert diagnose_fleet()["skipped"] == "another diagnosis pass is running"
    assert diagnose_fleet()["services"] == 1
