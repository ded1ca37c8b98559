"""Monitored databases in the inventory file (exportinventory / importinventory)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from poolboard.databases.models import AttributionRule, MonitoredServer
from poolboard.fleet.models import PrometheusSource, Service

pytestmark = pytest.mark.django_db

FILE = """\
version: 1
sources:
- name: prod
  url: http://prometheus:9090
services:
- name: billing
  source: prod
  preset: hikaricp
databases:
- name: orders-db
  host: db.internal
  dbname: orders
  sslmode: require
  password_env: ORDERS_PW
  idle_in_transaction_s: 120
  attribution:
  - {service: billing, application_name: 'billing-*'}
  - {service: billing, usename: billing_batch}
"""


def export() -> str:
    out = StringIO()
    call_command("exportinventory", stdout=out)
    return out.getvalue()


def import_text(tmp_path, text: str) -> str:
    path = tmp_path / "inventory.yml"
    path.write_text(text)
    out = StringIO()
    call_command("importinventory", str(path), stdout=out)
    return out.getvalue()


def test_it_imports_databases_with_their_attribution_rules(tmp_path) -> None:
    import_text(tmp_path, FILE)
    db = MonitoredServer.objects.get(name="orders-db")
    assert (db.host, db.dbname, db.sslmode, db.password_env, db.idle_in_transaction_s) == (
        "db.internal", "orders", "require", "ORDERS_PW", 120
    )
    rules = list(AttributionRule.objects.filter(server=db).values_list("position", "application_name", "usename"))
    assert rules == [(0, "billing-*", ""), (1, "", "billing_batch")]
    # Importing again updates in place, it does not pile up rules.
    import_text(tmp_path, FILE)
    assert AttributionRule.objects.filter(server=db).count() == 2


def test_export_wipe_import_export_is_byte_identical(tmp_path) -> None:
    import_text(tmp_path, FILE)
    first = export()
    assert "databases:" in first and "password_env: ORDERS_PW" in first
    MonitoredServer.objects.all().delete()
    Service.objects.all().delete()
    PrometheusSource.objects.all().delete()
    import_text(tmp_path, first)
    assert export() == first


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("  password: hunter2\n", "line 12: databases[0].password: give password_env or password_file, never the password itself"),
        ("  sslmode: sometimes\n", "line 12: databases[0].sslmode: Select a valid choice. sometimes is not one of the available choices."),
        ("  attribution:\n  - {service: nobody}\n", "databases[0].attribution[0].service: no service named 'nobody'"),
        ("  attribution:\n  - {service: billing, client_addr: not-a-cidr}\n",
         "line 13: databases[0].attribution[0]: not an IP network: 'not-a-cidr' (expected e.g. 10.0.0.0/8)"),
        ("  enabled: 'yes'\n  port: 0\n",
         "line 12: databases[0].enabled: must be true or false, not 'yes'\n"
         "line 13: databases[0].port: Ensure this value is greater than or equal to 1."),
        ("  attribution:\n  - {service: billing, colour: red}\n",
         "line 13: databases[0].attribution[0].colour: unknown field (known: service, application_name, usename, client_addr)"),
    ],
)
def test_bad_entries_name_the_line_and_field_and_change_nothing(tmp_path, entry: str, message: str) -> None:
    text = FILE.split("databases:")[0] + "databases:\n- name: bad-db\n  host: h\n" + entry
    with pytest.raises(CommandError) as info:
        import_text(tmp_path, text)
    assert message in str(info.value)
    assert not MonitoredServer.objects.exists() and not Service.objects.exists()
