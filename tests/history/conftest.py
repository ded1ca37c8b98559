"""Fixtures for history tests: services with pools, raw samples written with COPY."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from django.db import connection

from poolboard.lib.pools import FIELDS

COPY_SQL = "COPY fleet_poolsample (pool_id, ts, {}) FROM STDIN".format(", ".join(FIELDS))


def write_samples(rows) -> int:
    """rows: (pool_id, epoch seconds, {field: value}) → raw samples (absent fields NULL)."""
    count = 0
    with connection.cursor() as cursor:
        with cursor.cursor.copy(COPY_SQL) as copy:
            for pool_id, ts, values in rows:
                copy.write_row((pool_id, datetime.fromtimestamp(ts, tz=timezone.utc), *(values.get(f) for f in FIELDS)))
                count += 1
    return count


@pytest.fixture
def make_service(make_source):
    from poolboard.fleet.models import Pool, Service

    sources = {}

    def make(name: str = "orders", preset: str = "db_pool", pools=(("10.0.0.1:8080", "main"),)):
        if "main" not in sources:
            sources["main"] = make_source()
        service = Service.objects.create(name=name, source=sources["main"], preset=preset)
        for instance, pool_name in pools:
            Pool.objects.create(service=service, instance=instance, name=pool_name)
        return service

    return make
