"""F13: a dispatcher process SIGKILLed in the middle of a send; after the lease another sends again, same key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection

from poolboard.notify.dispatch import db_now, dispatch_due
from poolboard.notify.outbox import enqueue
from tests.notify.factories import alert, channel
from tests.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
DISPATCHER = "import django; django.setup(); from poolboard.notify.dispatch import dispatch_due; dispatch_due()"


@pytest.mark.django_db(transaction=True)
def test_a_killed_dispatcher_process_is_replaced_after_its_lease_and_the_receiver_sees_the_key_twice(receiver):
    hook = receiver("hang", 200)
    ch = channel(url=hook.url)
    row = enqueue(ch, "0123456789abcdef:1", "alert", alert(), db_now())
    db = connection.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
           "NOTIFY_ALLOW_NETWORKS": "127.0.0.1", "NOTIFY_TIMEOUT": "60", "POOLBOARD_PROCESS": "worker", "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([sys.executable, "-c", DISPATCHER], cwd=ROOT, env=env)
    try:
        wait_until(lambda: hook.requests, timeout=30, what="the dispatcher's request")  # it is mid-send now
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    row.refresh_from_db()
    assert row.state == "pending" and row.lease_until is not None and row.attempts == 1
    assert dispatch_due() == 0  # still leased: nobody else sends it
    dispatch_due(now=row.lease_until + timedelta(seconds=1))
    row.refresh_from_db()
    assert row.state == "sent" and row.attempts == 2
    assert hook.keys() == ["0123456789abcdef:1", "0123456789abcdef:1"]
