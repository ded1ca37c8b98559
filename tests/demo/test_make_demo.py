"""`make demo` end to end, started once for the module: scripts/demo.py (what `make demo` runs after
installing) on free ports with its own database, Redis database and var/ folder. The tests run in
file order against that one demo, and the last one stops it with SIGINT as Ctrl-C would.

- the supervisor: everything comes up and collects, on the demo's own PostgreSQL cluster with
  pg_stat_statements (initdb in that var/ folder), and Ctrl-C stops every process and the cluster;
- issue 9's "done when": /queries/slow/ shows the reports service's pg_sleep statement with its
  calls, its mean time and the share of reports' pool it holds;
- issue 11's "done when": the default rules fire for the saturated, leaking, idle-in-transaction
  and slow-query services, the healthy one fires nothing, the demo's webhook receiver
  (poolboard.notify.sink, each request's Idempotency-Key logged to var/webhook.jsonl) and its
  email channel (files in var/mail/) get each notification once, a silence stops one, and the
  backtest of "waiting > 0 for 2m" over the demo's history is shown.

These used to start a demo each (4.7 minutes between them). The slow-queries and alerts checks
wait for the same running demo instead: the silence is added and /api/v1/alerts/ is watched
from the moment the demo is up, as when the alerts test had a demo of its own, while the earlier
tests run. pg_stat_statements is read every 15 s instead of every minute and pg_stat_activity
every 5 s, so that a 35-45 s report query has finished between two readings within two minutes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path

import psycopg
import pytest

from tests.demo.http_session import Browser
from tests.prom import free_port
from tests.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.prometheus, pytest.mark.demo]

BASE_PORT = 9600
DB_NAME = "poolboard_e2e_demo"
LOGIN = ("e2e", "e2e-password")

# Run in the demo right after it is up, before SlowQuery can fire for reports (a 35-45 s query, over 30 s).
SILENCE = """
import json
from datetime import timedelta
from django.utils import timezone
from poolboard.alerts.models import AlertRule
from poolboard.notify.models import Silence
now = timezone.now()
Silence.objects.create(matchers=[{"name": "alertname", "value": "SlowQuery", "isRegex": False, "isEqual": True},
                                 {"name": "service", "value": "reports", "isRegex": False, "isEqual": True}],
                       starts_at=now, ends_at=now + timedelta(hours=2), created_by="e2e", comment="done-when")
waiting = AlertRule.objects.get(name="PoolWaiting")
print(json.dumps({"waiting_pk": waiting.pk, "waiting_channels": sorted(waiting.channels.values_list("name", flat=True))}))
"""

# The alerts the default rules must raise on the demo's scenarios.
EXPECTED_FIRING = [
    ("PoolWaiting", "search"), ("LeakSuspected", "billing"), ("IdleInTransaction", "notifications"), ("SlowQuery", "reports"),
]


@dataclass
class AlertWatch:
    """What /api/v1/alerts/ showed, read every 10 s from the demo's start until every expected alert
    has fired: each (rule, service or server) seen with its states, and those seen silenced."""

    seen: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    silenced: set[tuple[str, str]] = field(default_factory=set)
    error: Exception | None = None
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def all_fired(self) -> bool:
        with self.lock:
            return all("firing" in self.seen.get(k, ()) for k in EXPECTED_FIRING)

    def snapshot(self) -> tuple[dict[tuple[str, str], set[str]], set[tuple[str, str]]]:
        with self.lock:
            return {k: set(v) for k, v in self.seen.items()}, set(self.silenced)

    def run(self, browser: Browser, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                alerts = json.loads(browser.get("/api/v1/alerts/"))["alerts"]
                with self.lock:
                    for a in alerts:
                        key = (a["rule"]["name"], a["service"] or a["server"])
                        self.seen.setdefault(key, set()).add(a["state"])
                        if a["silenced_until"]:
                            self.silenced.add(key)
                if self.all_fired():
                    return
                stop.wait(10)
        except Exception as exc:  # the alerts test reports it
            self.error = exc
        finally:
            self.done.set()


@dataclass
class Demo:
    proc: subprocess.Popen
    env: dict[str, str]
    var: Path
    web_port: int
    prom_port: int
    pg_port: int
    banner: str
    started: float  # time.monotonic() once it is up, the silence added and the alerts watched
    waiting_pk: int = 0
    waiting_channels: list[str] = field(default_factory=list)
    alerts: AlertWatch = field(default_factory=AlertWatch)
    output: str | None = None  # everything it printed, once stopped

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def left(self, seconds: float) -> float:
        """What remains of `seconds` counted from the demo's start: each test waits for the demo as long
        as when it started a demo of its own."""
        return max(1.0, self.started + seconds - time.monotonic())

    def stop(self, timeout: float) -> str:
        if self.output is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.output, _ = self.proc.communicate(timeout=timeout)
        return self.output


def webhook_log(var: Path) -> list[dict]:
    path = var / "webhook.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def mail_text(var: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted((var / "mail").glob("*.log")))


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


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


@pytest.fixture(scope="module")
def demo():
    # Not tmp_path: the demo's cluster runs as the postgres user, who cannot enter pytest's 0700 folders.
    var = Path(tempfile.mkdtemp(prefix="poolboard-e2e-demo-"))
    var.chmod(0o755)
    web_port, prom_port, pg_port = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        POOLBOARD_PORT=str(web_port), PROMETHEUS_PORT=str(prom_port), DEMO_BASE_PORT=str(BASE_PORT),
        DEMO_PG_PORT=str(pg_port), DEMO_WEBHOOK_PORT=str(free_port()), POOLBOARD_VAR=str(var),
        DATABASE_URL=f"postgresql://root@127.0.0.1:5432/{DB_NAME}", REDIS_URL="redis://127.0.0.1:6379/7",
        DJANGO_SUPERUSER_USERNAME=LOGIN[0], DJANGO_SUPERUSER_PASSWORD=LOGIN[1],
        STATEMENTS_INTERVAL="15", DATABASE_SNAPSHOT_INTERVAL="5",
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("DEMO_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    stop_watching = threading.Event()
    watcher = None
    running = Demo(proc, env, var, web_port, prom_port, pg_port, banner="", started=time.monotonic())
    try:
        deadline = time.monotonic() + 120
        while "Ctrl-C stops everything" not in running.banner and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            running.banner += line
        assert "poolboard is running" in running.banner, running.banner
        setup = subprocess.run([sys.executable, "manage.py", "shell", "-c", SILENCE],
                               env=dict(env, DJANGO_SETTINGS_MODULE="poolboard.settings"), cwd=ROOT,
                               capture_output=True, text=True, check=True)
        found = json.loads(setup.stdout.strip().splitlines()[-1])
        running.waiting_pk, running.waiting_channels = found["waiting_pk"], found["waiting_channels"]
        browser = Browser(running.base, timeout=60)
        browser.login(*LOGIN)
        watcher = threading.Thread(target=running.alerts.run, args=(browser, stop_watching), daemon=True)
        watcher.start()
        running.started = time.monotonic()
        yield running
    finally:
        stop_watching.set()
        if watcher is not None:
            watcher.join(timeout=70)
        if running.output is None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        shutil.rmtree(var, ignore_errors=True)
        drop_database(DB_NAME)


def test_make_demo_brings_up_the_fleet_on_its_own_cluster(demo: Demo) -> None:
    assert f"poolboard is running at http://127.0.0.1:{demo.web_port}/" in demo.banner, demo.banner
    assert "log in as 'e2e' with password 'e2e-password'" in demo.banner

    # Live numbers for at least six services arrive through Prometheus → worker → API.
    token = subprocess.run(
        [sys.executable, "manage.py", "createapitoken", "e2e"], env=demo.env, cwd=ROOT, capture_output=True, text=True,
        check=True,
    ).stdout.strip()

    def fresh_services() -> set[str]:
        body = get_json(f"{demo.base}/api/v1/services/", {"Authorization": f"Bearer {token}"})
        names = {s["name"] for s in body["services"] if not s["stale"]}
        return names if len(names) >= 6 else set()

    names = wait_until(fresh_services, timeout=120, interval=1, what="six services with fresh numbers")
    assert {"checkout", "search", "billing", "notifications", "reports", "sessions"} <= names
    # The fleet runs on the demo's own cluster, which gathers statement statistics.
    with psycopg.connect(f"postgresql://root@127.0.0.1:{demo.pg_port}/poolboard_demo") as conn:
        preloaded = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        fleet_sessions = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'checkout'").fetchone()[0]
        conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()
    assert "pg_stat_statements" in preloaded and fleet_sessions > 0
    health = get_json(f"{demo.base}/healthz")
    assert health["status"] == "ok", health


def test_the_slow_queries_page_shows_the_reports_pg_sleep_with_its_share_of_the_pool(demo: Demo) -> None:
    browser = Browser(demo.base)
    browser.login(*LOGIN)

    def pg_sleep_row() -> str | None:
        html = browser.get("/queries/slow/?service=reports&range=1h")
        rows = [text_of(row) for row in re.findall(r"<tr>(.*?)</tr>", html, re.S)]
        return next((r for r in rows if "SELECT pg_sleep($1)" in r and "in its pool" in r and " calls" in r), None)

    row = wait_until(pg_sleep_row, timeout=demo.left(240), interval=5,
                     what="the reports' pg_sleep statement on /queries/slow/")
    # e.g. "SELECT pg_sleep($1) demo/poolboard_demo · root 1.2/min 3 calls 40.31 s 44.87 s 97% 121 s 1
    #       reports 3 of 6 in its pool (50%) new 2"
    figures = re.search(r"(\d+) calls ([\d.]+) s .* reports (\d+) of (\d+) in its pool \((\d+)%\)", row)
    assert figures, row
    calls, mean_s, held, size, share = int(figures[1]), float(figures[2]), int(figures[3]), int(figures[4]), int(figures[5])
    assert calls >= 1 and 35 <= mean_s <= 46, row  # the scenario sleeps 35-45 s
    # reports' pool: 4 + 2 overflow; 3 report workers.
    assert size == 6 and 1 <= held <= 3 and share == round(100 * held / 6), row


def test_the_default_rules_fire_deliver_once_honour_a_silence_and_backtest_on_the_demo(demo: Demo) -> None:
    assert set(demo.waiting_channels) == {"demo-webhook", "demo-email"}
    watch = demo.alerts
    # The watch polls from the demo's start (tests above ran meanwhile); it ends once every expected alert fired.
    watch.done.wait(timeout=demo.left(480))
    if watch.error is not None:
        raise watch.error
    seen, silenced = watch.snapshot()
    assert watch.all_fired(), f"gave up after 480s waiting for the default rules firing (seen: {seen})"
    assert ("PoolSaturated", "search") in seen  # pending at least: its `for` is 5 m
    assert not [k for k in seen if k[1] in ("checkout", "checkout-2")], seen  # the healthy service
    assert ("SlowQuery", "reports") in silenced
    # Delivery: search's PoolWaiting reaches the demo's receiver and its mail, each request once
    # (every Idempotency-Key seen once), and the silenced SlowQuery never does.
    wait_until(lambda: any("PoolWaiting" in r.get("alerts", ()) for r in webhook_log(demo.var)),
               timeout=90, interval=2, what="PoolWaiting at the demo's webhook receiver")
    requests = webhook_log(demo.var)
    keys = [r["key"] for r in requests]
    assert all(keys) and len(keys) == len(set(keys)) and {r["times_seen"] for r in requests} == {1}, requests
    assert len({a for r in requests for a in r["alerts"]}) >= 3, requests
    assert not [r for r in requests if "SlowQuery" in r["alerts"]], requests
    wait_until(lambda: "PoolWaiting" in mail_text(demo.var), timeout=60, interval=2, what="PoolWaiting in var/mail/")
    mails = re.findall(r"^Idempotency-Key: (\S+)", mail_text(demo.var), re.M)
    assert len(mails) == len(set(mails)) and len(mails) >= 3, mails
    assert "alertname=SlowQuery" not in mail_text(demo.var)
    # The backtest of waiting > 0 for 2m over the demo's history (its made-up weeks and the live samples).
    browser = Browser(demo.base, timeout=60)
    browser.login(*LOGIN)
    page = browser.get(f"/admin/alerts/alertrule/{demo.waiting_pk}/backtest/?range=7d")
    fired = int(re.search(r'<b class="fired">(\d+)</b>', page).group(1))
    assert fired >= 1 and "the 5-minute rollups until" in page and 'id="backtest-data"' in page


def test_ctrl_c_stops_everything(demo: Demo) -> None:
    """Last in the file: it stops the module's demo."""
    out = demo.stop(timeout=40)
    assert demo.proc.returncode == 0, out
    assert "every process stopped" in out
    ports = [demo.web_port, demo.prom_port, demo.pg_port, *range(BASE_PORT, BASE_PORT + 7)]
    wait_until(lambda: all(port_is_free(p) for p in ports), timeout=10, what=f"ports {ports} to be free")
    # The cluster's postgres processes carry the var folder in their command line.
    leftovers = subprocess.run(["pgrep", "-f", str(demo.var)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "processes left running"
    assert "the demo's PostgreSQL cluster stopped" in out
    with psycopg.connect("postgresql://root@127.0.0.1:5432/postgres") as conn:
        sessions = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [DB_NAME]).fetchone()[0]
    assert sessions == 0
