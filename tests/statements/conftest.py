"""Fixtures of the statement-statistics tests (the cluster itself is tests/conftest.py's pg_cluster)."""

from __future__ import annotations

import pytest


@pytest.fixture
def cluster_db(pg_cluster, request):
    """A database of this test's own on the cluster: pg_stat_statements keys entries by database
    too, so one test's statements never mix with another's. Dropped afterwards."""
    name = "t_" + request.node.name.removeprefix("test_it_")[:40].replace("[", "_").replace("]", "").replace("-", "_")
    pg_cluster.create_database(name)
    yield name
    pg_cluster.drop_database(name)
