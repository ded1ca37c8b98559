"""Findings are stored when they open and close, exported in /metrics, overridable in the admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from poolboard.diagnosis.models import Finding
from poolboard.lib import diagnosis as engine
from tests.diagnosis.factories import verdict


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


def test_a_failing_source_closes_no_finding_and_the_series_gone_with_a_healthy_source_does(billing):
    # Error is not no data (reliability.md R1.2), for findings as for alerts: while the
    # source fails the pool rules cannot judge, so what they found stays open (a leak that
    # closed and reopened would resolve and re-send LeakSuspected, and split its history).
    from poolboard.diagnosis.diagnose import diagnose_services, services_to_diagnose
    from poolboard.fleet.models import PrometheusSource

    now = timezone.now()
    Finding.objects.record({billing.id: [verdict("leak", now - timedelta(minutes=14), leaked=6)]}, now)
    source = billing.source
    later = now + timedelta(minutes=2)
    PrometheusSource.objects.filter(pk=source.pk).update(
        last_success_at=now - timedelta(minutes=1), last_error_at=later, last_error="connection refused")
    diagnose_services(services_to_diagnose(later), later)
    assert list(Finding.objects.open().filter(service=billing, kind="leak").values_list("opened_at", flat=True)) == [
        now - timedelta(minutes=14)]
    # The source answers again but billing's series are gone: now that is no data, and it closes.
    PrometheusSource.objects.filter(pk=source.pk).update(last_success_at=later + timedelta(minutes=1))
    diagnose_services(services_to_diagnose(later + timedelta(minutes=1)), later + timedelta(minutes=1))
    assert not Finding.objects.open().filter(service=billing, kind="leak").exists()


def test_it_records_many_services_in_a_fixed_number_of_queries(make_service, django_assert_max_num_queries):
    services = [make_service(f"svc{i}") for i in range(30)]
    now = timezone.now()
    Finding.objects.record({s.id: [verdict("leak", now)] for s in services[:10]}, now)
    with django_assert_max_num_queries(8):
        Finding.objects.record({s.id: [verdict("saturation", now)] for s in services}, now + timedelta(seconds=15))
    assert Finding.objects.open().count() == 30


def test_it_exports_open_findings_in_metrics(client, billing, make_service):
    search = make_service("search")
    now = timezone.now()
    Finding.objects.record({billing.id: [verdict("leak", now, "crit", leaked=5)], search.id: [verdict("saturation", now)]}, now)
    Finding.objects.record({search.id: []}, now + timedelta(seconds=15))
    text = client.get("/metrics").content.decode()
    assert 'poolboard_finding{kind="leak",service="billing",severity="crit"} 1.0' in text
    assert 'poolboard_finding_suspected_leaked_connections{service="billing"} 5.0' in text
    assert 'service="search"' not in text


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
