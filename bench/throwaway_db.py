"""A throwaway database for one benchmark: Django is pointed at it before django.setup().

    from throwaway_db import use_throwaway_database, drop_throwaway_database
    use_throwaway_database("poolboard_bench_x")   # before importing django models
    ...
    drop_throwaway_database("poolboard_bench_x")  # unless BENCH_KEEP_DB=1
"""

from __future__ import annotations

import os

import psycopg

from poolboard import dburl

BASE_URL = os.environ.get("DATABASE_URL", "postgresql://root@127.0.0.1:5432/poolboard")


def admin_dsn() -> str:
    return dburl.with_dbname(BASE_URL, "postgres")


def use_throwaway_database(name: str) -> None:
    """(Re)create database `name` and make it poolboard's database for this process."""
    os.environ["DATABASE_URL"] = dburl.with_dbname(BASE_URL, name)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "poolboard.settings")
    os.environ["POOLBOARD_PROCESS"] = "bench"
    os.environ["LOG_LEVEL"] = "WARNING"
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_throwaway_database(name: str) -> None:
    if os.environ.get("BENCH_KEEP_DB") == "1":
        return
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_then_drop(main, name: str) -> None:
    """Run a benchmark's main(), then close Django's connection and drop its database."""
    from django.db import connection

    try:
        main()
    finally:
        connection.close()
        drop_throwaway_database(name)
