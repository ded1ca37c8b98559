from __future__ import annotations

import pytest
from django.db import connection


@pytest.fixture
def empty_raw_samples():
    # The partitioned raw-sample table is unmanaged, so Django's flush between
    # transactional tests does not empty it.
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE fleet_poolsample")
