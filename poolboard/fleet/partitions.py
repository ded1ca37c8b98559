"""Create and drop daily partitions of fleet_poolsample (DDL glue around lib.partitions)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from django.conf import settings
from django.db import connection, transaction
from psycopg import sql

from poolboard.lib.partitions import expired, partitions_around

RAW_TABLE = "fleet_poolsample"


def existing_partitions(table: str = RAW_TABLE) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT child.relname FROM pg_inherits
            JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
            JOIN pg_class child ON child.oid = pg_inherits.inhrelid
            WHERE parent.relname = %s
            """,
            [table],
        )
        return [row[0] for row in cursor.fetchall()]


def ensure_partitions(now: datetime, table: str = RAW_TABLE) -> list[str]:
    """Create yesterday's to the day after tomorrow's partitions if missing (idempotent)."""
    present = set(existing_partitions(table))
    created = []
    for part in partitions_around(table, now):
        if part.name in present:
            continue
        statement = sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier(part.name), sql.Identifier(table), sql.Literal(part.start), sql.Literal(part.end)
        )
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement.as_string(cursor.connection))
        created.append(part.name)
    return created


# The UTC day this process last ensured partitions for. Collection calls
# ensure_partitions_today() on every tick; only the first tick of a day reads the catalog.
_ensured_day: dict[str, object] = {}


def ensure_partitions_today(now: datetime, table: str = RAW_TABLE) -> None:
    day = now.astimezone(timezone.utc).date()
    if _ensured_day.get(table) != day:
        ensure_partitions(now, table)
        # Remembered once committed: partitions made inside a transaction that rolls back
        # are gone, and a day remembered anyway would send that day's rows to the default
        # partition, where they later block creating the day's own partition.
        transaction.on_commit(lambda: _ensured_day.__setitem__(table, day))


def drop_expired_partitions(now: datetime, table: str = RAW_TABLE) -> list[str]:
    """Drop whole partitions older than RAW_RETENTION_DAYS: no bulk DELETE, no VACUUM debt."""
    cutoff = now - timedelta(days=settings.RAW_RETENTION_DAYS)
    dropped = []
    for name in expired(table, existing_partitions(table), cutoff):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)).as_string(cursor.connection))
        dropped.append(name)
    return dropped
