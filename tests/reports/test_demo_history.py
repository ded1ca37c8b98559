"""The demo's made-up history: marked, idempotent, and it gives the report something to say."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from poolboard.databases.models import MonitoredServer
from poolboard.fleet.models import Pool
from poolboard.history.models import PoolRollup5m
from poolboard.reports.models import Report

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 12, 2, 10, tzinfo=UTC)  # a Wednesday: week 49 is running, 48 is the last complete


def test_it_backfills_marked_demo_history_and_builds_demo_reports(make_source, capsys, time_machine):
    time_machine.move_to(NOW, tick=False)
    make_source("demo")
    MonitoredServer.objects.create(name="demo", host="127.0.0.1", port=1, dbname="poolboard_demo", user="root")
    started = time.perf_counter()
    call_command("seeddemohistory")
    elapsed = time.perf_counter() - started
    out = capsys.readouterr().out
    assert "DEMO DATA written" in out and "demo report built for 2026-W48" in out
    assert "its email queued to 1 subscriber(s) (capacity-team@example.org)" in out
    reports = list(Report.objects.order_by("period_start"))
    assert [r.week for r in reports] == ["2026-W48"] and reports[0].demo
    # 7 pools × two weeks of 5-minute buckets (W47 and W48, no DST change).
    assert PoolRollup5m.objects.count() == 7 * 2 * 2016
    assert elapsed < 20  # make demo waits for it (a few seconds on a quiet machine)
    last = reports[0].numbers
    names = {s["name"] for s in last["services"]}
    assert names == {"checkout", "search", "billing", "notifications", "reports", "sessions"}
    assert Pool.objects.get(service__name="search").instance == "127.0.0.1:9203"
    search = next(s for s in last["services"] if s["name"] == "search")
    assert search["figures"]["saturation_minutes"] > 0 and search["figures"]["peak_util"] == pytest.approx(1.0)
    assert search["changes"]["p95_util"]["direction"] != "none"  # the week before is there too
    assert search["figures"]["timeouts"] > 0
    db = last["databases"][0]
    assert db["forecast"]["status"] == "rising" and db["forecast"]["days"] > 0
    kinds = {a["kind"] for a in last["headline"]["actions"]}
    assert "saturation" in kinds
    reports_row = next(s for s in last["services"] if s["name"] == "reports")
    assert reports_row["episodes"]["long_query"]["count"] > 0
    # The demo team's email goes out through the outbox like any subscriber's, with the page's figures.
    from django.core import mail

    from poolboard.notify.dispatch import dispatch_due

    dispatch_due(NOW + timedelta(seconds=1))
    (message,) = mail.outbox
    assert message.to == ["capacity-team@example.org"] and "2026-W48" in message.subject
    assert f"saturated {search['figures']['saturation_minutes']:,.0f} min" in message.body
    assert [a[0] for a in message.attachments if isinstance(a, tuple)] == ["poolboard-report-2026-W48-v1.pdf"]
    # Twice: nothing more (last week has its report, the team its email).
    call_command("seeddemohistory")
    assert "nothing to do" in capsys.readouterr().out
    assert Report.objects.count() == 1
    dispatch_due(NOW + timedelta(seconds=2))
    assert len(mail.outbox) == 1


def test_it_says_what_is_missing_without_a_source(time_machine):
    from django.core.management.base import CommandError

    time_machine.move_to(NOW, tick=False)
    with pytest.raises(CommandError, match="No Prometheus source"):
        call_command("seeddemohistory")
