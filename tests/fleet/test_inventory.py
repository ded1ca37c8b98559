"""Inventory as code: export → wipe → import → export is byte-identical; bad files change nothing."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from poolboard.alerts.models import AlertRule
from poolboard.fleet.models import CustomPreset, Pool, PrometheusSource, Service
from poolboard.inventory.registry import import_inventory
from poolboard.lib.inventory import InventoryError

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet():
    main = PrometheusSource.objects.create(
        name="main", url="http://prometheus:9090", presets=["hikaricp", "acme"], rate_window="2m", timeout_s=4.5,
        bearer_token_env="PROM_TOKEN", service_label="service",
    )
    PrometheusSource.objects.create(name="edge", url="http://10.0.0.9:9090", enabled=False)
    CustomPreset.objects.create(
        name="acme", title="ACME pool", source=main, marker="acme_pool_busy", service_label="app", pool_label="pool",
        notes='in-house; "quoted"\nsecond line',
        in_use_query="sum by ($by) (acme_pool_busy{$sel})",
        max_query='sum by ($by) (acme_pool_limit{kind="hard",$sel})',
    )
    svc = Service.objects.create(name="checkout", source=main, preset="hikaricp", workers_per_instance=4)
    Pool.objects.create(service=svc, instance="10.0.0.1:8080", name="HikariPool-1")
    Service.objects.create(name='odd "name"\\with: yaml', source=main, preset="acme")


def export() -> str:
    out = StringIO()
    call_command("exportinventory", stdout=out)
    return out.getvalue()


def wipe() -> None:
    Pool.objects.all().delete()
    Service.objects.all().delete()
    CustomPreset.objects.all().delete()
    PrometheusSource.objects.all().delete()
    AlertRule.objects.all().delete()  # the default rules (a migration ships them) are in the export too


def test_export_wipe_import_export_is_byte_identical(fleet, tmp_path) -> None:
    first = export()
    path = tmp_path / "inventory.yaml"
    path.write_text(first)
    # The default rules come from a migration, so how many exist depends on earlier tests' flushes.
    rules = AlertRule.objects.count()
    wipe()

    out = StringIO()
    call_command("importinventory", str(path), stdout=out)

    assert out.getvalue().splitlines() == [
        "sources: 2 created, 0 updated", "presets: 1 created, 0 updated", "services: 2 created, 0 updated",
        "databases: 0 created, 0 updated", f"alert_rules: {rules} created, 0 updated",
    ]
    assert export() == first
    assert "sources:\n- name: edge\n" in first and "workers_per_instance: 4" in first
    assert CustomPreset.objects.get().queries()["max"] == 'sum by ($by) (acme_pool_limit{kind="hard",$sel})'


def test_export_to_a_file(fleet, tmp_path) -> None:
    path = tmp_path / "out.yaml"
    call_command("exportinventory", "--output", str(path), stderr=StringIO())
    assert path.read_text() == export()


def test_import_updates_by_name_and_deletes_nothing(fleet) -> None:
    text = "services:\n- name: checkout\n  source: edge\n  preset: hikaricp\n  workers_per_instance: 8\n"
    unchanged = {"created": 0, "updated": 0}
    assert import_inventory(text) == {
        "sources": unchanged, "presets": unchanged, "services": {"created": 0, "updated": 1}, "databases": unchanged,
        "alert_rules": unchanged,
    }
    checkout = Service.objects.get(name="checkout")
    assert (checkout.source.name, checkout.workers_per_instance) == ("edge", 8)
    assert Service.objects.count() == 2 and Pool.objects.count() == 1


BAD = """\
version: 1
sources:
- name: new
  url: not a url
  rate_window: 5 minutes
  presets: [hikaricp, nosuch]
presets:
- name: hikaricp
  source: main
  marker: acme_pool_busy
  queries:
    in_use: sum by ($by) (acme_pool_busy{$selector})
    inuse: up
    created: up
services:
- name: billing
  source: nowhere
  preset: acme
  workers_per_instance: 0
- name: payments
  source: new
  preset: nosuch
"""


def test_a_bad_file_names_every_line_and_field_and_changes_nothing(fleet) -> None:
    before = export()
    with pytest.raises(CommandError) as caught:
        _import_text(BAD)
    assert str(caught.value).splitlines() == [
        "-: nothing was imported:",
        "line 4: sources[0].url: Enter a base URL such as http://prometheus:9090 (http or https, no query).",
        "line 5: sources[0].rate_window: '5 minutes' is not a PromQL duration (e.g. 30s, 5m, 1h)",
        "line 6: sources[0].presets[1]: unknown preset 'nosuch'",
        "line 8: presets[0].name: hikaricp is a built-in preset; choose another name.",
        "line 12: presets[0].queries.in_use: unknown placeholder $selector in template 'sum by ($by) (acme_pool_busy{$selector})'",
        "line 13: presets[0].queries.inuse: not a canonical field (known: max, min, in_use, idle, pending, overflow,"
        " timeouts, acquisitions, acquire_s, hold_s, conns_opened, conns_closed)",
        # an inventory written before the rename says what the field is called now
        "line 14: presets[0].queries.created: renamed conns_opened",
        # every problem of an entry, not only the first
        "line 17: services[0].source: no Prometheus source named 'nowhere'",
        "line 19: services[0].workers_per_instance: Ensure this value is greater than or equal to 1.",
        # the source "new" was refused above, so it cannot be referenced either
        "line 21: services[1].source: no Prometheus source named 'new'",
        "line 22: services[1].preset: unknown preset 'nosuch'",
    ]
    assert export() == before


def _import_text(text: str) -> None:
    import sys

    old = sys.stdin
    sys.stdin = StringIO(text)
    try:
        call_command("importinventory", "-", stdout=StringIO())
    finally:
        sys.stdin = old


def test_a_reference_to_a_missing_source_is_named(fleet) -> None:
    with pytest.raises(InventoryError) as caught:
        import_inventory("services:\n- name: billing\n  source: nowhere\n  preset: hikaricp\n")
    assert [str(p) for p in caught.value.problems] == ["line 3: services[0].source: no Prometheus source named 'nowhere'"]
    assert not Service.objects.filter(name="billing").exists()
