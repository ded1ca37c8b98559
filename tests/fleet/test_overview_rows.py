"""The overview's rows: reused between collection ticks only while they are still exact."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from poolboard.fleet import overview
from poolboard.fleet.models import Pool, PrometheusSource, stale_after


@pytest.fixture(autouse=True)
def empty_cache():
    overview.forget_overview_rows()
    yield
    overview.forget_overview_rows()


def by_name(rows) -> dict:
    return {row.service.name: row.summary for row in rows}


def test_it_adds_up_each_services_pools(make_service):
    make_service("orders", instances=2, max=10, in_use=9, idle=1, pending=0, timeouts=0)
    make_service("billing", instances=1, max=10, in_use=10, idle=0, pending=3, timeouts=0)
    make_service("search")  # no pools sampled yet

    rows = by_name(overview.overview_rows(timezone.now()))

    assert (rows["orders"].in_use, rows["orders"].max, rows["orders"].pool_count) == (18, 20, 2)
    assert rows["orders"].status == "warn"  # 90 % of max in use
    assert rows["billing"].status == "crit"
    assert rows["billing"].reason == "exhausted: all connections in use, 3 waiting"
    assert rows["search"].status == "unknown"


def test_it_reuses_the_rows_until_a_collection_finishes(make_service):
    service = make_service("orders", instances=1, max=10, in_use=2, idle=8, pending=0, timeouts=0)
    now = timezone.now()
    first = overview.overview_rows(now)
    assert overview.overview_rows(now + timedelta(seconds=1)) is first

    # A collection: new values on the pool row and last_success_at, in one transaction.
    Pool.objects.filter(service=service).update(in_use=10, idle=0, pending=4, sampled_at=now)
    PrometheusSource.objects.filter(pk=service.source_id).update(last_success_at=now)

    rows = by_name(overview.overview_rows(now + timedelta(seconds=2)))
    assert rows["orders"].status == "crit"
    assert rows["orders"].pending == 4


def test_it_shows_a_new_service_at_once(make_service):
    make_service("orders", instances=1, max=10, in_use=2, idle=8)
    now = timezone.now()
    overview.overview_rows(now)
    make_service("billing", instances=1, max=10, in_use=2, idle=8)

    assert set(by_name(overview.overview_rows(now))) == {"orders", "billing"}


def test_it_turns_a_pool_stale_at_the_moment_it_goes_stale(make_service):
    make_service("orders", instances=1, max=10, in_use=2, idle=8, pending=0, timeouts=0)
    sampled_at = Pool.objects.get().sampled_at
    before = by_name(overview.overview_rows(sampled_at + stale_after()))
    assert before["orders"].status == "ok"

    after = by_name(overview.overview_rows(sampled_at + stale_after() + timedelta(seconds=1)))

    assert after["orders"].status == "stale"
    assert after["orders"].reason.startswith("no sample for")
