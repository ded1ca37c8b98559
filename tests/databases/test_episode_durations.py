"""Episodes fixed (issue 9): with the default 10 s snapshots and 30 s query threshold, 45 s
queries are all recorded, and each duration is bounded within one interval of the truth:
at least its age when last seen, at most until the snapshot that no longer saw it."""

from __future__ import annotations

import os
import threading
import time

import psycopg
import pytest

from poolboard.databases.models import Episode, snapshot_interval
from poolboard.databases.snapshots import snapshot_server
from poolboard.lib import episodes as ep
from tests.pg import HOST, PORT, SUPERUSER, server_now

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

QUERY_S = 45
APP = f"slow45-t{os.getpid()}"


def run_query(dbname: str, app: str, done: dict) -> None:
    with psycopg.connect(host=HOST, port=PORT, user=SUPERUSER, dbname=dbname, application_name=app,
                         autocommit=True) as conn:
        done[app] = conn.execute(f"SELECT pg_sleep({QUERY_S})").fetchone() is not None


def test_it_records_every_45_s_query_within_one_interval_of_the_truth(monitored, settings):
    settings.DATABASE_SNAPSHOT_INTERVAL = 10  # the default, whatever the environment says
    interval = snapshot_interval()
    assert interval == 10
    monitored.query_s = 30  # the default threshold
    monitored.save(update_fields=["query_s"])
    done: dict[str, bool] = {}
    # Three queries starting 0, 3.3 and 6.6 s into an interval: each is caught at a different
    # phase of the snapshots, concurrently, so the test takes ~1 minute whatever their number.
    apps = [f"{APP}-{i}" for i in range(3)]
    threads = []
    for i, app in enumerate(apps):
        t = threading.Thread(target=run_query, args=(monitored.dbname, app, done), daemon=True)
        t.start()
        threads.append(t)
        if i < len(apps) - 1:
            time.sleep(interval / len(apps))
    taken = []
    deadline = time.monotonic() + QUERY_S + 3 * interval
    # One snapshot per slot, as the beat schedules them, until every query has ended and
    # one more snapshot has seen it gone.
    while time.monotonic() < deadline:
        now = server_now().timestamp()
        time.sleep(interval - now % interval + 0.05)
        assert snapshot_server(monitored).status == "ok"
        taken.append(monitored.snapshots.latest("taken_at").taken_at)
        if len(done) == len(apps):
            break
    for t in threads:
        t.join(timeout=5)
    assert len(done) == len(apps), "the queries did not finish"
    gaps = [(b - a).total_seconds() for a, b in zip(taken, taken[1:])]
    assert max(gaps) < interval + 2, gaps  # the snapshots came every interval

    episodes = {e.application_name: e for e in Episode.objects.filter(kind=ep.LONG_QUERY, application_name__in=apps)}
    assert sorted(episodes) == apps  # every one recorded, once
    for app, e in episodes.items():
        assert Episode.objects.filter(kind=ep.LONG_QUERY, application_name=app).count() == 1
        assert e.ended is not None, f"{app}: still open"
        # The truth is 45 s (and a few ms): the lower bound is the age when last seen, the
        # upper the time of the first snapshot that no longer saw it.
        low, high = e.duration_s, e.duration_max_s
        assert QUERY_S - interval - 1 <= low <= QUERY_S + 0.5, (app, low)
        assert QUERY_S - 0.5 <= high <= QUERY_S + interval + 1, (app, high)
        assert high - low <= interval + 1, (app, low, high)
