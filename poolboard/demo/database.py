"""The demo database: created if missing, with a small `orders` table so the queries are real."""

from __future__ import annotations

import os

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL

from poolboard import dburl

DEFAULT_DATABASE_URL = "postgresql://root@127.0.0.1:5432/poolboard_demo"
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
        conn.execute(_CREATE_ORDERS)
        conn.execute(_CREATE_ORDERS_INDEX)
        conn.execute(_SEED_ORDERS.format(customers=CUSTOMERS, rows=ORDER_ROWS))
