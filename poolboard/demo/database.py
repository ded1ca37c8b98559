"""The demo fleet's database: created if missing, with a small `orders` table so the queries are real.

`make demo` runs it on a PostgreSQL cluster of the demo's own (fleet_cluster: initdb under
var/demo/, pg_stat_statements preloaded), so the slow-queries pages have statement statistics
to show without touching the machine's server; `DEMO_DATABASE_URL` points it elsewhere.
"""

from __future__ import annotations

import os

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL

from poolboard import dburl
from poolboard.pgcluster import PgCluster

DEFAULT_DATABASE_URL = "postgresql://root@127.0.0.1:5432/poolboard_demo"
DEMO_DBNAME = "poolboard_demo"
# The demo cluster's port unless DEMO_PG_PORT says otherwise: fixed, so the demo's monitored
# server keeps its address across runs.
DEFAULT_CLUSTER_PORT = 5439
SETUP_APPLICATION_NAME = "poolboard-demo-setup"
ORDER_ROWS = 5000
CUSTOMERS = 500

_CREATE_ORDERS = """
CREATE TABLE IF NOT EXISTS orders (
    id bigint PRIMARY KEY,
    customer_id integer NOT NULL,
    amount_cents integer NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL
)
"""
_CREATE_ORDERS_INDEX = "CREATE INDEX IF NOT EXISTS orders_customer_created ON orders (customer_id, created_at)"
# Deterministic rows (no random()) so that a re-run inserts nothing and every run sees the same data.
_SEED_ORDERS = """
INSERT INTO orders (id, customer_id, amount_cents, status, created_at)
SELECT n,
       1 + (n * 7919) % {customers},
       100 + (n * 104729) % 50000,
       (ARRAY['pending', 'paid', 'shipped', 'refunded'])[1 + n % 4],
       timestamptz '2025-01-01 00:00+00' + n * interval '17 minutes'
FROM generate_series(1, {rows}) AS n
ON CONFLICT (id) DO NOTHING
"""


def default_database_url() -> str:
    return os.environ.get("DEMO_DATABASE_URL") or DEFAULT_DATABASE_URL


def fleet_cluster(directory, port: int | None = None) -> PgCluster:
    """The demo's own cluster, started: its data directory is kept and reused by the next run.

    A server left running by a demo that was killed (its postmaster.pid still there) is stopped
    first, so this run starts it with this run's settings and port.
    """
    cluster = PgCluster(statements=True, directory=directory, keep=True,
                        port=port or int(os.environ.get("DEMO_PG_PORT") or DEFAULT_CLUSTER_PORT))
    if (cluster.data / "postmaster.pid").exists():
        cluster.stop()
    return cluster.start()


def parse_database_url(database_url: str) -> URL:
    """Accept postgresql:// or postgresql+driver:// URLs (poolboard.dburl); the database name is required."""
    try:
        params = dburl.parse(database_url)
    except dburl.DatabaseUrlError as exc:
        raise ValueError(f"the database URL {exc}") from None
    if not params.get("dbname"):
        raise ValueError("the database URL names no database")
    named = {"user", "password", "host", "port", "dbname"}
    return URL.create(
        "postgresql",
        username=params.get("user"),
        password=params.get("password"),
        host=params.get("host"),
        port=int(params["port"]) if params.get("port") else None,
        database=params["dbname"],
        query={key: value for key, value in params.items() if key not in named},
    )


def libpq_conninfo(url: URL) -> str:
    """The URL as libpq understands it (no SQLAlchemy driver suffix)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def sqlalchemy_url(url: URL) -> URL:
    return url.set(drivername="postgresql+psycopg")


def prepare_database(url: URL) -> None:
    """Create the database if it is missing, then the `orders` table and its rows if missing."""
    server = libpq_conninfo(url.set(database="postgres"))
    with psycopg.connect(server, autocommit=True, application_name=SETUP_APPLICATION_NAME, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(url.database)))
            except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                pass  # another demo process created it between our check and our CREATE
    with psycopg.connect(libpq_conninfo(url), application_name=SETUP_APPLICATION_NAME, connect_timeout=5) as conn:
        # Statement statistics for the slow-queries pages, where the server preloads the module
        # (the demo's cluster does; on another server CREATE EXTENSION would work but the view
        # could not be read, so it is left alone).
        preloaded = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()[0]
        if "pg_stat_statements" in preloaded:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute(_CREATE_ORDERS)
        conn.execute(_CREATE_ORDERS_INDEX)
        conn.execute(_SEED_ORDERS.format(customers=CUSTOMERS, rows=ORDER_ROWS))
