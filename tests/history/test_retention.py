"""Raw retention: daily partitions older than RAW_RETENTION are dropped, nothing newer changes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from django.db import connection

from poolboard.fleet.partitions import RAW_TABLE, ensure_partitions, existing_partitions
from poolboard.fleet.tasks import maintain_partitions
from poolboard.lib.partitions import partition_day
from tests.fleet.factories import write_samples

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=timezone.utc)


def counts() -> dict[str, int]:
    out = {}
    with connection.cursor() as cursor:
        for name in existing_partitions():
            cursor.execute(f'SELECT count(*) FROM "{name}"')
            out[name] = cursor.fetchone()[0]
    return out


def test_it_drops_partitions_older_than_the_cutoff_and_keeps_newer_rows(make_service, settings) -> None:
    settings.RAW_RETENTION_DAYS = 14
    pool = make_service(instances=1).pools.get()
    for days_back in range(0, 20, 3):
        ensure_partitions(NOW - timedelta(days=days_back))
    rows = []
    for days_back in range(0, 20):
        day = (NOW - timedelta(days=days_back)).replace(hour=0, minute=0).timestamp()
        rows += [(pool.id, day + 3600 * h, {"in_use": float(h)}) for h in range(0, 24, 4)]
    write_samples(rows)
    before = counts()
    cutoff = (NOW - timedelta(days=14)).date()
    assert any(partition_day(RAW_TABLE, n) and partition_day(RAW_TABLE, n) < cutoff for n in before)

    with time_machine.travel(NOW, tick=False):
        result = maintain_partitions.run()

    after = counts()
    days = {name: partition_day(RAW_TABLE, name) for name in after}
    # Every day ending at or before now - 14 days is gone ...
    assert not [name for name, day in days.items() if day and day + timedelta(days=1) <= cutoff]
    assert set(result["dropped"]) == {n for n in before if n not in after}
    assert result["dropped"]
    # ... and every partition still there has exactly the rows it had.
    assert {name: before[name] for name in after if name in before} == {name: after[name] for name in after if name in before}
    assert after[f"{RAW_TABLE}_p{NOW:%Y%m%d}"] == 6
