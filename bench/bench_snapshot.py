"""Benchmark: a pg_stat_activity snapshot (take + store) vs a bare fetch of the same rows.

1. Start a throwaway PostgreSQL cluster (initdb, another port, max_connections 1100) so
   the main server's configuration is never touched; stop and delete it afterwards.
2. Open 1 000 real connections in mixed states: idle, idle in transaction, active
   (pg_sleep sent without waiting for it), several application names.
3. snapshot_ratio = median(snapshot + store) / median(bare fetch), medians of
   BENCH_ROUNDS rounds (default 31), where the bare fetch is: connect,
   SELECT * FROM pg_stat_activity, fetch every row, close. Every round starts
   in a new 1 s slot (so every store really stores) and times both; which one
   goes first alternates, because whichever runs right after the other is
   measurably slower or faster on the same server. Both are warmed up twice
   first (nothing stored); then every round counts, the first one too (it
   opens the episodes the later ones update).
   snapshot_take_ms (pgactivity.snapshot) and snapshot_save_ms (store_snapshot)
   are the medians of the two parts over the same rounds.
4. snapshot_rows_stored_10000: rows written for a synthetic 10 000-session snapshot
   (counts capped at MAX_COUNT_GROUPS groups by SQL, session rows at the LIMIT).

Runs against a throwaway database (poolboard_bench_snapshot_<pid>, created and dropped).
Prints `name: value` lines (make bench).
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ["DATABASE_SNAPSHOT_INTERVAL"] = "1"

import psycopg  # noqa: E402

from throwaway_db import drop_throwaway_database, use_throwaway_database  # noqa: E402

# Per process: a second run at the same time (make bench in another checkout) must not drop this one.
BENCH_DB = f"poolboard_bench_snapshot_{os.getpid()}"

PG_BIN = Path(os.getenv("PG_BIN", "/usr/lib/postgresql/15/bin"))
CONNECTIONS = int(os.getenv("BENCH_CONNECTIONS", "1000"))
ROUNDS = int(os.getenv("BENCH_ROUNDS", "31"))


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def as_postgres(cmd: list[str]) -> list[str]:
    # initdb refuses to run as root; run the throwaway cluster as the postgres user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class Cluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="poolboard-bench-"))
        self.data = self.dir / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")

    def start(self) -> None:
        subprocess.run(
            as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "bench", "--no-sync"]),
            check=True, stdout=subprocess.DEVNULL,
        )
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections={CONNECTIONS + 100}"
            " -c shared_buffers=64MB -c fsync=off"
        )
        subprocess.run(
            as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start"]),
            check=True, stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        subprocess.run(
            as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(self.dir, ignore_errors=True)

    def connect(self, app: str) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user="bench", dbname="postgres",
                               application_name=app, autocommit=True)


def open_sessions(cluster: Cluster) -> list[psycopg.Connection]:
    conns = []
    for i in range(CONNECTIONS):
        app = f"svc{i % 12}"
        conn = cluster.connect(app)
        kind = i % 10
        if kind < 6:
            conn.execute("SELECT 1")  # idle
        elif kind < 8:
            conn.autocommit = False
            conn.execute("SELECT %s", (f"secret-{i}",))  # idle in transaction
        else:
            conn.pgconn.send_query(b"SELECT pg_sleep(600), 'literal'")  # active, not awaited
        conns.append(conn)
    return conns


def bare_fetch(cluster: Cluster) -> float:
    t0 = time.perf_counter()
    conn = psycopg.connect(host="127.0.0.1", port=cluster.port, user="bench", dbname="postgres",
                           application_name="bench-bare", connect_timeout=5)
    rows = conn.execute("SELECT * FROM pg_stat_activity").fetchall()
    conn.close()
    elapsed = time.perf_counter() - t0
    assert len(rows) >= CONNECTIONS
    return elapsed


def main() -> None:
    import django

    use_throwaway_database(BENCH_DB)
    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from poolboard.databases.models import MonitoredServer, Snapshot
    from poolboard.databases.snapshots import store_snapshot
    from poolboard.lib import episodes as ep
    from poolboard.lib.budget import ServerSettings, SessionCount
    from poolboard.sources import pgactivity

    call_command("migrate", verbosity=0)
    cluster = Cluster()
    cluster.start()
    conns: list[psycopg.Connection] = []
    db = None
    try:
        conns = open_sessions(cluster)
        vacuum_tables()
        time.sleep(1.2)  # past the bench database's 1 s thresholds: episodes open and update
        db = MonitoredServer.objects.create(
            name=f"bench-{os.getpid()}", host="127.0.0.1", port=cluster.port, user="bench", dbname="postgres",
            idle_in_transaction_s=1, query_s=1, transaction_s=1,
        )
        target = db.target()
        for _ in range(2):  # warm up both paths alike (connections, query-text cache); nothing stored
            bare_fetch(cluster)
            pgactivity.snapshot(target, None, db.limits())
        bare, full, take, save = [], [], [], []

        def snapshot_and_store() -> None:
            t0 = time.perf_counter()
            snap = pgactivity.snapshot(target, None, db.limits())
            t1 = time.perf_counter()
            result = store_snapshot(db, snap)
            t2 = time.perf_counter()
            assert result.status == "ok", result
            full.append(t2 - t0)
            take.append(t1 - t0)
            save.append(t2 - t1)
            updated.append(result.updated)

        updated: list[int] = []
        for i in range(ROUNDS):
            time.sleep(1.0 - time.time() % 1.0 + 0.01)  # a new 1 s slot: every store really stores
            if i % 2:
                snapshot_and_store()
                bare.append(bare_fetch(cluster))
            else:
                bare.append(bare_fetch(cluster))
                snapshot_and_store()
        stored = Snapshot.objects.filter(server=db).count()
        median = statistics.median
        print(f"snapshot_connections: {CONNECTIONS}")
        print(f"snapshot_rounds: {ROUNDS}")
        print(f"snapshot_bare_fetch_ms: {median(bare) * 1000:.1f}")
        print(f"snapshot_store_ms: {median(full) * 1000:.1f}")
        print(f"snapshot_take_ms: {median(take) * 1000:.1f}")
        print(f"snapshot_save_ms: {median(save) * 1000:.1f}")
        print(f"snapshot_ratio: {median(full) / median(bare):.2f}")
        print(f"snapshot_snapshots_stored: {stored}")
        print(f"snapshot_episodes_updated: {median(updated):.0f}")

        # 10 000 sessions, synthetic: what SQL would hand over (capped groups, LIMITed rows).
        now = timezone.now()
        groups = pgactivity.MAX_COUNT_GROUPS
        counts = [SessionCount(f"svc{i % 40}", "app", f"10.{i // 250 % 250}.{i % 250}.1", "idle", "Client", 1)
                  for i in range(groups)]
        counts.append(SessionCount("(other)", "", "", "", "", 10_000 - groups))
        rows = [
            ep.Session(pid=100_000 + i, backend_start=now - timedelta(hours=1), xact_start=now - timedelta(seconds=900 - i),
                       query_start=now - timedelta(seconds=900 - i), state_change=now - timedelta(seconds=900 - i),
                       state="idle in transaction", application_name=f"svc{i % 40}", query="SELECT $1",
                       fingerprint=f"{i % 7:016x}")
            for i in range(pgactivity.DEFAULT_SESSION_LIMIT)
        ]
        synthetic = pgactivity.Snapshot(
            taken_at=now + timedelta(days=1), settings=ServerSettings(max_connections=20_000), counts=counts,
            total=10_000, sessions=rows, sessions_truncated_after=rows[-1].xact_start,
        )
        before = _row_counts(db)
        result = store_snapshot(db, synthetic)
        after = _row_counts(db)
        assert result.status == "ok"
        written = sum(after.values()) - sum(before.values())
        print(f"snapshot_rows_stored_10000: {written}")
    finally:
        for c in conns:
            try:
                c.close()
            except Exception:
                pass
        if db is not None:
            db.delete()
        cluster.stop()
        from django.db import connections

        connections.close_all()
        drop_throwaway_database(BENCH_DB)


def vacuum_tables() -> None:
    """Start from tables without the dead rows of earlier runs, as autovacuum would
    leave them (the development server runs with autovacuum off, and every run
    deletes what it stored)."""

    from django.db import connection

    from poolboard.databases.models import Episode, MonitoredServer, QueryFingerprint, SessionCount, Snapshot

    with connection.cursor() as cur:
        for model in (Episode, SessionCount, Snapshot, MonitoredServer, QueryFingerprint):
            cur.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(model._meta.db_table)}")


def _row_counts(db) -> dict[str, int]:
    from poolboard.databases.models import Episode, QueryFingerprint, SessionCount, Snapshot

    return {
        "snapshots": Snapshot.objects.filter(server=db).count(),
        "counts": SessionCount.objects.filter(snapshot__server=db).count(),
        "episodes": Episode.objects.filter(server=db).count(),
        "fingerprints": QueryFingerprint.objects.count(),
    }


if __name__ == "__main__":
    main()
