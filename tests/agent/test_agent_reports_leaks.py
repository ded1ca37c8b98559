"""A real pool leaks a connection in a named function; the agent's report reaches a live poolboard.

Real SQLAlchemy and psycopg_pool pools against PostgreSQL, a live Django server (pytest-django's
`live_server`) and a real API token: nothing between the agent and the stored row is faked.
"""

from __future__ import annotations

import threading

import pytest

from poolboard.diagnosis.models import AgentReport
from tests.wait import wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]

THRESHOLD_S = 0.5
REPORT_EVERY_S = 0.2


def leaky_invoice_export(engine):
    """The bug under test: checks a connection out and never gives it back."""
    connection = engine.connect()
    connection.exec_driver_sql("SELECT 1")
    return connection


def leaky_refund_export(pool):
    connection = pool.getconn()
    connection.execute("SELECT 1")
    return connection


def stored(service: str, function_suffix: str):
    return AgentReport.objects.filter(service_name=service, function__endswith=function_suffix, count__gt=0).first()


def test_it_reports_a_sqlalchemy_leak_naming_the_leaking_function(live_server, token, make_service, make_engine, make_agent):
    billing = make_service("billing")
    engine = make_engine("billing-main")
    agent = make_agent(
        "billing", endpoint=live_server.url, token=token, instance="web-1", threshold_s=THRESHOLD_S, report_every_s=REPORT_EVERY_S
    )
    agent.instrument_sqlalchemy(engine)

    leaked = leaky_invoice_export(engine)
    with engine.connect() as connection:  # returned: never reported
        connection.exec_driver_sql("SELECT 1")

    report = wait_until(lambda: stored("billing", "leaky_invoice_export"))
    assert report.function == f"{__name__}.leaky_invoice_export"
    assert "in leaky_invoice_export" in report.stack
    assert "in test_it_reports_a_sqlalchemy_leak_naming_the_leaking_function" in report.stack
    assert "/sqlalchemy/" not in report.stack  # SQLAlchemy's own frames are left out
    assert report.count == 1 and report.oldest_hold_s >= THRESHOLD_S
    assert report.instance == "web-1" and report.service_id == billing.id
    assert AgentReport.objects.count() == 1  # the returned connection was never reported

    current = AgentReport.objects.current_for([billing], report.received_at)[billing.id]
    assert [(r["function"], r["count"]) for r in current] == [(report.function, 1)]

    # Once it is returned, the agent's next batch says so and the stack holds nothing any more.
    leaked.close()
    wait_until(lambda: AgentReport.objects.filter(pk=report.pk, count=0).exists())
    assert agent.reporter.failures == 0


def test_it_reports_a_psycopg_pool_leak_and_a_hold_inside_with_pool_connection(
    live_server, token, make_pool, make_agent
):
    pool = make_pool("checkout-main")
    agent = make_agent("checkout", endpoint=live_server.url, token=token, threshold_s=THRESHOLD_S, report_every_s=REPORT_EVERY_S)
    agent.instrument_psycopg_pool(pool)

    leaked = leaky_refund_export(pool)
    release = threading.Event()

    def slow_digest_inside_with():
        with pool.connection() as connection:
            connection.execute("SELECT 1")
            release.wait(10)

    holder = threading.Thread(target=slow_digest_inside_with)
    holder.start()
    try:
        leak = wait_until(lambda: stored("checkout", "leaky_refund_export"))
        held_in_with = wait_until(lambda: stored("checkout", "slow_digest_inside_with"))
    finally:
        release.set()
        holder.join(5)
    assert "in leaky_refund_export" in leak.stack and "/psycopg_pool/" not in leak.stack
    assert held_in_with.stack.endswith(".slow_digest_inside_with\n") and "contextlib" not in held_in_with.stack
    assert leak.fingerprint != held_in_with.fingerprint
    assert leak.service_id is None  # no Service of that name yet: stored by name only

    # The `with` block gave its connection back: only the real leak is still held.
    wait_until(lambda: AgentReport.objects.filter(pk=held_in_with.pk, count=0).exists())
    assert AgentReport.objects.get(pk=leak.pk).count == 1
    pool.putconn(leaked)
    assert agent.held_reports() == []


def test_it_exports_checkouts_and_held_connections_to_prometheus(make_engine, make_agent):
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    engine = make_engine("billing-main")
    agent = make_agent("billing", threshold_s=THRESHOLD_S, registry=registry)
    agent.instrument_sqlalchemy(engine)
    labels = {"service": "billing", "pool": "billing-main"}

    leaked = leaky_invoice_export(engine)
    for _ in range(4):
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    assert registry.get_sample_value("poolboard_agent_checkouts_total", labels) == 5
    assert registry.get_sample_value("poolboard_agent_held_connections", labels) == 0  # not past the threshold yet

    wait_until(lambda: registry.get_sample_value("poolboard_agent_held_connections", labels) == 1, what="a hold past the threshold")
    assert registry.get_sample_value("poolboard_agent_oldest_hold_seconds", labels) >= THRESHOLD_S
    leaked.close()
    assert registry.get_sample_value("poolboard_agent_held_connections", labels) == 0
    assert registry.get_sample_value("poolboard_agent_oldest_hold_seconds", labels) == 0
