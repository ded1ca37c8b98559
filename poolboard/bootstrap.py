"""Create poolboard's own database when it is missing (run before `migrate`).

Usage: python -m poolboard.bootstrap
"""

from __future__ import annotations

import os
import sys

import psycopg
from psycopg import sql

from poolboard import dburl


def ensure_database(url: str) -> bool:
    """Create the database named in `url` if it does not exist. True when created."""
    info = dburl.parse(url)
    name = info.get("dbname")
    if not name:
        raise SystemExit("DATABASE_URL has no database name")
    admin = dict(info, dbname="postgres", application_name="poolboard-bootstrap", connect_timeout=5)
    with psycopg.connect(**admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def main() -> None:
    url = os.getenv("DATABASE_URL", "postgresql://root@127.0.0.1:5432/poolboard")
    try:
        created = ensure_database(url)
    except dburl.DatabaseUrlError as exc:
        print(f"DATABASE_URL {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except psycopg.OperationalError as exc:
        # The message names the host and port, never the password.
        print(f"cannot reach PostgreSQL for DATABASE_URL: {str(exc).splitlines()[0]}", file=sys.stderr)
        raise SystemExit(1) from None
    print("database created" if created else "database exists")


if __name__ == "__main__":
    main()
