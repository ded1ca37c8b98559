"""`make demo` end to end: one demo for the module (tests/demo/running_demo.py: scripts/demo.py on
free ports with its own database, Redis database and var/ folder), started in the background when
the session begins so that the minutes it needs pass while the rest of the suite runs. The tests
run in file order against it, and the last one stops it with SIGINT as Ctrl-C would.

- the supervisor: everything comes up and collects, on the demo's own PostgreSQL cluster with
  pg_stat_statements (initdb in that var/ folder), and Ctrl-C stops every process and the cluster;
- issue 9's "done when": /queries/slow/ shows the reports service's pg_sleep statement with its
  calls, its mean time and the share of reports' pool it holds;
- issue 11's "done when": the default rules fire for the saturated, leaking, idle-in-transaction
  and slow-query services, the healthy one fires nothing, the demo's webhook receiver
  (poolboard.notify.sink, each request's Idempotency-Key logged to var/webhook.jsonl) and its
  email channel (files in var/mail/) get each notification once, a silence (added as soon as the
  demo is up) stops one, and the backtest of "waiting > 0 for 2m" over the demo's history is shown.

These used to start a demo each, one after the other (4.7 minutes between them).
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import socket
import subprocess
import sys
import urllib.request
from html import unescape
from pathlib import Path

import psycopg
import pytest

from tests.demo.http_session import Browser
from tests.demo.running_demo import BASE_PORT, DB_NAME, LOGIN, RunningDemo
from tests.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.prometheus, pytest.mark.demo]


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


def test_make_demo_brings_up_the_fleet_on_its_own_cluster(running_demo: RunningDemo) -> None:
    assert f"poolboard is running at http://127.0.0.1:{running_demo.web_port}/" in running_demo.banner, running_demo.banner
    assert "log in as 'e2e' with password 'e2e-password'" in running_demo.banner

    # Live numbers for at least six services arrive through Prometheus → worker → API.
    token = subprocess.run(
        [sys.executable, "manage.py", "createapitoken", "e2e"], env=running_demo.env, cwd=ROOT, capture_output=True, text=True,
        check=True,
    ).stdout.strip()

    def fresh_services() -> set[str]:
        body = get_json(f"{running_demo.base}/api/v1/services/", {"Authorization": f"Bearer {token}"})
        names = {s["name"] for s in body["services"] if not s["stale"]}
        return names if len(names) >= 6 else set()

    names = wait_until(fresh_services, timeout=120, interval=1, what="six services with fresh numbers")
    assert {"checkout", "search", "billing", "notifications", "reports", "sessions"} <= names
    # The fleet runs on the demo's own cluster, which gathers statement statistics.
    with psycopg.connect(f"postgresql://root@127.0.0.1:{running_demo.pg_port}/poolboard_demo") as conn:
        preloaded = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        fleet_sessions = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'checkout'").fetchone()[0]
        conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()
    assert "pg_stat_statements" in preloaded and fleet_sessions > 0
    health = get_json(f"{running_demo.base}/healthz")
    assert health["status"] == "ok", health


def test_last_weeks_report_is_on_the_reports_page_and_in_the_demo_mail(running_demo: RunningDemo) -> None:
    """Issue 12's "done when": the Reports page has last week's (demo) report with its charts, and
    its email (file backend, var/mail/) went to the demo's team subscription with the same figures."""
    browser = Browser(running_demo.base)
    browser.login(*LOGIN)
    listing = browser.get("/reports/")
    week = re.search(r'href="/reports/(\d{4}-W\d{2})/"', listing)
    assert week, text_of(listing)[:500]
    page = browser.get(f"/reports/{week[1]}/")
    assert "Demo data" in page and "<svg" in page, text_of(page)[:500]
    search_row = text_of(re.search(r'<tr id="row-search">.*?</tr>', page, re.S).group())
    saturated = re.search(r"([\d,]+) min", search_row)
    assert saturated and int(saturated[1].replace(",", "")) > 0, search_row
    def report_mail():
        # The file backend writes each message's MIME source, separated by a line of 79 dashes.
        for source in mail_text(running_demo.var).split("-" * 79):
            message = email.message_from_string(source.strip(), policy=email.policy.default)
            if "capacity-team@example.org" in str(message.get("To", "")) and week[1] in str(message.get("Subject", "")):
                return message
        return None

    message = wait_until(report_mail, timeout=running_demo.left(60), interval=2, what="the report email in var/mail/")
    text = " ".join(message.get_body(("plain",)).get_content().split())
    html = message.get_body(("html",)).get_content()
    attachments = [part.get_filename() for part in message.iter_attachments()]
    assert f"poolboard-report-{week[1]}-v1.pdf" in attachments, attachments  # the PDF attached
    assert f"saturated {saturated[1]} min" in text, (search_row, text[:800])
    assert saturated[1] in text_of(html) and 'src="cid:' in html  # the charts inline


def test_the_slow_queries_page_shows_the_reports_pg_sleep_with_its_share_of_the_pool(running_demo: RunningDemo) -> None:
    browser = Browser(running_demo.base)
    browser.login(*LOGIN)

    def pg_sleep_row() -> str | None:
        html = browser.get("/queries/slow/?service=reports&range=1h")
        rows = [text_of(row) for row in re.findall(r"<tr>(.*?)</tr>", html, re.S)]
        return next((r for r in rows if "SELECT pg_sleep($1)" in r and "in its pool" in r and " calls" in r), None)

    row = wait_until(pg_sleep_row, timeout=running_demo.left(240), interval=5,
                     what="the reports' pg_sleep statement on /queries/slow/")
    # e.g. "SELECT pg_sleep($1) demo/poolboard_demo · root 1.2/min 3 calls 40.31 s 44.87 s 97% 121 s 1
    #       reports 3 of 6 in its pool (50%) new 2"
    figures = re.search(r"(\d+) calls ([\d.]+) s .* reports (\d+) of (\d+) in its pool \((\d+)%\)", row)
    assert figures, row
    calls, mean_s, held, size, share = int(figures[1]), float(figures[2]), int(figures[3]), int(figures[4]), int(figures[5])
    assert calls >= 1 and 35 <= mean_s <= 46, row  # the scenario sleeps 35-45 s
    # reports' pool: 4 + 2 overflow; 3 report workers.
    assert size == 6 and 1 <= held <= 3 and share == round(100 * held / 6), row


def test_the_default_rules_fire_deliver_once_honour_a_silence_and_backtest_on_the_demo(running_demo: RunningDemo) -> None:
    assert set(running_demo.waiting_channels) == {"demo-webhook", "demo-email"}
    watch = running_demo.alerts
    # Read every 10 s from the demo's start while the rest of the suite ran; it ends once every expected alert fired.
    watch.done.wait(timeout=running_demo.left(480))
    if watch.error is not None:
        raise watch.error
    seen, silenced = watch.snapshot()
    assert watch.all_fired(), f"gave up after 480s waiting for the default rules firing (seen: {seen})"
    assert ("PoolSaturated", "search") in seen  # pending at least: its `for` is 5 m
    assert not [k for k in seen if k[1] in ("checkout", "checkout-2")], seen  # the healthy service
    assert ("SlowQuery", "reports") in silenced
    # Delivery: search's PoolWaiting reaches the demo's receiver and its mail, each request once
    # (every Idempotency-Key seen once), and the silenced SlowQuery never does.
    wait_until(lambda: any("PoolWaiting" in r.get("alerts", ()) for r in webhook_log(running_demo.var)),
               timeout=90, interval=2, what="PoolWaiting at the demo's webhook receiver")
    requests = webhook_log(running_demo.var)
    keys = [r["key"] for r in requests]
    assert all(keys) and len(keys) == len(set(keys)) and {r["times_seen"] for r in requests} == {1}, requests
    assert len({a for r in requests for a in r["alerts"]}) >= 3, requests
    assert not [r for r in requests if "SlowQuery" in r["alerts"]], requests
    wait_until(lambda: "PoolWaiting" in mail_text(running_demo.var), timeout=60, interval=2, what="PoolWaiting in var/mail/")
    mails = re.findall(r"^Idempotency-Key: (\S+)", mail_text(running_demo.var), re.M)
    assert len(mails) == len(set(mails)) and len(mails) >= 3, mails
    assert "alertname=SlowQuery" not in mail_text(running_demo.var)
    # The backtest of waiting > 0 for 2m over the demo's history (its made-up weeks and the live samples).
    browser = Browser(running_demo.base, timeout=60)
    browser.login(*LOGIN)
    page = browser.get(f"/admin/alerts/alertrule/{running_demo.waiting_pk}/backtest/?range=7d")
    fired = int(re.search(r'<b class="fired">(\d+)</b>', page).group(1))
    assert fired >= 1 and "the 5-minute rollups until" in page and 'id="backtest-data"' in page


def test_ctrl_c_stops_everything(running_demo: RunningDemo) -> None:
    """Last in the file: it stops the demo the tests above used."""
    out = running_demo.stop(timeout=40)
    assert running_demo.proc.returncode == 0, out
    assert "every process stopped" in out
    ports = [running_demo.web_port, running_demo.prom_port, running_demo.pg_port, *range(BASE_PORT, BASE_PORT + 7)]
    wait_until(lambda: all(port_is_free(p) for p in ports), timeout=10, what=f"ports {ports} to be free")
    # The cluster's postgres processes carry the var folder in their command line.
    leftovers = subprocess.run(["pgrep", "-f", str(running_demo.var)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "processes left running"
    assert "the demo's PostgreSQL cluster stopped" in out
    with psycopg.connect("postgresql://root@127.0.0.1:5432/postgres") as conn:
        sessions = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [DB_NAME]).fetchone()[0]
    assert sessions == 0
