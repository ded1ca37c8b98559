"""A PostgreSQL cluster of poolboard's own: initdb, start, stop. For tests, benchmarks and the demo.

The machine's own server is never touched or restarted: a cluster here has its own data
directory, its own port and its own unix-socket directory (inside the cluster directory),
so settings that need a restart (shared_preload_libraries=pg_stat_statements,
max_connections) are simply given at start.

    with PgCluster(statements=True) as cluster:         # initdb in a temporary directory
        url = cluster.url("postgres")                   # postgresql://root@127.0.0.1:PORT/postgres
        with cluster.connect(application_name="x") as conn: ...
    # stopped (-m immediate) and deleted

    PgCluster(directory="var/demo/pg", keep=True)       # the demo: reused across runs, kept

initdb refuses to run as root, so when this process is root the cluster runs as the
`postgres` user (runuser); the superuser *inside* the cluster is `superuser` (default
"root", so URLs look like the machine's) with trust authentication on 127.0.0.1 only.
Durability is traded for speed (--no-sync, fsync=off): nothing here is kept for real.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
RUN_AS = "postgres"


class ClusterError(Exception):
    """initdb or pg_ctl failed; the message carries the tail of the server log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_cluster_owner(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", RUN_AS, "--", *cmd]
    return cmd


class PgCluster:
    """One cluster. `statements=True` preloads pg_stat_statements with compute_query_id=on
    (pg_stat_activity.query_id is then the same id as pg_stat_statements.queryid);
    `track_all=True` also counts statements nested in functions (pg_stat_statements.track=all)."""

    def __init__(
        self,
        *,
        statements: bool = False,
        track_all: bool = False,
        statements_max: int | None = None,
        max_connections: int = 100,
        superuser: str = "root",
        port: int | None = None,
        directory: str | Path | None = None,
        keep: bool | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.statements = statements
        self.track_all = track_all
        self.statements_max = statements_max
        self.max_connections = max_connections
        self.superuser = superuser
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.extra_settings = dict(settings or {})
        if directory is None:
            self.dir = Path(tempfile.mkdtemp(prefix="poolboard-pg-"))
            self.keep = bool(keep)
        else:
            self.dir = Path(directory).resolve()
            self.dir.mkdir(parents=True, exist_ok=True)
            self.keep = True if keep is None else keep
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.running = False

    # --- settings ------------------------------------------------------------------

    def settings(self) -> dict[str, str]:
        values = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.dir),
            "max_connections": str(self.max_connections),
            "shared_buffers": "64MB",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        if self.statements:
            values["shared_preload_libraries"] = "pg_stat_statements"
            values["compute_query_id"] = "on"
            if self.track_all:
                values["pg_stat_statements.track"] = "all"
            if self.statements_max:
                values["pg_stat_statements.max"] = str(int(self.statements_max))
        values.update(self.extra_settings)
        return values

    # --- lifecycle -----------------------------------------------------------------

    def _run(self, cmd: list[str], what: str) -> None:
        done = subprocess.run(_as_cluster_owner(cmd), capture_output=True, text=True)
        if done.returncode:
            raise ClusterError(f"{what} failed ({done.returncode}): {done.stderr.strip()[-800:]}\n{self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self) -> PgCluster:
        if os.geteuid() == 0:
            shutil.chown(self.dir, RUN_AS, RUN_AS)
            if subprocess.run(_as_cluster_owner(["test", "-w", str(self.dir)])).returncode:
                raise ClusterError(
                    f"the {RUN_AS} user cannot enter {self.dir}: make every directory above it searchable"
                    f" (chmod o+x), or give a directory elsewhere"
                )
        if not (self.data / "PG_VERSION").exists():
            self._run(
                [str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.superuser,
                 "--no-sync", "-E", "UTF8", "--locale", "C"],
                "initdb",
            )
        # Settings go on the command line (`-c`), not into postgresql.conf: a reused directory
        # (the demo's) starts with this run's settings, whatever an earlier run used.
        options = " ".join(f"-c {name}={value}" for name, value in self.settings().items())
        self._run(
            [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "60", "start"],
            "pg_ctl start",
        )
        self.running = True
        if self.statements:
            # In the maintenance database, so a first connection can read the view at once;
            # databases created later copy template1, which gets it too.
            for dbname in ("postgres", "template1"):
                with self.connect(dbname) as conn:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        return self

    def stop(self) -> None:
        if self.running or (self.data / "postmaster.pid").exists():
            subprocess.run(
                # A throwaway cluster is simply killed; a kept one (the demo's) shuts down cleanly, or
                # its last commits (synchronous_commit off) would be lost.
                _as_cluster_owner([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast" if self.keep else "immediate",
                                   "-w", "stop"]),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        self.running = False
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- use -------------------------------------------------------------------------

    def url(self, dbname: str = "postgres", user: str | None = None) -> str:
        return f"postgresql://{user or self.superuser}@{self.host}:{self.port}/{dbname}"

    def connect(
        self, dbname: str = "postgres", *, user: str | None = None, application_name: str = "poolboard-pgcluster",
        autocommit: bool = True,
    ) -> psycopg.Connection:
        return psycopg.connect(
            host=self.host, port=self.port, user=user or self.superuser, dbname=dbname,
            application_name=application_name, autocommit=autocommit, connect_timeout=5,
        )

    def create_database(self, name: str, *, drop: bool = True) -> str:
        with self.connect() as conn:
            if drop:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
