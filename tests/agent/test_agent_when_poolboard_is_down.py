"""A down or hung poolboard costs the application nothing.

Two real failure modes: a refused port (nothing listens) and a server that accepts the connection
and never answers. The application keeps checking out connections from a real pool while the
agent's reporter fails in the background; checkouts must succeed, raise nothing, and take no longer
than without the agent, and each report attempt must end within the agent's timeout.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from tests.wait import wait_until

TIMEOUT_S = 0.5
CYCLES = 300


@pytest.fixture
def refused_url() -> str:
    """A loopback port nothing listens on."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that accepts connections and reads nothing, answers nothing."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for connection in [*accepted, server]:
        connection.close()


def leaky_invoice_export(engine):
    connection = engine.connect()
    connection.exec_driver_sql("SELECT 1")
    return connection


def checkout_latencies(engine, cycles: int) -> list[float]:
    latencies = []
    for _ in range(cycles):
        started = time.perf_counter()
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        latencies.append(time.perf_counter() - started)
    return latencies


@pytest.mark.slow  # 2 × 300 timed checkouts while reports fail: 1.5 s each
@pytest.mark.parametrize("down", ["refused_url", "silent_url"])
def test_it_costs_the_application_nothing_when_poolboard_is_down(down, request, make_engine, make_agent) -> None:
    endpoint = request.getfixturevalue(down)
    registry = CollectorRegistry()
    plain, instrumented = make_engine("plain"), make_engine("billing-main")
    agent = make_agent(
        "billing", endpoint=endpoint, token="pb_x", threshold_s=0.05, report_every_s=0.05, timeout_s=TIMEOUT_S, registry=registry
    )
    agent.instrument_sqlalchemy(instrumented)
    leaked = leaky_invoice_export(instrumented)  # so every attempt has something to send
    wait_until(agent.held_reports, timeout=5, what="the leak to be held past the threshold")
    try:
        checkout_latencies(plain, 20)  # warm both pools up
        checkout_latencies(instrumented, 20)
        without, with_agent = [], []
        deadline = time.monotonic() + 3 * TIMEOUT_S  # long enough for several failed attempts
        while time.monotonic() < deadline or agent.reporter.failures < 2:
            without += checkout_latencies(plain, 10)
            with_agent += checkout_latencies(instrumented, 10)
            assert time.monotonic() < deadline + 10, "the reporter never failed"
    finally:
        leaked.close()

    # No checkout waited for the reporter: the slowest is far below one report timeout, and the
    # typical one is as fast as without the agent (the bound is loose for a shared CI machine).
    assert max(with_agent) < TIMEOUT_S / 2
    assert statistics.median(with_agent) < statistics.median(without) * 1.5 + 0.0005
    assert agent.reporter.sent == 0 and agent.reporter.failures >= 2
    assert registry.get_sample_value("poolboard_agent_report_failures_total", {"service": "billing"}) == agent.reporter.failures
    # Each attempt ends within the timeout (the silent server makes it wait that long).
    assert agent.reporter.last_attempt_s < TIMEOUT_S + 0.25
    if down == "silent_url":
        assert agent.reporter.last_attempt_s >= TIMEOUT_S * 0.9
        assert "timed out" in agent.reporter.last_error
    else:
        assert "Connection refused" in agent.reporter.last_error


def test_it_backs_off_while_reports_fail_and_recovers_after(refused_url, make_agent) -> None:
    agent = make_agent("billing", endpoint=refused_url, token="pb_x", report_every_s=1.0)
    reporter = agent.reporter
    reporter.consecutive_failures = 0
    assert 0.9 <= reporter.next_pause() <= 1.1
    reporter.consecutive_failures = 3
    assert 7.2 <= reporter.next_pause() <= 8.8
    reporter.consecutive_failures = 40
    assert reporter.next_pause() <= 300 * 1.1  # capped at five minutes


def test_it_swallows_errors_from_the_batch_itself(refused_url, make_agent) -> None:
    agent = make_agent("billing", endpoint=refused_url, token="pb_x")

    def broken_batch():
        raise RuntimeError("a bug in building the batch")

    agent.reporter._build_batch = broken_batch
    assert agent.report_now() is False
    assert agent.reporter.last_error == "RuntimeError: a bug in building the batch"
