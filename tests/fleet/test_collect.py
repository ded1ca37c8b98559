"""Collection against a real Prometheus binary scraping real exposition text."""

from __future__ import annotations

import pytest

from poolboard.fleet.collection import collect_source, current_slot
from poolboard.fleet.models import CollectionRun, Pool, PrometheusSource, Service
from tests.fleet.factories import raw_sample_count
from tests.prom import ExpositionServer, PrometheusServer, exposition, free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.prometheus, pytest.mark.usefixtures("empty_raw_samples")]


@pytest.fixture(scope="module")
def three_dialect_prometheus():
    """One Prometheus for the module (about 7 s to start and scrape enough): the exposition texts never change."""
    exporters = {"orders": exposition("db_pool"), "search": exposition("hikaricp"), "ledger": exposition("otel")}
    servers = {job: ExpositionServer(text) for job, text in exporters.items()}
    prom = PrometheusServer({job: [s.address] for job, s in servers.items()}, scrape_interval="1s")
    prom.exporters = servers
    try:
        # Wait until every dialect has enough scrapes for rate() over a 10 s window.
        prom.wait_for("db_pool_in_use_connections")
        prom.wait_for("hikaricp_connections_active")
        prom.wait_for("db_client_connection_count", count=2)
        prom.wait_for("rate(hikaricp_connections_acquire_seconds_count[10s])")
        yield prom
    finally:
        prom.close()
        for server in servers.values():
            server.close()


@pytest.fixture
def three_dialects(three_dialect_prometheus, make_source):
    return three_dialect_prometheus, make_source(url=three_dialect_prometheus.url, rate_window="10s")


def test_it_collects_every_dialect_into_canonical_pools(three_dialects) -> None:
    prom, source = three_dialects
    result = collect_source(source, current_slot())

    assert result.status == "ok", result.error
    assert sorted(Service.objects.values_list("name", "preset")) == [
        ("ledger", "otel"),
        ("orders", "db_pool"),
        ("search", "hikaricp"),
    ]
    orders = Pool.objects.get(service__name="orders")
    assert (orders.instance, orders.name) == (prom.exporters["orders"].address, "orders-main")
    assert (orders.max, orders.in_use, orders.idle, orders.pending) == (20, 9, 3, 0)
    search = Pool.objects.get(service__name="search")
    assert (search.name, search.max, search.in_use, search.idle, search.pending) == ("HikariPool-1", 10, 10, 0, 7)
    assert search.min == 10
    # Counters that do not move over the window: increase is 0, not absent.
    assert search.timeouts == 0
    # HikariCP has no overflow and no closed counter: absent, never 0.
    assert search.overflow is None and search.conns_closed is None
    ledger = Pool.objects.get(service__name="ledger")
    assert (ledger.name, ledger.in_use, ledger.idle, ledger.max, ledger.min) == ("ledger", 4, 6, 10, 2)
    # One query per field the preset gives, whatever the number of services.
    assert result.queries == 10 + 10 + 10
    assert result.samples == 3 == raw_sample_count()
    run = CollectionRun.objects.get()
    assert run.status == "ok" and run.samples == 3
    source.refresh_from_db()
    assert source.last_success_at is not None


def test_it_collects_a_slot_once_even_when_delivered_twice(three_dialects) -> None:
    _, source = three_dialects
    slot = current_slot()
    first = collect_source(source, slot)
    second = collect_source(source, slot)

    assert (first.status, second.status) == ("ok", "skipped")
    assert CollectionRun.objects.count() == 1
    assert raw_sample_count() == 3


def test_a_down_prometheus_fails_the_run_with_a_clear_message_and_stores_nothing(make_source) -> None:
    source = make_source(url=f"http://127.0.0.1:{free_port()}", timeout_s=2)
    result = collect_source(source, current_slot())

    assert result.status == "failed"
    assert result.error == f"cannot connect to Prometheus at {source.url}"
    run = CollectionRun.objects.get()
    assert run.status == "failed" and run.error == result.error
    source.refresh_from_db()
    assert source.last_error == result.error and source.last_success_at is None
    assert raw_sample_count() == 0 and Pool.objects.count() == 0


def test_a_vanished_service_is_marked_stale_not_deleted(three_dialects) -> None:
    prom, source = three_dialects
    slot = current_slot()
    assert collect_source(source, slot).status == "ok"
    PrometheusSource.objects.filter(pk=source.pk).update(presets=["db_pool", "otel"])
    source.refresh_from_db()

    assert collect_source(source, slot + 1).status == "ok"

    search = Service.objects.get(name="search")
    assert search.stale_since is not None
    assert Service.objects.get(name="orders").stale_since is None
    assert Pool.objects.filter(service=search).count() == 1
