"""Benchmark: outbox rows delivered per second by 4 dispatchers to a local webhook receiver.

1. A throwaway database; a webhook channel to a local receiver (http.server, threads, 200 at once)
   grouping by (alertname, service), group_wait 0.
2. alerts_dispatch_per_s: BENCH_NOTIFY_ROWS (default 2 000) alert rows, each its own group,
   so each is one request; 4 dispatcher threads, each with its own database connection, run
   dispatch_due() until the outbox is empty. Rows / wall-clock seconds.
3. alerts_dispatch_batched_per_s: the same rows in groups of 50 alerts (one request per group).
4. alerts_dispatch_queries_per_row: SQL statements one dispatcher spends per single-alert row
   (claim + send + record), the figure that does not depend on how busy the machine is.
Each key must reach the receiver exactly once (checked; a duplicate or a loss fails the run).

Prints `name: value` lines (make bench).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ["NOTIFY_ALLOW_NETWORKS"] = "127.0.0.1"

from throwaway_db import run_then_drop, use_throwaway_database  # noqa: E402

BENCH_DB = f"poolboard_bench_notify_{os.getpid()}"
use_throwaway_database(BENCH_DB)

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from poolboard.notify.dispatch import db_now, dispatch_due  # noqa: E402
from poolboard.notify.models import Channel, Notification  # noqa: E402
from poolboard.notify.outbox import enqueue  # noqa: E402

call_command("migrate", verbosity=0)
settings.NOTIFY_WAKE_DISPATCHER = False

ROWS = int(os.getenv("BENCH_NOTIFY_ROWS", "2000"))
DISPATCHERS = 4
received: list[str] = []
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with lock:
            received.append(self.headers.get("Idempotency-Key"))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def fill(channel: Channel, per_group: int) -> list[str]:
    now = db_now()
    keys = []
    for n in range(ROWS):
        fingerprint = f"{n:016x}"
        keys.append(f"{fingerprint}:1")
        payload = {"status": "firing", "fingerprint": fingerprint,
                   "labels": {"alertname": "PoolSaturated", "service": f"svc{n // per_group}", "pool": f"p{n}"},
                   "annotations": {"summary": f"pool p{n} saturated"}, "startsAt": now.isoformat(), "endsAt": None,
                   "generatorURL": "/alerts/rules/1/"}
        enqueue(channel, keys[-1], "alert", payload, now)
    return keys


def run(channel: Channel, per_group: int) -> float:
    Notification.objects.all().delete()
    received.clear()
    keys = fill(channel, per_group)
    barrier = threading.Barrier(DISPATCHERS + 1)

    def dispatcher():
        try:
            barrier.wait()
            while dispatch_due(limit=10**6):
                pass
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher) for _ in range(DISPATCHERS)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if per_group == 1:
        counts = Counter(received)
        if counts != Counter(keys):
            raise SystemExit(f"delivery was not exactly once: {len(received)} requests for {len(keys)} keys")
    sent = Notification.objects.filter(state="sent").count()
    if sent != ROWS:
        raise SystemExit(f"{sent} of {ROWS} rows sent")
    return ROWS / elapsed


def queries_per_row(channel: Channel, rows: int = 50) -> float:
    Notification.objects.all().delete()
    now = db_now()
    for n in range(rows):
        payload = {"status": "firing", "fingerprint": f"{n:016x}", "labels": {"alertname": "Q", "service": f"q{n}"}}
        enqueue(channel, f"q{n}:1", "alert", payload, now)
    with CaptureQueriesContext(connection) as queries:
        handled = dispatch_due(limit=rows)
    assert handled == rows, handled
    return len(queries) / rows


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    channel = Channel.objects.create(
        name="bench", kind="webhook", settings={"url": f"http://127.0.0.1:{server.server_port}/hook"},
        group_by=["alertname", "service"], group_wait_s=0, group_interval_s=0,
    )
    try:
        print(f"alerts_dispatch_per_s: {run(channel, 1):.0f}")
        print(f"alerts_dispatch_batched_per_s: {run(channel, 50):.0f}")
        print(f"alerts_dispatch_queries_per_row: {queries_per_row(channel):.1f}")
        print(f"# {ROWS} rows, {DISPATCHERS} dispatchers, one request per row, then one per 50-alert group")
    finally:
        server.shutdown()


if __name__ == "__main__":
    run_then_drop(main, BENCH_DB)
