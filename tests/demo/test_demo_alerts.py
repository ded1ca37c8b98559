"""Issue 11's "done when", on `make demo` itself: the default rules fire for the saturated, leaking,
idle-in-transaction and slow-query services, the healthy one fires nothing, a webhook receiver and
the email backend get each notification once, a silence stops one, and the backtest of
"waiting > 0 for 2m" over the demo's history is shown.

scripts/demo.py runs as in tests/test_make_demo.py (free ports, its own var folder and databases).
The demo itself sends every default rule to its webhook receiver (poolboard.notify.sink, logging
each request's Idempotency-Key to var/webhook.jsonl) and to an email channel (files in var/mail/);
the test only adds a silence of SlowQuery on reports, then watches /api/v1/alerts/ (about five
minutes: PoolWaiting's `for` is 2 m after search saturates).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from tests.demo.http_session import Browser
from tests.prom import free_port
from tests.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.prometheus, pytest.mark.demo]

SETUP = """
from datetime import timedelta
from django.utils import timezone
from poolboard.alerts.models import AlertRule
from poolboard.notify.models import Silence
assert set(AlertRule.objects.get(name="PoolWaiting").channels.values_list("name", flat=True)) == {{"demo-webhook", "demo-email"}}
now = timezone.now()
Silence.objects.create(matchers=[{{"name": "alertname", "value": "SlowQuery", "isRegex": False, "isEqual": True}},
                                 {{"name": "service", "value": "reports", "isRegex": False, "isEqual": True}}],
                       starts_at=now, ends_at=now + timedelta(hours=2), created_by="e2e", comment="done-when")
print("waiting pk", AlertRule.objects.get(name="PoolWaiting").pk)
"""


def webhook_log(var: Path) -> list[dict]:
    path = var / "webhook.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def mail_text(var: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted((var / "mail").glob("*.log")))


def test_the_default_rules_fire_deliver_once_honour_a_silence_and_backtest_on_the_demo() -> None:
    var = Path(tempfile.mkdtemp(prefix="poolboard-demo-alerts-"))
    var.chmod(0o755)  # the demo's cluster runs as the postgres user
    web_port, prom_port, pg_port = free_port(), free_port(), free_port()
    db_name = "poolboard_e2e_alerts"
    env = dict(
        os.environ,
        POOLBOARD_PORT=str(web_port), PROMETHEUS_PORT=str(prom_port), DEMO_BASE_PORT="9760", DEMO_PG_PORT=str(pg_port),
        POOLBOARD_VAR=str(var), DATABASE_URL=f"postgresql://root@127.0.0.1:5432/{db_name}",
        REDIS_URL="redis://127.0.0.1:6379/9", DJANGO_SUPERUSER_USERNAME="e2e", DJANGO_SUPERUSER_PASSWORD="e2e-password",
        DEMO_WEBHOOK_PORT=str(free_port()),
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("DEMO_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        banner, deadline = "", time.monotonic() + 180
        while "Ctrl-C stops everything" not in banner and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            banner += line
        assert "poolboard is running" in banner, banner
        setup = subprocess.run([sys.executable, "manage.py", "shell", "-c", SETUP.format()],
                               env=dict(env, DJANGO_SETTINGS_MODULE="poolboard.settings"), cwd=ROOT,
                               capture_output=True, text=True, check=True)
        waiting_pk = int(re.search(r"waiting pk (\d+)", setup.stdout).group(1))
        browser = Browser(f"http://127.0.0.1:{web_port}", timeout=60)
        browser.login("e2e", "e2e-password")

        seen: dict[tuple[str, str], set[str]] = {}
        silenced: set[tuple[str, str]] = set()

        def expected_firing() -> bool:
            for a in json.loads(browser.get("/api/v1/alerts/"))["alerts"]:
                key = (a["rule"]["name"], a["service"] or a["server"])
                seen.setdefault(key, set()).add(a["state"])
                if a["silenced_until"]:
                    silenced.add(key)
            want = [("PoolWaiting", "search"), ("LeakSuspected", "billing"), ("IdleInTransaction", "notifications"),
                    ("SlowQuery", "reports")]
            return all("firing" in seen.get(k, ()) for k in want)

        wait_until(expected_firing, timeout=480, interval=10, what=f"the default rules firing (seen: {seen})")
        assert ("PoolSaturated", "search") in seen  # pending at least: its `for` is 5 m
        assert not [k for k in seen if k[1] in ("checkout", "checkout-2")], seen  # the healthy service
        assert ("SlowQuery", "reports") in silenced
        # Delivery: search's PoolWaiting reaches the demo's receiver and its mail, each request once
        # (every Idempotency-Key seen once), and the silenced SlowQuery never does.
        wait_until(lambda: any("PoolWaiting" in r.get("alerts", ()) for r in webhook_log(var)),
                   timeout=90, interval=2, what="PoolWaiting at the demo's webhook receiver")
        requests = webhook_log(var)
        keys = [r["key"] for r in requests]
        assert all(keys) and len(keys) == len(set(keys)) and {r["times_seen"] for r in requests} == {1}, requests
        assert len({a for r in requests for a in r["alerts"]}) >= 3, requests
        assert not [r for r in requests if "SlowQuery" in r["alerts"]], requests
        wait_until(lambda: "PoolWaiting" in mail_text(var), timeout=60, interval=2, what="PoolWaiting in var/mail/")
        mails = re.findall(r"^Idempotency-Key: (\S+)", mail_text(var), re.M)
        assert len(mails) == len(set(mails)) and len(mails) >= 3, mails
        assert "alertname=SlowQuery" not in mail_text(var)
        # The backtest of waiting > 0 for 2m over the demo's history (its made-up weeks and the live samples).
        page = browser.get(f"/admin/alerts/alertrule/{waiting_pk}/backtest/?range=7d")
        fired = int(re.search(r'<b class="fired">(\d+)</b>', page).group(1))
        assert fired >= 1 and "the 5-minute rollups until" in page and 'id="backtest-data"' in page
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        shutil.rmtree(var, ignore_errors=True)
        with psycopg.connect("postgresql://root@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    assert proc.returncode == 0, out
