from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from poolboard.databases.inventory import InventoryError, apply_databases
from poolboard.databases.models import AttributionRule, MonitoredDatabase

pytestmark = pytest.mark.django_db


def test_inventory_creates_then_updates(make_service, tmp_path, capsys):
    make_service("billing")
    path = tmp_path / "inv.yml"
    path.write_text(
        "databases:\n"
        "  - name: orders-db\n    host: db.internal\n    dbname: orders\n    password_env: ORDERS_PW\n"
        "    idle_in_transaction_s: 120\n"
        "    attribution:\n      - {service: billing, application_name: 'billing-*'}\n"
    )
    call_command("importdatabases", str(path))
    assert "orders-db: created" in capsys.readouterr().out
    db = MonitoredDatabase.objects.get(name="orders-db")
    assert db.idle_in_transaction_s == 120 and db.password_env == "ORDERS_PW"
    assert AttributionRule.objects.get(database=db).application_name == "billing-*"
    call_command("importdatabases", str(path))
    assert "orders-db: updated" in capsys.readouterr().out
    assert AttributionRule.objects.count() == 1


def test_inventory_refuses_literal_passwords_and_bad_fields(db):
    with pytest.raises(InventoryError, match="never the password itself"):
        apply_databases([{"name": "x", "host": "h", "password": "hunter2"}])
    with pytest.raises(InventoryError, match="unknown field"):
        apply_databases([{"name": "x", "host": "h", "colour": "red"}])
    with pytest.raises(InventoryError, match="password_env"):
        apply_databases([{"name": "x", "host": "h", "password_env": "not a name!"}])
    assert not MonitoredDatabase.objects.exists()


def test_importdatabases_reports_bad_yaml(tmp_path, db):
    path = tmp_path / "bad.yml"
    path.write_text("databases: [\n")
    with pytest.raises(CommandError, match="not valid YAML"):
        call_command("importdatabases", str(path))
