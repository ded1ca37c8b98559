"""Rules edited in the admin and the inventory file: every problem on its own field."""

from __future__ import annotations

import html
import re

import pytest

from poolboard.alerts.models import AlertRule, RuleOverride
from poolboard.inventory.registry import export_inventory, import_inventory
from poolboard.lib.inventory import InventoryError

from .factories import channel, fleet, only_these_rules, source

pytestmark = pytest.mark.django_db

FORM = {
    "name": "PoolWaiting2", "enabled": "on", "severity": "warning", "origin": "", "signal": "waiting",
    "finding_kind": "", "comparator": ">", "threshold": "0", "for_s": "120", "keep_firing_for_s": "0",
    "no_data": "resolve", "max_instances": "100", "service_glob": "billing-*", "service_labels": "{}",
    "database_glob": "", "labels": "{}", "summary": "{{ service }}: {{ value }} waiting", "description": "",
    "overrides-TOTAL_FORMS": "0", "overrides-INITIAL_FORMS": "0", "overrides-MIN_NUM_FORMS": "0",
    "overrides-MAX_NUM_FORMS": "1000",
}


@pytest.fixture
def admin_client(client, bob):
    client.force_login(bob)
    return client


def errors_by_field(page: str) -> dict[str, str]:
    """{field name: its error list's text} from the admin change form."""
    out = {}
    for match in re.finditer(r'<div class="form-row[^"]*field-(\w+)[^"]*">(.*?)</div>\s*</div>', page, re.S):
        errors = re.findall(r'<ul class="errorlist"[^>]*>(.*?)</ul>', match.group(2), re.S)
        if errors:
            out[match.group(1)] = html.unescape(re.sub(r"<[^>]+>", " ", " ".join(errors)))
    return out


def test_a_good_rule_saves(admin_client) -> None:
    r = admin_client.post("/admin/alerts/alertrule/add/", FORM)
    assert r.status_code == 302, errors_by_field(r.content.decode())
    saved = AlertRule.objects.get(name="PoolWaiting2")
    assert (saved.signal, saved.for_s, saved.service_glob) == ("waiting", 120, "billing-*")


def test_each_problem_is_shown_on_its_field(admin_client) -> None:
    bad = {
        **FORM, "name": "Pool Waiting!", "summary": "{{ service }} {{ services }}", "description": "{{ value|safe }}",
        "labels": '{"severity": "page", "bad name": "x"}', "service_labels": '["not", "a map"]',
        "finding_kind": "leak",
    }
    r = admin_client.post("/admin/alerts/alertrule/add/", bad)
    assert r.status_code == 200
    errors = errors_by_field(r.content.decode())
    assert "Letters, digits and _ only" in errors["name"]
    assert "Unknown variable {{ services }}" in errors["summary"]
    assert "Unknown variable {{ value|safe }}" in errors["description"]
    assert "severity is set by poolboard" in errors["labels"] and "'bad name' is not a label name" in errors["labels"]
    assert "Give a JSON object of service labels" in errors["service_labels"]
    assert "Only the 'open diagnosis finding' signal takes a finding kind" in errors["finding_kind"]
    assert not AlertRule.objects.filter(signal="waiting", service_glob="billing-*").exclude(name="PoolWaiting").exists()


def test_a_finding_rule_needs_its_kind_and_a_database_signal_refuses_service_selectors(admin_client) -> None:
    r = admin_client.post("/admin/alerts/alertrule/add/", {**FORM, "signal": "finding", "finding_kind": ""})
    assert "Choose the finding kind: leak" in errors_by_field(r.content.decode())["finding_kind"]
    r = admin_client.post("/admin/alerts/alertrule/add/", {**FORM, "service_glob": "billing-[ab]"})
    assert "Only * and ? are wildcards" in errors_by_field(r.content.decode())["service_glob"]
    r = admin_client.post("/admin/alerts/alertrule/add/", {**FORM, "signal": "budget"})
    assert "is per server: select with 'databases'" in errors_by_field(r.content.decode())["service_glob"]


def test_an_age_rule_below_a_servers_episode_threshold_is_refused(admin_client) -> None:
    # Query and idle-in-transaction ages come from episodes, which start only past each
    # server's own threshold: "query > 10 s" would silently act as "> 30 s".
    from poolboard.databases.models import MonitoredServer

    MonitoredServer.objects.create(name="orders", host="orders.internal", query_s=30, idle_in_transaction_s=120)
    slow = {**FORM, "name": "Slow10", "signal": "query_s", "threshold": "10", "service_glob": ""}
    r = admin_client.post("/admin/alerts/alertrule/add/", slow)
    assert "orders starts at 30 s" in errors_by_field(r.content.decode())["threshold"]
    idle = {**FORM, "name": "DbIdle60", "signal": "db_idle_in_transaction_s", "threshold": "60", "service_glob": ""}
    r = admin_client.post("/admin/alerts/alertrule/add/", idle)
    assert "orders starts at 120 s" in errors_by_field(r.content.decode())["threshold"]
    r = admin_client.post("/admin/alerts/alertrule/add/", {**slow, "threshold": "30"})
    assert r.status_code == 302, errors_by_field(r.content.decode())


def test_the_rule_list_and_form_load(admin_client) -> None:
    assert admin_client.get("/admin/alerts/alertrule/").status_code == 200
    rule = AlertRule.objects.create(name="Shown", signal="waiting", threshold=0, origin="DESIGN.md §7")
    page = admin_client.get(f"/admin/alerts/alertrule/{rule.pk}/change/").content.decode()
    assert "DESIGN.md §7" in page
    assert admin_client.get("/admin/alerts/alertinstance/").status_code == 200
    assert admin_client.get("/admin/alerts/alerttransition/").status_code == 200


def test_rules_round_trip_through_the_inventory_file() -> None:
    only_these_rules()
    src = source()
    batch, _ = fleet(src, 2, in_use=1, max=10)
    oncall = channel("oncall")
    rule = AlertRule.objects.create(name="PoolWaiting", signal="waiting", threshold=0, for_s=120,
                                    summary="{{ service }} waits", labels={"team": "payments"})
    rule.channels.add(oncall)
    RuleOverride.objects.create(rule=rule, service=batch, threshold=5)
    text = export_inventory()
    assert "alert_rules:" in text and "- name: PoolWaiting" in text
    AlertRule.objects.all().delete()
    import_inventory(text)
    again = AlertRule.objects.get(name="PoolWaiting")
    assert (again.for_s, again.labels, again.summary) == (120, {"team": "payments"}, "{{ service }} waits")
    assert [c.name for c in again.channels.all()] == ["oncall"]
    assert [(o.service.name, o.threshold) for o in again.overrides.all()] == [(batch.name, 5.0)]
    assert export_inventory() == text


def test_a_bad_rule_in_the_inventory_names_its_line_and_field() -> None:
    only_these_rules()
    text = (
        "version: 1\nalert_rules:\n- name: Broken\n  signal: waiting\n  threshold: 0\n"
        "  summary: '{{ nope }}'\n  channels: [missing]\n  overrides:\n  - {service: ghost, threshold: 1}\n"
    )
    with pytest.raises(InventoryError) as caught:
        import_inventory(text)
    message = str(caught.value)
    assert "alert_rules[0].summary: Unknown variable {{ nope }}" in message
    assert "alert_rules[0].channels: no channel named 'missing'" in message
    assert "alert_rules[0].overrides[0].service: no service named 'ghost'" in message
    assert not AlertRule.objects.exists()
