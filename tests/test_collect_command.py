"""`python manage.py collect --once` runs one full collection synchronously."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from io import StringIO

import pytest
from django.core.management import call_command

from poolboard.fleet.models import Pool
from tests.prom import exposition, free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.prometheus]


def test_collect_once_reports_what_it_stored(prometheus_with, make_source) -> None:
    prom = prometheus_with({"orders": exposition("db_pool")})
    prom.wait_for("db_pool_in_use_connections")
    make_source(url=prom.url, presets=["db_pool"], rate_window="10s")
    out = StringIO()

    call_command("collect", "--once", stdout=out)

    assert "main: 1 pools from 10 queries, new services: orders" in out.getvalue()
    assert Pool.objects.get().in_use == 9
    # One tick is too little history to judge: the diagnosis says so rather than "healthy".
    assert "diagnosis: 1 services (1 not_enough_data); findings 1 opened, 0 closed" in out.getvalue()


def test_collect_once_twice_in_one_slot_says_the_second_had_nothing_to_do(prometheus_with, make_source, settings) -> None:
    settings.COLLECT_INTERVAL = 3600  # both runs fall in the same slot
    prom = prometheus_with({"orders": exposition("db_pool")})
    prom.wait_for("db_pool_in_use_connections")
    make_source(url=prom.url, presets=["db_pool"], rate_window="10s")
    call_command("collect", "--once", stdout=StringIO())
    out, err = StringIO(), StringIO()

    call_command("collect", "--once", stdout=out, stderr=err)

    # Informational, on stdout, and it says what happened and that nothing is wrong.
    slot = datetime.fromtimestamp(time.time() // 3600 * 3600, tz=timezone.utc).strftime("%H:%M:%S")
    assert out.getvalue() == f"main: slot {slot} UTC already collected by another run; nothing to do\n"
    assert err.getvalue() == ""


def test_collect_once_exits_non_zero_with_the_reason_when_prometheus_is_down(make_source) -> None:
    source = make_source(url=f"http://127.0.0.1:{free_port()}", timeout_s=2)
    err = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("collect", "--once", stdout=StringIO(), stderr=err)
    assert exit_info.value.code == 1
    assert "main: FAILED: " in err.getvalue()
    assert f"cannot connect to Prometheus at {source.url}" in err.getvalue()


def test_collect_once_without_sources_says_what_to_do(db) -> None:
    out = StringIO()
    call_command("collect", "--once", stdout=out)
    assert "no enabled Prometheus source: add one in the admin" in out.getvalue()


def test_partitions_are_read_from_the_catalog_once_a_day_per_process(
    db, django_assert_num_queries, django_capture_on_commit_callbacks
) -> None:
    from poolboard.fleet import partitions

    partitions._ensured_day.clear()
    day = datetime(2030, 5, 1, 12, tzinfo=timezone.utc)
    with django_capture_on_commit_callbacks(execute=True):
        partitions.ensure_partitions_today(day)
    assert "fleet_poolsample_p20300501" in partitions.existing_partitions()
    with django_assert_num_queries(0):
        partitions.ensure_partitions_today(day + timedelta(hours=3))
    with django_capture_on_commit_callbacks(execute=True):
        partitions.ensure_partitions_today(day + timedelta(days=1))
    assert "fleet_poolsample_p20300504" in partitions.existing_partitions()
    partitions._ensured_day.clear()


def test_partitions_made_in_a_transaction_that_rolls_back_are_made_again(db) -> None:
    from django.db import connection, transaction

    from poolboard.fleet import partitions

    partitions._ensured_day.clear()
    day = datetime(2030, 6, 1, 12, tzinfo=timezone.utc)
    before = set(partitions.existing_partitions())
    try:
        with transaction.atomic():
            partitions.ensure_partitions_today(day)
            transaction.set_rollback(True)
        assert "fleet_poolsample_p20300601" not in partitions.existing_partitions()
        # The day was not remembered: the next tick makes the partitions again.
        partitions.ensure_partitions_today(day)
        assert "fleet_poolsample_p20300601" in partitions.existing_partitions()
    finally:
        partitions._ensured_day.clear()
        # Committed DDL outlives the test's flush: drop what it made, so a rerun starts clean.
        with connection.cursor() as cursor:
            for name in set(partitions.existing_partitions()) - before:
                cursor.execute(f'DROP TABLE "{name}"')
