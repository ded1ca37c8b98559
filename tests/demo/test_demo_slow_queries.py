"""Issue 9's "done when", on `make demo` itself: the slow-queries page shows the reports service's
pg_sleep statement with its calls, its mean time and the share of reports' pool it holds.

scripts/demo.py runs as in tests/test_make_demo.py (free ports, its own var folder and databases),
with pg_stat_statements read every 15 s instead of 5 min so that a 35-45 s report query has
finished between two readings within about two minutes. The page is fetched as a logged-in user.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from html import unescape
from pathlib import Path

import psycopg
import pytest

from tests.demo.http_session import Browser
from tests.prom import free_port
from tests.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.prometheus, pytest.mark.demo]


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def test_the_slow_queries_page_shows_the_reports_pg_sleep_with_its_share_of_the_pool() -> None:
    var = Path(tempfile.mkdtemp(prefix="poolboard-demo-slowq-"))
    var.chmod(0o755)  # the demo's cluster runs as the postgres user
    web_port, prom_port, pg_port = free_port(), free_port(), free_port()
    db_name = "poolboard_e2e_slowq"
    env = dict(
        os.environ,
        POOLBOARD_PORT=str(web_port), PROMETHEUS_PORT=str(prom_port), DEMO_BASE_PORT="9640", DEMO_PG_PORT=str(pg_port),
        DEMO_WEBHOOK_PORT=str(free_port()), POOLBOARD_VAR=str(var), DATABASE_URL=f"postgresql://root@127.0.0.1:5432/{db_name}",
        REDIS_URL="redis://127.0.0.1:6379/8", DJANGO_SUPERUSER_USERNAME="e2e", DJANGO_SUPERUSER_PASSWORD="e2e-password",
        STATEMENTS_INTERVAL="15", DATABASE_SNAPSHOT_INTERVAL="5",
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("DEMO_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        banner, deadline = "", time.monotonic() + 120
        while "Ctrl-C stops everything" not in banner and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            banner += line
        assert "poolboard is running" in banner, banner
        browser = Browser(f"http://127.0.0.1:{web_port}")
        browser.login("e2e", "e2e-password")

        def pg_sleep_row() -> str | None:
            html = browser.get("/queries/slow/?service=reports&range=1h")
            rows = [text_of(row) for row in re.findall(r"<tr>(.*?)</tr>", html, re.S)]
            return next((r for r in rows if "SELECT pg_sleep($1)" in r and "in its pool" in r and " calls" in r), None)

        row = wait_until(pg_sleep_row, timeout=240, interval=5, what="the reports' pg_sleep statement on /queries/slow/")
        # e.g. "SELECT pg_sleep($1) demo/poolboard_demo · root 1.2/min 3 calls 40.31 s 44.87 s 97% 121 s 1
        #       reports 3 of 6 in its pool (50%) new 2"
        figures = re.search(r"(\d+) calls ([\d.]+) s .* reports (\d+) of (\d+) in its pool \((\d+)%\)", row)
        assert figures, row
        calls, mean_s, held, size, share = int(figures[1]), float(figures[2]), int(figures[3]), int(figures[4]), int(figures[5])
        assert calls >= 1 and 35 <= mean_s <= 46, row  # the scenario sleeps 35-45 s
        # reports' pool: 4 + 2 overflow; 3 report workers.
        assert size == 6 and 1 <= held <= 3 and share == round(100 * held / 6), row
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=40)
        shutil.rmtree(var, ignore_errors=True)
        with psycopg.connect("postgresql://root@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    assert proc.returncode == 0, out
