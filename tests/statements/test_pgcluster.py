"""poolboard.pgcluster: a cluster of poolboard's own, next to (never instead of) the machine's server."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from poolboard.pgcluster import ClusterError, PgCluster


def test_it_keeps_a_given_directory_and_starts_it_again_with_new_settings() -> None:
    parent = Path(tempfile.mkdtemp(prefix="pb-pgcluster-test-"))
    parent.chmod(0o755)  # the cluster runs as the postgres user, which must be able to enter it
    try:
        with PgCluster(directory=parent / "pg") as first:
            with first.connect() as conn:
                conn.execute("CREATE TABLE kept (x int)")
                assert conn.execute("SHOW shared_preload_libraries").fetchone()[0] == ""
        assert (parent / "pg" / "data" / "PG_VERSION").exists()  # kept: the demo's cluster survives a restart
        with PgCluster(directory=parent / "pg", statements=True, track_all=True, max_connections=42) as second:
            with second.connect() as conn:
                assert conn.execute("SELECT count(*) FROM kept").fetchone()[0] == 0
                settings = dict(conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN ('shared_preload_libraries',"
                    " 'compute_query_id', 'pg_stat_statements.track', 'max_connections')"
                ).fetchall())
                assert conn.execute("SELECT current_user").fetchone()[0] == "root"
        assert settings == {"shared_preload_libraries": "pg_stat_statements", "compute_query_id": "on",
                            "pg_stat_statements.track": "all", "max_connections": "42"}
        assert not (parent / "pg" / "data" / "postmaster.pid").exists()  # stopped
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_it_says_when_the_postgres_user_cannot_enter_the_directory() -> None:
    parent = Path(tempfile.mkdtemp(prefix="pb-pgcluster-test-"))  # 0700, root's
    try:
        if os.geteuid() != 0:
            pytest.skip("only root hands the cluster to the postgres user")
        with pytest.raises(ClusterError, match=r"the postgres user cannot enter .*chmod o\+x"):
            PgCluster(directory=parent / "pg").start()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_it_says_why_it_could_not_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cluster = PgCluster(port=taken.getsockname()[1])
        try:
            with pytest.raises(ClusterError, match="pg_ctl start failed") as raised:
                cluster.start()
            assert "could not" in str(raised.value)  # the server log's own words
        finally:
            cluster.stop()
    assert not cluster.dir.exists()
