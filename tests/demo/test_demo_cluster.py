"""The demo fleet's own PostgreSQL cluster (poolboard.demo.database.fleet_cluster): started with
pg_stat_statements, reused by the next run even when the last one was killed, and a folder the
cluster cannot use is a clear error."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from poolboard.demo.database import DEMO_DBNAME, fleet_cluster, parse_database_url, prepare_database
from poolboard.pgcluster import ClusterError, free_port

pytestmark = pytest.mark.demo


@pytest.fixture
def var_dir():
    path = Path(tempfile.mkdtemp(prefix="poolboard-demo-pg-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_it_runs_the_fleet_database_with_pg_stat_statements_and_reuses_it(var_dir):
    port = free_port()
    cluster = fleet_cluster(var_dir / "pg", port)
    try:
        url = cluster.url(DEMO_DBNAME)
        prepare_database(parse_database_url(url))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT count(*) FROM orders WHERE customer_id = %s", (7,))
            seen = conn.execute(
                "SELECT calls FROM pg_stat_statements WHERE query = 'SELECT count(*) FROM orders WHERE customer_id = $1'"
            ).fetchone()
            query_id_on = conn.execute("SHOW compute_query_id").fetchone()[0]
        assert seen == (1,) and query_id_on == "on"
        # A demo killed without stopping its cluster: the next run stops the leftover server and starts again.
        again = fleet_cluster(var_dir / "pg", port)
        with psycopg.connect(again.url(DEMO_DBNAME)) as conn:
            assert conn.execute("SELECT count(*) FROM orders").fetchone() == (5000,)  # the same data directory
    finally:
        cluster.stop()
    assert not (var_dir / "pg" / "data" / "postmaster.pid").exists()
    assert (var_dir / "pg" / "data" / "PG_VERSION").exists()  # kept for the next run


@pytest.mark.skipif(os.geteuid() != 0, reason="as root the cluster runs as the postgres user, who cannot enter 0700 folders")
def test_it_says_why_the_cluster_did_not_start(tmp_path):
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(ClusterError, match="the postgres user cannot enter .*closed"):
        fleet_cluster(closed / "pg", free_port())
