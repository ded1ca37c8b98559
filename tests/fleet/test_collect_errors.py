"""Collection on bad answers: a tick is stored whole or not at all, with the exact error."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from poolboard.fleet.collection import LOCK_CLASS, collect_source, current_slot
from poolboard.fleet.models import CollectionRun, Pool, PrometheusSource, Service
from tests.fleet.factories import raw_sample_count
from tests.sources.fakes import HangingServer, json_answer, vector

# Each test runs in a transaction that is rolled back (collection nests in it as a savepoint);
# the raw-sample table is emptied first, since transactional tests elsewhere leave rows in it.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_raw_samples")]


def assert_nothing_stored(source: PrometheusSource, error: str) -> None:
    run = CollectionRun.objects.get()
    assert (run.status, run.error) == ("failed", error)
    source.refresh_from_db()
    assert source.last_error == error and source.last_success_at is None
    assert Service.objects.count() == 0 and Pool.objects.count() == 0 and raw_sample_count() == 0


def test_fifty_thousand_series_fail_the_tick_and_nothing_is_stored_half_way(fake_prometheus) -> None:
    # The first two fields answer normally; the third returns 50 000 series.
    def answer(query):
        return json_answer(vector(50_000 if "db_pool_idle_connections" in query else 3))

    server = fake_prometheus(answer)
    source = PrometheusSource.objects.create(name="big", url=server.url, presets=["db_pool"])

    result = collect_source(source, current_slot())

    error = "db_pool idle: answer has more than 20000 series (got 50000); narrow the preset's selector"
    assert (result.status, result.error) == ("failed", error)
    assert_nothing_stored(source, error)
    assert len(server.requests) == 3


def test_status_error_with_http_200_fails_the_tick_with_prometheus_words(fake_prometheus) -> None:
    server = fake_prometheus(lambda q: json_answer({"status": "error", "errorType": "internal", "error": "out of memory"}))
    source = PrometheusSource.objects.create(name="broken", url=server.url, presets=["hikaricp"])

    result = collect_source(source, current_slot())

    error = f"Prometheus at {server.url} answered with an error: internal: out of memory"
    assert result.error == error
    assert_nothing_stored(source, error)


def test_garbage_fails_the_tick(fake_prometheus) -> None:
    server = fake_prometheus(lambda q: (200, "text/html", b"<html>login</html>"))
    source = PrometheusSource.objects.create(name="proxy", url=server.url, presets=["otel"])

    result = collect_source(source, current_slot())

    error = f"Prometheus at {server.url} sent an answer that is not JSON (HTTP 200, text/html)"
    assert result.error == error
    assert_nothing_stored(source, error)


def test_a_response_body_is_never_stored_only_its_status(fake_prometheus) -> None:
    body = b"<html>Login page of the corporate proxy. session=SECRET-IN-BODY</html>"
    server = fake_prometheus(lambda query: (500, "text/html", body))
    source = PrometheusSource.objects.create(name="proxy", url=server.url, presets=["otel"])

    result = collect_source(source, current_slot())

    error = "otel max: Prometheus rejected the query: HTTP 500 Internal Server Error"
    assert result.error == error
    assert_nothing_stored(source, error)


def test_prometheus_own_error_message_is_kept_but_cut_short(fake_prometheus) -> None:
    server = fake_prometheus(lambda q: json_answer({"status": "error", "errorType": "bad_data", "error": "x" * 5000}, status=400))
    source = PrometheusSource.objects.create(name="p", url=server.url, presets=["otel"])

    result = collect_source(source, current_slot())

    assert result.error == "otel max: Prometheus rejected the query: bad_data: " + "x" * (300 - len("bad_data: "))


def test_a_hanging_prometheus_fails_the_tick_after_the_source_timeout() -> None:
    server = HangingServer()
    try:
        source = PrometheusSource.objects.create(name="slow", url=server.url, presets=["otel"], timeout_s=1)
        result = collect_source(source, current_slot())
    finally:
        server.close()
    error = f"Prometheus at {server.url} did not answer within 1s"
    assert result.error == error
    assert_nothing_stored(source, error)


def test_nan_and_inf_are_stored_as_absent(fake_prometheus) -> None:
    def answer(query):
        value = {"hikaricp_connections_max": "+Inf", "hikaricp_connections_active": "NaN"}
        for name, raw in value.items():
            if f"({name}{{" in query:
                return json_answer(vector(1, raw))
        return json_answer(vector(1, "4"))

    server = fake_prometheus(answer)
    source = PrometheusSource.objects.create(name="nan", url=server.url, presets=["hikaricp"])

    # vector() labels the pool pool_name; hikaricp reads `pool`, so the pool is "default".
    assert collect_source(source, current_slot()).status == "ok"
    pool = Pool.objects.get()
    assert (pool.max, pool.in_use, pool.idle) == (None, None, 4)
    assert raw_sample_count() == 1


def test_two_ticks_of_one_source_never_overlap(fake_prometheus) -> None:
    server = fake_prometheus(lambda q: json_answer(vector(1)))
    source = PrometheusSource.objects.create(name="busy", url=server.url, presets=["db_pool"])
    settings = connection.settings_dict
    other = psycopg.connect(
        host=settings["HOST"] or None, port=settings["PORT"] or None, user=settings["USER"], dbname=settings["NAME"],
        autocommit=True,
    )
    try:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [LOCK_CLASS, source.pk])
        result = collect_source(source, current_slot())
        assert (result.status, result.error) == ("skipped", "another collection of this source is running")
        assert CollectionRun.objects.count() == 0 and server.requests == []
        other.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_CLASS, source.pk])
        assert collect_source(source, current_slot()).status == "ok"
    finally:
        other.close()


def test_a_service_name_owned_by_another_source_is_left_alone(fake_prometheus) -> None:
    server = fake_prometheus(lambda q: json_answer(vector(2)))
    first = PrometheusSource.objects.create(name="first", url=server.url, presets=["db_pool"])
    second = PrometheusSource.objects.create(name="second", url=server.url, presets=["db_pool"], timeout_s=2)
    assert collect_source(first, current_slot()).status == "ok"

    result = collect_source(second, current_slot())

    assert result.status == "ok" and result.samples == 0
    assert set(Service.objects.values_list("name", "source__name")) == {("svc-0", "first"), ("svc-1", "first")}
