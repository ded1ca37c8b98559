"""The demo's billing service runs poolboard.agent, and its stack names the leaking function."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry

from poolboard.demo.database import parse_database_url, prepare_database
from poolboard.demo.fleet import SERVICES
from poolboard.demo.runner import run_worker, start_agent
from poolboard.demo.scenarios import FAST_TIMINGS, SCENARIOS, open_pool
from tests.pg import HOST, PORT, SUPERUSER
from tests.wait import wait_until


@pytest.mark.demo  # the demo's billing scenario with its workers
def test_the_demo_billing_leak_is_reported_at_leaky_refund_export(app_database, monkeypatch) -> None:
    monkeypatch.delenv("POOLBOARD_AGENT_ENDPOINT", raising=False)
    monkeypatch.delenv("POOLBOARD_AGENT_TOKEN", raising=False)
    assert {spec.name for spec in SERVICES if spec.agent} == {"billing", "checkout"}
    database = parse_database_url(f"postgresql://{SUPERUSER}@{HOST}:{PORT}/{app_database}")
    prepare_database(database)
    billing = next(spec for spec in SERVICES if spec.name == "billing")
    registry = CollectorRegistry()
    pool = open_pool(billing, registry, database)
    agent = start_agent(billing, 9203, registry, pool)
    agent.threshold_s = 0.5  # the demo keeps the 60 s default
    stop = threading.Event()
    scenario = SCENARIOS[billing.scenario](billing, pool, stop, FAST_TIMINGS)
    threads = [threading.Thread(target=run_worker, args=(billing.name, w, stop), daemon=True) for w in scenario.workers()]
    for thread in threads:
        thread.start()
    try:
        [report] = wait_until(agent.held_reports, timeout=10, what="a held-connection report")  # the steady invoices return theirs: one leaking stack
        checkouts = registry.get_sample_value(
            "poolboard_agent_checkouts_total", {"service": "billing", "pool": billing.pool_label_value}
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        scenario.release_held()
        agent.close()
        pool.close()
    assert report["function"] == "poolboard.demo.scenarios.Leaking.leaky_refund_export"
    assert "poolboard/demo/pools.py" not in report["stack"]  # the adapter layer is left out
    assert agent.reporter is None  # no endpoint and token: metrics only, the demo runs as before
    assert checkouts >= 2
