from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from poolboard.databases.models import AttributionRule, MonitoredServer

pytestmark = pytest.mark.django_db


def test_checkdatabase_reports_version_privileges_and_max_connections(monitored, capsys):
    call_command("checkdatabase", "orders-db")
    out, err = capsys.readouterr()
    assert "OK, PostgreSQL" in out and "max_connections" in out and "query text visible" in out
    assert "superuser" in err  # the test role is a superuser: warn that pg_monitor is enough


def test_checkdatabase_unknown_name_and_unreachable(db, monkeypatch):
    with pytest.raises(CommandError, match="no monitored server named 'x'"):
        call_command("checkdatabase", "x")
    monkeypatch.setenv("PB_ADMIN_SECRET", "Adm1n-Secret")
    MonitoredServer.objects.create(name="down", host="127.0.0.1", port=1, password_env="PB_ADMIN_SECRET")
    with pytest.raises(CommandError) as e:
        call_command("checkdatabase", "down")
    assert "unreachable" in str(e.value) and "Adm1n-Secret" not in str(e.value)


def test_admin_check_connection_action(client, bob, monitored):
    client.force_login(bob)
    r = client.post(
        "/admin/databases/monitoredserver/",
        {"action": "check_connection", "_selected_action": [monitored.pk]},
        follow=True,
    )
    html = r.content.decode()
    assert "reachable, PostgreSQL" in html and "max_connections" in html


def test_admin_form_never_shows_a_password_field(client, bob, monitored):
    client.force_login(bob)
    html = client.get(f"/admin/databases/monitoredserver/{monitored.pk}/change/").content.decode()
    assert 'type="password"' not in html
    assert "password_env" in html and "never stored" in html


def test_admin_rejects_a_secret_pasted_as_env_name(client, bob):
    client.force_login(bob)
    r = client.post("/admin/databases/monitoredserver/add/", {
        "name": "x", "host": "h", "port": 5432, "dbname": "d", "user": "u", "sslmode": "prefer",
        "password_env": "p@ss w0rd!", "idle_in_transaction_s": 60, "query_s": 30, "transaction_s": 300,
    })
    assert r.status_code == 200 and "not the secret itself" in r.content.decode()
    assert not MonitoredServer.objects.exists()


def test_attribution_rule_validates_cidr(make_service):
    from django.core.exceptions import ValidationError

    svc = make_service("svc")
    rule = AttributionRule(service=svc, client_addr="10.0.0.0/99")
    with pytest.raises(ValidationError, match="not an IP network"):
        rule.full_clean()
    AttributionRule(service=svc, application_name="svc-*").full_clean()


def test_admin_rule_list(client, bob, make_service):
    client.force_login(bob)
    AttributionRule.objects.create(service=make_service("svc"), application_name="svc-*")
    html = client.get("/admin/databases/attributionrule/").content.decode()
    assert "1 attribution rule" in html and "svc-*" in html


def test_admin_lists_the_databases_seen_on_a_server(client, bob, monitored):
    from django.utils import timezone

    from poolboard.databases.models import ServerDatabase

    now = timezone.now()
    ServerDatabase.objects.create(server=monitored, datname="orders_reporting", first_seen=now, last_seen=now)
    client.force_login(bob)
    html = client.get(f"/admin/databases/monitoredserver/{monitored.pk}/change/").content.decode()
    assert "orders_reporting" in html and "Server databases" in html
    r = client.post(f"/admin/databases/monitoredserver/{monitored.pk}/change/", {})
    assert r.status_code == 200  # an empty post is refused with the form, not a crash


def test_admin_adds_a_server_and_refuses_a_second_row_for_it(client, bob):
    client.force_login(bob)
    form = {
        "name": "orders", "host": "db.internal", "port": 5432, "dbname": "orders", "user": "u", "sslmode": "prefer",
        "idle_in_transaction_s": 60, "query_s": 30, "transaction_s": 300,
        "databases-TOTAL_FORMS": 0, "databases-INITIAL_FORMS": 0,
    }
    r = client.post("/admin/databases/monitoredserver/add/", form)
    assert r.status_code == 302 and MonitoredServer.objects.filter(name="orders").exists()
    r = client.post("/admin/databases/monitoredserver/add/", {**form, "name": "billing", "dbname": "billing"})
    assert r.status_code == 200 and "already exists" in r.content.decode()
    assert MonitoredServer.objects.count() == 1
