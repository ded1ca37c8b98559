"""The demo fleet's static description: ports, Prometheus config, CLI, import weight."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from poolboard.demo.exporters import DecayingMax
from poolboard.demo.fleet import SERVICES, fleet_connection_budget, prometheus_config, scrape_targets

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poolboard.demo", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_scrape_targets_hands_out_consecutive_ports_in_services_order() -> None:
    assert scrape_targets(9201) == {
        "checkout": ["127.0.0.1:9201", "127.0.0.1:9202"],
        "search": ["127.0.0.1:9203"],
        "billing": ["127.0.0.1:9204"],
        "notifications": ["127.0.0.1:9205"],
        "reports": ["127.0.0.1:9206"],
        "sessions": ["127.0.0.1:9207"],
    }
    assert list(scrape_targets(30000)) == [spec.name for spec in SERVICES]


@pytest.mark.parametrize("base_port", [0, -1, 65530, 70000])
def test_scrape_targets_refuses_ports_outside_the_tcp_range(base_port: int) -> None:
    with pytest.raises(ValueError, match="base port"):
        scrape_targets(base_port)


def test_fleet_fits_the_connection_budget() -> None:
    # Well under the server's max_connections = 100, leaving room for poolboard itself.
    assert fleet_connection_budget() == 48
    assert fleet_connection_budget() <= 50


def test_every_scenario_and_dialect_is_played() -> None:
    assert {spec.scenario for spec in SERVICES} == {
        "healthy", "busy", "leaking", "idle_in_transaction", "slow_queries", "churn",
    }
    assert {spec.dialect for spec in SERVICES} == {"db_pool", "hikaricp", "otel"}
    assert {spec.pool_kind for spec in SERVICES} == {"psycopg_pool", "sqlalchemy"}
    assert len({spec.name for spec in SERVICES}) == len(SERVICES)


def test_prometheus_config_scrapes_one_job_per_service(tmp_path: Path) -> None:
    text = prometheus_config(9201, scrape_interval="10s")
    config = yaml.safe_load(text)
    assert config["global"] == {"scrape_interval": "10s", "evaluation_interval": "10s"}
    assert {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]} == scrape_targets(
        9201
    )


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(prometheus_config(9201))
    checked = subprocess.run([promtool, "check", "config", str(config_file)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("interval", ["", "5", "five seconds", "5s; rm -rf /", "-5s"])
def test_prometheus_config_refuses_what_is_not_a_duration(interval: str) -> None:
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        prometheus_config(9201, scrape_interval=interval)


@pytest.mark.demo  # a fresh `python -m poolboard.demo` process each: 1-2 s
def test_cli_prints_targets_and_config() -> None:
    targets = run_cli("targets", "--base-port", "9300")
    assert targets.returncode == 0, targets.stderr
    assert json.loads(targets.stdout) == scrape_targets(9300)

    config = run_cli("prometheus-config", "--base-port", "9300", "--scrape-interval", "15s")
    assert config.returncode == 0, config.stderr
    assert config.stdout == prometheus_config(9300, "15s")


@pytest.mark.demo  # a fresh `python -m poolboard.demo` process each: 1-2 s
def test_cli_explains_a_bad_port_or_interval() -> None:
    bad_port = run_cli("targets", "--base-port", "70000")
    assert bad_port.returncode == 2
    assert "base port 70000" in bad_port.stderr

    bad_interval = run_cli("prometheus-config", "--scrape-interval", "soon")
    assert bad_interval.returncode == 2
    assert "not a Prometheus duration" in bad_interval.stderr


def test_importing_fleet_loads_no_django_and_no_database_driver() -> None:
    # Measured against the parent package, whose own imports are not the demo's to decide.
    probe = (
        "import sys, poolboard; before = set(sys.modules); import poolboard.demo.fleet; "
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr
    top_level = {name.split(".")[0] for name in loaded.stdout.split()}
    assert not top_level & {"django", "psycopg", "psycopg_pool", "sqlalchemy", "prometheus_client"}


def test_decaying_max_forgets_values_after_about_two_minutes() -> None:
    now = [1000.0]
    window_max = DecayingMax(expiry_seconds=120.0, windows=3, clock=lambda: now[0])
    assert window_max.value() == 0.0
    window_max.record(2.5)
    window_max.record(0.5)
    now[0] += 50
    assert window_max.value() == 2.5
    window_max.record(1.0)
    now[0] += 75  # 125 s after the 2.5, 75 s after the 1.0
    assert window_max.value() == 1.0
    now[0] += 1000
    assert window_max.value() == 0.0


@pytest.mark.demo  # a fresh `python -m poolboard.demo` process each: 1-2 s
def test_cli_explains_a_database_url_it_cannot_use() -> None:
    not_postgres = run_cli("--database-url", "mysql://root@127.0.0.1/demo")
    assert not_postgres.returncode == 2
    assert "the database URL must start with postgresql:// (got scheme 'mysql')" in not_postgres.stderr

    no_database = run_cli("--database-url", "postgresql://root@127.0.0.1:5432")
    assert no_database.returncode == 2
    assert "names no database" in no_database.stderr


@pytest.mark.demo  # a fresh `python -m poolboard.demo` process each: 1-2 s
def test_fleet_reports_an_unreachable_database_and_exits_1() -> None:
    # Port 1 on loopback refuses at once: nothing listens there.
    unreachable = run_cli("--base-port", "9901", "--database-url", "postgresql://root@127.0.0.1:1/poolboard_demo")
    assert unreachable.returncode == 1
    assert "demo fleet failed to start: OperationalError" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
