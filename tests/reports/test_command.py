"""manage.py report: generate or regenerate one week, with its PDF and email."""

from __future__ import annotations

import subprocess

import pytest
from django.core.management import CommandError, call_command

from poolboard.notify.models import Notification
from poolboard.reports.models import Report

from . import factories
from .test_build import WEEK, busy_week

pytestmark = pytest.mark.django_db


def test_it_generates_a_week_with_its_pdf_and_email(make_service, tmp_path, capsys):
    svc = make_service("search", instances=1)
    factories.week_of_rollups(svc.pools.get(), WEEK, busy_week)
    out_pdf = tmp_path / "w47.pdf"
    call_command("report", "--week", "2026-W47", "--pdf", str(out_pdf), "--email", "ops@example.org")
    out = capsys.readouterr().out
    assert "2026-W47 version 1: 1 services" in out and "168 h" in out
    assert f"PDF written to {out_pdf}" in out and "email to ops@example.org queued" in out
    text = subprocess.run(["pdftotext", str(out_pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "Weekly capacity report 2026-W47" in text
    row = Notification.objects.get(kind="report")
    assert row.payload["to"] == ["ops@example.org"] and row.payload["attachments"][0]["filename"].endswith(".pdf")
    # Regenerating makes a new version; the first is kept as it was.
    first = Report.objects.get(week="2026-W47", version=1)
    call_command("report", "--week", "2026-W47")
    assert "2026-W47 version 2" in capsys.readouterr().out
    assert Report.objects.get(pk=first.pk).numbers == first.numbers


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--week", "2026-48"], "not an ISO week: give it as YYYY-Www"),
        (["--week", "2099-W01"], "2099-W01 is not over yet"),
        (["--week", "2026-W47", "--email", "not-an-address"], "'not-an-address' is not an email address"),
    ],
)
def test_it_says_what_is_wrong(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("report", *args)
    assert not Report.objects.exists()
