"""Runs the whole demo fleet in one process and takes it down cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import URL

from poolboard.agent import Agent
from poolboard.demo.database import prepare_database
from poolboard.demo.fleet import SCRAPE_HOST, SERVICES, ServiceSpec, instance_ports
from poolboard.demo.pools import PoolAdapter, PoolExhausted
from poolboard.demo.scenarios import SCENARIOS, Scenario, Timings, Worker, open_pool

log = logging.getLogger("poolboard.demo")

# SIGTERM to exit 0 must take under ~10 s: threads get this long to finish before pools close.
WORKER_JOIN_SECONDS = 6.0
ERROR_LOG_EVERY_SECONDS = 30.0


def run_worker(service: str, worker: Worker, stop: threading.Event) -> None:
    """Repeat a worker's step until stopped; a failing database slows the loop, never spins it."""
    if stop.wait(worker.start_after_s):
        return
    last_error_logged = float("-inf")
    while not stop.is_set():
        try:
            pause = worker.step()
        except PoolExhausted:
            pause = 0.2  # counted as a timeout by the pool adapter; retry as a client would
        except Exception as exc:
            if stop.is_set():
                break  # queries cancelled by the shutdown
            now = time.monotonic()
            if now - last_error_logged >= ERROR_LOG_EVERY_SECONDS:
                log.warning("%s/%s: %s: %s", service, worker.name, type(exc).__name__, exc)
                last_error_logged = now
            pause = 1.0
        stop.wait(pause)


class DemoInstance:
    """One exporter port: a real pool, its scenario's workers and a /metrics endpoint."""

    def __init__(self, spec: ServiceSpec, instance: int, port: int, pool: PoolAdapter, scenario: Scenario):
        self.spec = spec
        self.instance = instance
        self.port = port
        self.pool = pool
        self.scenario = scenario
        self.threads: list[threading.Thread] = []
        self._http: tuple[WSGIServer, threading.Thread] | None = None

    def serve_metrics(self, registry: CollectorRegistry) -> None:
        try:
            self._http = prometheus_client.start_http_server(self.port, addr="127.0.0.1", registry=registry)
        except OSError as exc:
            raise OSError(f"cannot listen on 127.0.0.1:{self.port} for {self.spec.name}: {exc.strerror}") from exc

    def start_workers(self, stop: threading.Event) -> None:
        for worker in self.scenario.workers():
            thread = threading.Thread(
                target=run_worker,
                args=(self.spec.name, worker, stop),
                name=f"{self.spec.name}-{self.instance}-{worker.name}",
                daemon=True,
            )
            thread.start()
            self.threads.append(thread)

    def stop_serving(self) -> None:
        if self._http is not None:
            server, thread = self._http
            server.shutdown()
            server.server_close()
            thread.join(timeout=2.0)
            self._http = None


def start_agent(spec: ServiceSpec, port: int, registry: CollectorRegistry, pool: PoolAdapter) -> Agent:
    """poolboard.agent on one instance's pool, exporting into the instance's own /metrics.

    It reports to the poolboard named by POOLBOARD_AGENT_ENDPOINT and POOLBOARD_AGENT_TOKEN (make
    demo sets both); without them it only exports its metrics. The instance is named like
    Prometheus' instance label, and the adapter layer is left out of the stacks so they start at
    the scenario's code.
    """
    agent = Agent(spec.name, instance=f"{SCRAPE_HOST}:{port}", registry=registry, skip_modules=("poolboard.demo.pools",))
    pool.instrument(agent)
    return agent


class DemoFleet:
    def __init__(self, database: URL, base_port: int, timings: Timings):
        self.database = database
        self.base_port = base_port
        self.timings = timings
        self.stop_event = threading.Event()
        self.instances: list[DemoInstance] = []
        self.agents: list[Agent] = []

    def start(self) -> None:
        # Real exporters in these dialects emit no `_created` series; keep the expositions alike.
        prometheus_client.disable_created_metrics()
        prepare_database(self.database)
        for spec, instance, port in instance_ports(self.base_port):
            registry = CollectorRegistry()
            pool = open_pool(spec, registry, self.database)
            if spec.agent:
                self.agents.append(start_agent(spec, port, registry, pool))
            demo = DemoInstance(spec, instance, port, pool, SCENARIOS[spec.scenario](spec, pool, self.stop_event, self.timings))
            self.instances.append(demo)
            demo.serve_metrics(registry)
        for spec in SERVICES:
            ports = ",".join(str(demo.port) for demo in self.instances if demo.spec is spec)
            log.info(
                "%s: scenario=%s dialect=%s pool=%s max=%d port=%s",
                spec.name, spec.scenario, spec.dialect, spec.pool_kind, spec.pool_max, ports,
            )
        for demo in self.instances:
            demo.start_workers(self.stop_event)

    def stop(self) -> None:
        """Stop workers, give back held connections, close pools, then the HTTP servers."""
        self.stop_event.set()
        deadline = time.monotonic() + WORKER_JOIN_SECONDS
        threads = [thread for demo in self.instances for thread in demo.threads]
        while any(thread.is_alive() for thread in threads) and time.monotonic() < deadline:
            # Cancel repeatedly: a worker may start a query just after the previous round.
            for demo in self.instances:
                demo.pool.cancel_running_queries()
            for thread in threads:
                thread.join(timeout=0.05)
        stuck = [thread.name for thread in threads if thread.is_alive()]
        if stuck:
            log.warning("threads still running at shutdown: %s", ", ".join(stuck))
        for demo in self.instances:
            try:
                demo.scenario.release_held()
                demo.pool.close()
            except Exception as exc:
                log.warning("%s: closing the pool failed: %s", demo.spec.name, exc)
        for agent in self.agents:
            agent.close()
        for demo in self.instances:
            demo.stop_serving()


def run_fleet(database: URL, base_port: int, timings: Timings) -> int:
    """Run until SIGTERM or SIGINT; the exit status for the process."""
    stop_requested = False

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        # Only set a flag here: the shutdown itself runs in the main loop, outside the handler.
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    fleet = DemoFleet(database, base_port, timings)
    try:
        fleet.start()
    except Exception as exc:
        log.error("demo fleet failed to start: %s: %s", type(exc).__name__, exc)
        fleet.stop()
        return 1
    log.info("demo fleet running (%d exporters); SIGTERM or Ctrl-C stops it", len(fleet.instances))
    while not stop_requested:
        time.sleep(0.2)
    started = time.monotonic()
    log.info("stopping the demo fleet")
    fleet.stop()
    log.info("demo fleet stopped in %.1f s", time.monotonic() - started)
    return 0
