"""`make demo`'s supervisor end to end: everything comes up, collects, and stops cleanly.

Runs scripts/demo.py (what `make demo` runs after installing) on free ports with its own
database, Redis database and var/ folder, then sends SIGINT as Ctrl-C would. The fleet's
database is on the demo's own PostgreSQL cluster (initdb in that var/ folder), which must be
running with pg_stat_statements while the demo runs and stopped after.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from tests.prom import free_port
from tests.wait import wait_until

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.prometheus, pytest.mark.demo]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def get_json(url: str, headers: dict | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def drop_database(name: str) -> None:
    with psycopg.connect("postgresql://root@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def var_dir():
    # Not tmp_path: the demo's cluster runs as the postgres user, who cannot enter pytest's 0700 folders.
    path = Path(tempfile.mkdtemp(prefix="poolboard-e2e-demo-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_make_demo_brings_up_the_fleet_and_ctrl_c_stops_everything(var_dir) -> None:
    web_port, prom_port, pg_port = free_port(), free_port(), free_port()
    base_port = 9600
    db_name = "poolboard_e2e_demo"
    env = dict(
        os.environ,
        POOLBOARD_PORT=str(web_port),
        PROMETHEUS_PORT=str(prom_port),
        DEMO_BASE_PORT=str(base_port),
        DEMO_PG_PORT=str(pg_port),
        DEMO_WEBHOOK_PORT=str(free_port()),
        POOLBOARD_VAR=str(var_dir),
        DATABASE_URL=f"postgresql://root@127.0.0.1:5432/{db_name}",
        REDIS_URL="redis://127.0.0.1:6379/7",
        DJANGO_SUPERUSER_USERNAME="e2e",
        DJANGO_SUPERUSER_PASSWORD="e2e-password",
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        banner = ""
        deadline = time.monotonic() + 120
        while "Ctrl-C stops everything" not in banner and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            banner += line
        assert f"poolboard is running at http://127.0.0.1:{web_port}/" in banner, banner
        assert "log in as 'e2e' with password 'e2e-password'" in banner

        # Live numbers for at least six services arrive through Prometheus → worker → API.
        token = subprocess.run(
            [sys.executable, "manage.py", "createapitoken", "e2e"], env=env, cwd=ROOT, capture_output=True, text=True,
            check=True,
        ).stdout.strip()
        def fresh_services() -> set[str]:
            body = get_json(f"http://127.0.0.1:{web_port}/api/v1/services/", {"Authorization": f"Bearer {token}"})
            names = {s["name"] for s in body["services"] if not s["stale"]}
            return names if len(names) >= 6 else set()

        names = wait_until(fresh_services, timeout=120, interval=1, what="six services with fresh numbers")
        assert {"checkout", "search", "billing", "notifications", "reports", "sessions"} <= names
        # The fleet runs on the demo's own cluster, which gathers statement statistics.
        with psycopg.connect(f"postgresql://root@127.0.0.1:{pg_port}/poolboard_demo") as conn:
            preloaded = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
            fleet_sessions = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'checkout'"
            ).fetchone()[0]
            conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()
        assert "pg_stat_statements" in preloaded and fleet_sessions > 0
        health = get_json(f"http://127.0.0.1:{web_port}/healthz")
        assert health["status"] == "ok", health
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=40)
    assert proc.returncode == 0, out
    assert "every process stopped" in out
    ports = [web_port, prom_port, pg_port, *range(base_port, base_port + 7)]
    wait_until(lambda: all(port_is_free(p) for p in ports), timeout=10, what=f"ports {ports} to be free")
    # The cluster's postgres processes carry the var folder in their command line.
    leftovers = subprocess.run(["pgrep", "-f", str(var_dir)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "processes left running"
    assert "the demo's PostgreSQL cluster stopped" in out
    with psycopg.connect("postgresql://root@127.0.0.1:5432/postgres") as conn:
        sessions = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [db_name]).fetchone()[0]
    assert sessions == 0
    drop_database(db_name)
