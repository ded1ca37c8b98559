"""`manage.py checkdatabase` says whether pg_stat_statements is usable and how to enable it;
the status it finds is stored for the server page (StatementsStatus)."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from poolboard.databases.models import MonitoredServer
from poolboard.statements.models import StatementsStatus


@pytest.fixture
def on_cluster(db, pg_cluster, cluster_db):
    return MonitoredServer.objects.create(
        name="cluster", host=pg_cluster.host, port=pg_cluster.port, dbname=cluster_db, user="root"
    )


def test_it_reports_pg_stat_statements_ok(on_cluster, capsys) -> None:
    call_command("checkdatabase", "cluster")
    out, err = capsys.readouterr()
    assert "OK, PostgreSQL" in out
    assert "pg_stat_statements: OK, version 1." in out and "track top" in out
    assert "pg_stat_statements" not in err
    assert StatementsStatus.objects.get(server=on_cluster).state == "ok"


def test_it_says_how_to_create_the_extension(on_cluster, pg_cluster, cluster_db, capsys) -> None:
    with pg_cluster.connect(cluster_db) as conn:
        conn.execute("DROP EXTENSION pg_stat_statements")
    call_command("checkdatabase", "cluster")
    out, err = capsys.readouterr()
    assert "OK, PostgreSQL" in out  # the rest of the check is unaffected
    assert f"pg_stat_statements: not installed: pg_stat_statements is loaded but not installed in database {cluster_db}" in err
    assert "CREATE EXTENSION pg_stat_statements;" in err
    status = StatementsStatus.objects.get(server=on_cluster)
    assert status.state == "not_installed" and status.message in err


def test_it_says_how_to_preload_it(monitored, capsys) -> None:
    # The machine's own server does not preload pg_stat_statements.
    call_command("checkdatabase", "orders-db")
    out, err = capsys.readouterr()
    assert "OK, PostgreSQL" in out
    assert "pg_stat_statements: not preloaded:" in err
    assert "shared_preload_libraries = 'pg_stat_statements'" in err and "restart PostgreSQL" in err
