"""Custom presets: edited in the admin, checked against their real Prometheus when saved."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from poolboard.fleet.collection import collect_source, current_slot
from poolboard.fleet.discovery import discover_source
from poolboard.fleet.models import CustomPreset, Pool, PrometheusSource, Service, get_preset
from poolboard.lib.pools import FIELDS
from tests.prom import ExpositionServer, PrometheusServer, exposition, free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.prometheus]


@pytest.fixture(scope="module")
def prom():
    exporter = ExpositionServer(exposition("custom_pool"))
    server = PrometheusServer({"acme": [exporter.address]}, scrape_interval="1s")
    try:
        # Two scrapes of both pools: rate() and increase() in the templates need two samples,
        # else a query that should fail (the 422 test) answers nothing instead.
        server.wait_for("count_over_time(acme_pool_busy[5m]) >= 2", count=2)
        yield server
    finally:
        server.close()
        exporter.close()


@pytest.fixture
def source(prom):
    return PrometheusSource.objects.create(name="main", url=prom.url, presets=[])


def form(source: PrometheusSource, **queries: str) -> dict:
    data = {
        "name": "acme",
        "title": "ACME in-house pool",
        "source": str(source.pk),
        "marker": "acme_pool_busy",
        "notes": "",
        "service_label": "app",
        "instance_label": "instance",
        "pool_label": "pool",
    }
    data.update({f"{f}_query": "" for f in FIELDS})
    data.update({f"{f}_query": q for f, q in queries.items()})
    return data


def post(client, bob, data):
    client.force_login(bob)
    return client.post("/admin/fleet/custompreset/add/", data)


def field_errors(response, name: str) -> list[str]:
    return list(response.context["adminform"].form.errors.get(name, []))


def test_a_valid_custom_preset_is_saved_discovered_and_collected(client, bob, source) -> None:
    response = post(client, bob, form(
        source,
        in_use="sum by ($by) (acme_pool_busy{$sel})",
        max="sum by ($by) (acme_pool_limit{$sel})",
        acquire_s="sum by ($by) (rate(acme_pool_wait_seconds_sum{$sel}[$w])) / sum by ($by) (rate(acme_pool_wait_seconds_count{$sel}[$w]))",
    ))
    assert response.status_code == 302, response.context["adminform"].form.errors
    preset = get_preset("acme")
    assert preset is not None and not preset.builtin
    assert preset.missing_fields() == ["min", "idle", "pending", "overflow", "timeouts", "acquisitions", "hold_s", "conns_opened", "conns_closed"]

    found = discover_source(source)
    assert found.services == {"acme-api": "acme"}
    assert collect_source(source, current_slot()).status == "ok"
    pools = {p.name: (p.in_use, p.max, p.idle) for p in Pool.objects.filter(service__name="acme-api")}
    # idle is not in the preset: absent, never 0
    assert pools == {"primary": (3, 10, None), "replica": (1, 4, None)}


def test_a_syntax_error_blocks_saving_with_prometheus_message_on_the_field(client, bob, source) -> None:
    response = post(client, bob, form(source, in_use="sum by ($by) (acme_pool_busy{$sel}"))

    assert response.status_code == 200
    assert field_errors(response, "in_use_query") == [
        "Prometheus rejected the query: bad_data: invalid parameter \"query\": 1:47: parse error: unclosed left parenthesis"
    ]
    assert CustomPreset.objects.count() == 0


def test_an_execution_error_422_blocks_saving_with_prometheus_message(client, bob, source) -> None:
    # Both series keep the same labels once rate() drops the name: Prometheus answers 422.
    response = post(client, bob, form(
        source,
        in_use="sum by ($by) (acme_pool_busy{$sel})",
        acquire_s='rate({__name__=~"acme_pool_wait_seconds_(sum|count)",$sel}[$w])',
    ))

    assert response.status_code == 200
    assert field_errors(response, "acquire_s_query") == [
        "Prometheus rejected the query: execution: vector cannot contain metrics with the same labelset"
    ]
    assert field_errors(response, "in_use_query") == []
    assert CustomPreset.objects.count() == 0


def test_an_unknown_placeholder_is_caught_before_asking_prometheus(client, bob, source) -> None:
    response = post(client, bob, form(source, in_use="sum by ($by) (acme_pool_busy{$selector})"))

    assert field_errors(response, "in_use_query") == [
        "unknown placeholder $selector in template 'sum by ($by) (acme_pool_busy{$selector})'"
    ]


def test_a_builtin_name_and_bad_labels_are_refused(client, bob, source) -> None:
    data = form(source, in_use="sum by ($by) (acme_pool_busy{$sel})")
    data.update(name="hikaricp", pool_label='pool"}', marker='acme"} or vector(1)')
    response = post(client, bob, data)

    errors = response.context["adminform"].form.errors
    assert errors["name"] == ["hikaricp is a built-in preset; choose another name."]
    assert errors["pool_label"] == ["'pool\"}' is not a valid Prometheus label name"]
    assert errors["marker"] == ["Give a metric name or a regex of metric names (letters, digits, _ : | ( ) ? * + . [ ])."]


def test_saving_is_blocked_when_the_source_cannot_be_reached(client, bob, source) -> None:
    down = PrometheusSource.objects.create(name="down", url=f"http://127.0.0.1:{free_port()}", timeout_s=2)
    response = post(client, bob, form(down, in_use="sum by ($by) (acme_pool_busy{$sel})"))

    assert response.status_code == 200
    assert list(response.context["adminform"].form.non_field_errors()) == [
        f"Cannot check the templates against down: cannot connect to Prometheus at {down.url}"
    ]


def test_get_preset_resolves_builtin_first_then_custom(source) -> None:
    CustomPreset.objects.create(name="acme", source=source, marker="acme_pool_busy", in_use_query="sum by ($by) (acme_pool_busy{$sel})")
    assert get_preset("hikaricp").builtin
    assert get_preset("acme").queries == {"in_use": "sum by ($by) (acme_pool_busy{$sel})"}
    assert get_preset("nope") is None
    source.presets = ["acme", "nope"]
    with pytest.raises(ValidationError) as caught:
        source.full_clean()
    assert "Unknown preset(s): nope." in str(caught.value)


def test_service_label_comes_from_the_custom_preset(source) -> None:
    CustomPreset.objects.create(
        name="acme", source=source, marker="acme_pool_busy", service_label="app", pool_label="pool",
        in_use_query="sum by ($by) (acme_pool_busy{$sel})",
    )
    source.presets = ["acme"]
    source.save()
    assert collect_source(source, current_slot()).status == "ok"
    assert list(Service.objects.values_list("name", "preset")) == [("acme-api", "acme")]
