"""The demo fleet for real: one `python -m poolboard.demo --fast` process against PostgreSQL.

The fleet is started once for the module, watched for ~25 s (every exporter scraped over HTTP and
pg_stat_activity read every 2 s), and the tests check what was seen. The last test stops it with
SIGTERM. Tests run in file order.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from poolboard.demo.fleet import SERVICES, ServiceSpec, instance_ports
from poolboard.lib.presets import BUILTIN_PRESETS
from tests.wait import wait_until

REPO = Path(__file__).resolve().parents[2]
SERVER_URL = os.environ.get("DEMO_TEST_SERVER_URL", "postgresql://root@127.0.0.1:5432")
TEST_DATABASE = f"poolboard_demo_test_{os.getpid()}"
OBSERVE_SECONDS = 25.0
OBSERVE_EVERY_SECONDS = 2.0
SERVICE_NAMES = [spec.name for spec in SERVICES]
SPEC = {spec.name: spec for spec in SERVICES}

pytestmark = pytest.mark.demo

# The exposition contract, written out here rather than imported, so a rename in the code fails.
DIALECT_SAMPLES: dict[str, dict[str, str]] = {
    "db_pool": {
        "db_pool_max_open_connections": "gauge",
        "db_pool_open_connections": "gauge",
        "db_pool_in_use_connections": "gauge",
        "db_pool_idle_connections": "gauge",
        "db_pool_pending_requests": "gauge",
        "db_pool_wait_total": "counter",
        "db_pool_wait_duration_seconds_total": "counter",
        "db_pool_exhausted_total": "counter",
        "db_pool_connections_created_total": "counter",
        "db_pool_connections_closed_total": "counter",
        "db_connection_hold_duration_seconds_bucket": "histogram",
        "db_connection_hold_duration_seconds_count": "histogram",
        "db_connection_hold_duration_seconds_sum": "histogram",
    },
    "hikaricp": {
        "hikaricp_connections_max": "gauge",
        "hikaricp_connections_min": "gauge",
        "hikaricp_connections_active": "gauge",
        "hikaricp_connections_idle": "gauge",
        "hikaricp_connections": "gauge",
        "hikaricp_connections_pending": "gauge",
        "hikaricp_connections_timeout_total": "counter",
        "hikaricp_connections_acquire_seconds_count": "summary",
        "hikaricp_connections_acquire_seconds_sum": "summary",
        "hikaricp_connections_usage_seconds_count": "summary",
        "hikaricp_connections_usage_seconds_sum": "summary",
        "hikaricp_connections_creation_seconds_count": "summary",
        "hikaricp_connections_creation_seconds_sum": "summary",
        "hikaricp_connections_acquire_seconds_max": "gauge",
        "hikaricp_connections_usage_seconds_max": "gauge",
    },
    "otel": {
        "db_client_connection_count": "gauge",
        "db_client_connection_max": "gauge",
        "db_client_connection_idle_min": "gauge",
        "db_client_connection_pending_requests": "gauge",
        "db_client_connection_timeouts_total": "counter",
        "db_client_connection_wait_time_seconds_bucket": "histogram",
        "db_client_connection_wait_time_seconds_count": "histogram",
        "db_client_connection_wait_time_seconds_sum": "histogram",
        "db_client_connection_use_time_seconds_bucket": "histogram",
        "db_client_connection_use_time_seconds_count": "histogram",
        "db_client_connection_use_time_seconds_sum": "histogram",
        "db_client_connection_create_time_seconds_bucket": "histogram",
        "db_client_connection_create_time_seconds_count": "histogram",
        "db_client_connection_create_time_seconds_sum": "histogram",
    },
}
POOL_LABEL = {"db_pool": "pool_name", "hikaricp": "pool", "otel": "db_client_connection_pool_name"}


@dataclass
class Exposition:
    """One scrape of one exporter: sample name -> [(labels, value)], and sample name -> family type."""

    samples: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)

    def value(self, name: str, **labels: str) -> float:
        matching = [v for sample_labels, v in self.samples[name] if labels.items() <= sample_labels.items()]
        assert len(matching) == 1, f"{name}{labels}: {self.samples.get(name)}"
        return matching[0]


@dataclass
class Session:
    application_name: str
    state: str
    query: str
    state_age_s: float


@dataclass
class Observation:
    at: float
    expositions: dict[tuple[str, int], Exposition]  # (service, instance) -> scrape
    sessions: list[Session]

    def of(self, service: str, instance: int = 0) -> Exposition:
        return self.expositions[(service, instance)]


@dataclass
class RunningFleet:
    process: subprocess.Popen[bytes]
    base_port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def server_connection(database: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(
        f"{SERVER_URL}/{database}", autocommit=True, application_name="poolboard-demo-test", connect_timeout=5
    )


def free_base_port(count: int) -> int:
    """A base port with `count` consecutive free loopback ports after it."""
    for base in range(23000 + os.getpid() % 5000, 60000, count):
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free port range")


def scrape(port: int) -> Exposition:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    exposition = Exposition()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            exposition.samples.setdefault(sample.name, []).append((sample.labels, sample.value))
            exposition.types[sample.name] = family.type
    return exposition


def demo_sessions() -> list[Session]:
    with server_connection() as conn:
        rows = conn.execute(
            """
            SELECT application_name, coalesce(state, ''), coalesce(query, ''),
                   extract(epoch FROM now() - state_change)::float
            FROM pg_stat_activity
            WHERE datname = %s AND application_name = ANY(%s)
            """,
            (TEST_DATABASE, SERVICE_NAMES),
        ).fetchall()
    return [Session(*row) for row in rows]


def sessions_in(database: str) -> int:
    with server_connection() as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)).fetchone()
    return row[0] if row else 0


def drop_test_database(name: str = TEST_DATABASE) -> None:
    with server_connection() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    ports = instance_ports(free_base_port(sum(spec.instances for spec in SERVICES)))
    base_port = ports[0][2]
    log_path = tmp_path_factory.mktemp("demo") / "fleet.log"
    drop_test_database()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "poolboard.demo", "--fast",
                "--base-port", str(base_port),
                "--database-url", f"{SERVER_URL}/{TEST_DATABASE}",
            ],
            cwd=REPO,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    running = RunningFleet(process, base_port, log_path)
    try:
        deadline = time.monotonic() + 30
        waiting_for = {port for _spec, _instance, port in ports}
        while waiting_for:
            assert process.poll() is None, f"the fleet exited early:\n{running.log()}"
            assert time.monotonic() < deadline, f"exporters never answered on {waiting_for}:\n{running.log()}"
            for port in list(waiting_for):
                try:
                    scrape(port)
                    waiting_for.discard(port)
                except OSError:
                    pass
            time.sleep(0.2)
        yield running
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        drop_test_database()


@pytest.fixture(scope="module")
def observations(fleet: RunningFleet) -> list[Observation]:
    seen: list[Observation] = []
    started = time.monotonic()
    while True:
        expositions = {
            (spec.name, instance): scrape(port) for spec, instance, port in instance_ports(fleet.base_port)
        }
        seen.append(Observation(time.monotonic() - started, expositions, demo_sessions()))
        if time.monotonic() - started >= OBSERVE_SECONDS:
            return seen
        time.sleep(OBSERVE_EVERY_SECONDS)


def counter_rate(first: Exposition, last: Exposition, name: str, seconds: float) -> float:
    return (last.value(name) - first.value(name)) / seconds


def test_an_exporter_port_in_use_stops_the_start_with_a_clear_message() -> None:
    ports = instance_ports(free_base_port(sum(spec.instances for spec in SERVICES)))
    clash_spec, _instance, clash_port = ports[2]
    database = f"{TEST_DATABASE}_clash"
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", clash_port))
            taken.listen()
            started = subprocess.run(
                [
                    sys.executable, "-m", "poolboard.demo",
                    "--base-port", str(ports[0][2]),
                    "--database-url", f"{SERVER_URL}/{database}",
                ],
                cwd=REPO, capture_output=True, text=True, timeout=60,
            )
        assert started.returncode == 1
        assert f"cannot listen on 127.0.0.1:{clash_port} for {clash_spec.name}" in started.stderr
        assert "Traceback" not in started.stderr
        # The pools opened before the clash were closed again (the server notices within moments).
        wait_until(lambda: sessions_in(database) == 0, timeout=5, what=f"no session left on {database}")
    finally:
        drop_test_database(database)


def test_start_log_names_every_service_with_scenario_dialect_and_port(fleet: RunningFleet) -> None:
    log = fleet.log()
    for spec, _instance, port in instance_ports(fleet.base_port):
        line = next(line for line in log.splitlines() if f" {spec.name}: scenario=" in line)
        assert f"scenario={spec.scenario}" in line
        assert f"dialect={spec.dialect}" in line
        assert str(port) in line


@pytest.mark.parametrize("spec", SERVICES, ids=SERVICE_NAMES)
def test_every_exporter_speaks_its_dialect(spec: ServiceSpec, observations: list[Observation]) -> None:
    for instance in range(spec.instances):
        exposition = observations[-1].of(spec.name, instance)
        expected = DIALECT_SAMPLES[spec.dialect]
        missing = set(expected) - set(exposition.samples)
        assert not missing, f"{spec.name}/{instance} lacks {sorted(missing)}"
        for name, metric_type in expected.items():
            assert exposition.types[name] == metric_type, name
            for labels, _value in exposition.samples[name]:
                assert labels[POOL_LABEL[spec.dialect]] == spec.pool_label_value, (name, labels)
        assert exposition.value(
            {"db_pool": "db_pool_max_open_connections", "hikaricp": "hikaricp_connections_max", "otel": "db_client_connection_max"}[spec.dialect]
        ) == spec.pool_max
    if spec.dialect == "otel":
        states = {labels["db_client_connection_state"] for labels, _ in exposition.samples["db_client_connection_count"]}
        assert states == {"used", "idle"}


@pytest.mark.parametrize("spec", SERVICES, ids=SERVICE_NAMES)
def test_the_collectors_preset_finds_every_series_it_reads(spec: ServiceSpec, observations: list[Observation]) -> None:
    """Each dialect is read by the built-in preset of the same name: every series it queries is there."""
    preset = BUILTIN_PRESETS[spec.dialect]
    assert preset is not None
    assert preset.pool_label == spec.pool_label_name
    exported = set(observations[-1].of(spec.name).samples)
    for field_name, query in {"marker": preset.marker, **preset.queries}.items():
        patterns = re.findall(r'__name__=~"([^"]+)"', query) + re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", query)
        if field_name == "marker":
            patterns = [query]
        assert patterns, query
        for pattern in patterns:
            assert any(re.fullmatch(pattern, name) for name in exported), (field_name, pattern)


def test_counters_only_go_up(observations: list[Observation]) -> None:
    for earlier, later in zip(observations, observations[1:]):
        for key, exposition in later.expositions.items():
            for name, samples in exposition.samples.items():
                if exposition.types[name] in {"counter", "histogram", "summary"} and not name.endswith("_bucket"):
                    before = earlier.expositions[key].samples[name][0][1]
                    assert samples[0][1] >= before, (key, name)


def test_healthy_checkout_has_room_and_no_waiters(observations: list[Observation]) -> None:
    for instance in range(2):
        scrapes = [observation.of("checkout", instance) for observation in observations]
        in_use = [s.value("db_pool_in_use_connections") for s in scrapes]
        idle = [s.value("db_pool_idle_connections") for s in scrapes]
        assert max(in_use) < 8
        assert min(idle) >= 1
        assert max(s.value("db_pool_pending_requests") for s in scrapes) == 0
        assert scrapes[-1].value("db_pool_exhausted_total") == 0
        for s in scrapes:
            assert s.value("db_pool_open_connections") == s.value("db_pool_in_use_connections") + s.value(
                "db_pool_idle_connections"
            )
        elapsed = observations[-1].at - observations[0].at
        assert counter_rate(scrapes[0], scrapes[-1], "db_connection_hold_duration_seconds_count", elapsed) > 5


def test_busy_search_is_saturated_with_waiters_and_high_throughput(observations: list[Observation]) -> None:
    scrapes = [observation.of("search") for observation in observations]
    saturated = [
        s for s in scrapes if s.value("hikaricp_connections_active") == 5 and s.value("hikaricp_connections_pending") > 0
    ]
    assert len(saturated) >= len(scrapes) / 2, [
        (s.value("hikaricp_connections_active"), s.value("hikaricp_connections_pending")) for s in scrapes
    ]
    first, last = scrapes[0], scrapes[-1]
    elapsed = observations[-1].at - observations[0].at
    assert counter_rate(first, last, "hikaricp_connections_acquire_seconds_count", elapsed) > 20
    usage_count = last.value("hikaricp_connections_usage_seconds_count") - first.value("hikaricp_connections_usage_seconds_count")
    usage_sum = last.value("hikaricp_connections_usage_seconds_sum") - first.value("hikaricp_connections_usage_seconds_sum")
    assert 0.05 <= usage_sum / usage_count <= 0.25  # normal hold times: the fix is capacity
    assert last.value("hikaricp_connections_acquire_seconds_max") > 0.05  # callers really wait
    assert last.value("hikaricp_connections_timeout_total") == 0


def test_leaking_billing_in_use_climbs_until_timeouts(observations: list[Observation]) -> None:
    used = [observation.of("billing").value("db_client_connection_count", db_client_connection_state="used") for observation in observations]
    assert max(used) >= used[0] + 4, used
    assert max(used) == 10, used
    assert observations[-1].of("billing").value("db_client_connection_timeouts_total") > 0
    # The leaked connections are idle to the server: only the pool knows they are gone.
    assert max(sum(1 for s in observation.sessions if s.application_name == "billing" and s.state == "idle") for observation in observations) >= 8


def test_churn_sessions_keeps_opening_connections(observations: list[Observation]) -> None:
    created = observations[-1].of("sessions").value("db_client_connection_create_time_seconds_count")
    assert created >= 3 * SPEC["sessions"].pool_max, created
    assert max(
        sum(1 for s in observation.sessions if s.application_name == "sessions") for observation in observations
    ) <= SPEC["sessions"].pool_max


def test_notifications_hold_transactions_open_while_idle(observations: list[Observation]) -> None:
    idle_in_transaction = [
        s for observation in observations for s in observation.sessions
        if s.application_name == "notifications" and s.state == "idle in transaction"
    ]
    assert idle_in_transaction
    assert max(s.state_age_s for s in idle_in_transaction) >= OBSERVE_SECONDS - 5
    assert max(o.of("notifications").value("hikaricp_connections_active") for o in observations) >= 2


def test_reports_run_long_pg_sleep_queries(observations: list[Observation]) -> None:
    last = observations[-1]
    long_sleeps = [
        s for s in last.sessions if s.application_name == "reports" and s.state == "active" and "pg_sleep" in s.query
    ]
    assert long_sleeps
    assert max(s.state_age_s for s in long_sleeps) >= OBSERVE_SECONDS - 5
    assert last.of("reports").value("db_pool_in_use_connections") >= len(long_sleeps)


def test_fleet_stays_within_its_connection_budget(observations: list[Observation]) -> None:
    assert max(len(observation.sessions) for observation in observations) <= 50
    for observation in observations:
        for spec in SERVICES:
            sessions = sum(1 for s in observation.sessions if s.application_name == spec.name)
            assert sessions <= spec.pool_max * spec.instances, (spec.name, sessions)


def test_sigterm_stops_everything_within_ten_seconds(fleet: RunningFleet) -> None:
    signalled = time.monotonic()
    fleet.process.send_signal(signal.SIGTERM)
    exit_code = fleet.process.wait(timeout=15)
    took = time.monotonic() - signalled
    log = fleet.log()
    assert exit_code == 0, log
    assert took < 10, log

    wait_until(lambda: not demo_sessions(), timeout=5, what="no demo session left")

    for _spec, _instance, port in instance_ports(fleet.base_port):
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    assert "Traceback" not in log, log
    assert "demo fleet stopped" in log
