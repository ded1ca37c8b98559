"""The service page: current values, charts per range, partials, empty and missing-field states."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
import time_machine

from poolboard.fleet.models import Service
from poolboard.history import rollup
from poolboard.lib.rollups import MAX_POINTS
from tests.fleet.factories import write_samples

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 12, 0, 7, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


# Every pool's latest reading (make_service samples it 5 s before NOW).
CURRENT = dict(max=10, in_use=4, idle=6, pending=0, timeouts=0, acquire_s=0.002, hold_s=0.05)


def seed(service, seconds: int, every: int = 15, skip=lambda ts: False):
    rows = []
    for pool in service.pools.all():
        t = NOW.timestamp() - seconds
        while t <= NOW.timestamp():
            if not skip(t):
                rows.append((pool.id, t, {"max": 10.0, "in_use": 4.0, "idle": 6.0, "pending": 0.0, "timeouts": 0.0,
                                          "acquire_s": 0.002, "hold_s": 0.05}))
            t += every
    write_samples(rows)


def chart_data(response) -> dict:
    match = re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', response.content.decode(), re.S)
    assert match, "no chart data in the page"
    return json.loads(match.group(1))


def test_it_shows_current_values_and_charts_for_the_default_range(alice_client, make_service) -> None:
    service = make_service(instances=2, **CURRENT)
    seed(service, 1800)
    response = alice_client.get(f"/services/{service.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="pool-current"' in html and 'id="pool-charts"' in html
    assert "vendor/uplot/uPlot.iife.min.js" in html and "js/charts.js" in html
    data = chart_data(response)
    assert [c["id"] for c in data["charts"]] == ["connections", "times", "timeouts"]
    assert len(data["x"]) <= MAX_POINTS and data["step"] == 30
    connections = {s["field"]: s["values"] for s in data["charts"][0]["series"]}
    assert set(connections) == {"in_use", "idle", "max", "pending"}
    # Two pools added up; before the seeded half hour there is nothing: null, never 0.
    assert connections["in_use"][-2] == 8.0 and connections["max"][-2] == 20.0
    assert connections["in_use"][0] is None
    assert "raw samples" in html


@pytest.mark.parametrize(
    ("range_key", "step", "source_label"),
    [("1h", 30, "raw samples"), ("6h", 30, "raw samples"), ("24h", 120, "raw samples"),
     ("7d", 900, "5-minute rollups"), ("30d", 3600, "1-hour rollups")],
)
def test_it_swaps_the_charts_partial_for_each_range_button(alice_client, make_service, range_key, step, source_label) -> None:
    service = make_service(instances=2, **CURRENT)
    seed(service, 2 * 3600)
    rollup.rollup(rollup.RES_5M, NOW - timedelta(hours=3), NOW)
    rollup.rollup(rollup.RES_1H, NOW - timedelta(hours=3), NOW)
    response = alice_client.get(
        f"/services/{service.pk}/?range={range_key}", headers={"HX-Request": "true", "HX-Target": "pool-charts"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="pool-charts"') and "pool-current" not in html
    assert "<html" not in html
    data = chart_data(response)
    assert data["step"] == step and len(data["x"]) <= MAX_POINTS
    assert source_label in html
    in_use = data["charts"][0]["series"][0]["values"]
    assert in_use[-1] == 8.0
    # Before the 2 seeded hours: gaps (None), never 0.
    assert 0 not in in_use and (range_key == "1h" or in_use[0] is None)
    assert f'href="/services/{service.pk}/?range={range_key}"' in html
    assert 'class="on" aria-current="true">' + range_key in html
    assert 'hx-push-url="true"' in html


def test_it_gives_the_poll_only_the_current_values(alice_client, make_service) -> None:
    service = make_service(instances=2, **CURRENT)
    response = alice_client.get(f"/services/{service.pk}/", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="pool-current"') and "chart-data" not in html
    assert 'hx-trigger="every 10s' in html


def test_it_draws_missing_samples_as_gaps_not_zeros(alice_client, make_service) -> None:
    service = make_service(instances=1, **CURRENT)
    # Collection down between 40 and 20 minutes ago.
    seed(service, 3600, skip=lambda ts: NOW.timestamp() - 2400 <= ts < NOW.timestamp() - 1200)
    data = chart_data(alice_client.get(f"/services/{service.pk}/?range=1h"))
    in_use = data["charts"][0]["series"][0]["values"]
    assert len(in_use) == 120
    assert in_use.count(None) == 40 and 0 not in in_use and 0.0 not in in_use
    first = in_use.index(None)
    assert in_use[first : first + 40] == [None] * 40 and in_use[-1] == 4.0


def test_it_says_which_fields_the_preset_lacks(alice_client, make_service) -> None:
    service = make_service(name="search", preset="hikaricp", instances=2, **CURRENT)
    seed(service, 600)
    html = alice_client.get(f"/services/{service.pk}/").content.decode()
    assert "HikariCP does not export closed connections" in html
    assert "HikariCP has no overflow concept" in html


def test_it_names_a_chart_field_the_preset_lacks_instead_of_drawing_zero(alice_client, make_service, monkeypatch) -> None:
    from poolboard.lib import presets

    lean = presets.Preset(name="lean", title="Lean", marker="x", queries={"in_use": "x", "max": "y"})
    monkeypatch.setitem(presets.BUILTIN_PRESETS, "lean", lean)
    service = make_service(name="lean", preset="lean", instances=2, **CURRENT)
    seed(service, 600)
    response = alice_client.get(f"/services/{service.pk}/?range=1h")
    data = chart_data(response)
    assert [s["field"] for s in data["charts"][0]["series"]] == ["in_use", "max"]
    assert [c["id"] for c in data["charts"]] == ["connections"]
    html = response.content.decode()
    assert "The lean preset gives no acquire time (s)." in html and "The lean preset gives no timeouts." in html


def test_it_explains_a_service_without_samples(alice_client, make_service) -> None:
    fresh = make_service(name="fresh", instances=2, **CURRENT)
    html = alice_client.get(f"/services/{fresh.pk}/").content.decode()
    assert "No samples in the last 1h" in html and "chart-data" not in html
    bare = Service.objects.create(name="bare", source=fresh.source, preset="db_pool")
    html = alice_client.get(f"/services/{bare.pk}/").content.decode()
    assert "No samples yet" in html and "No pool of this service has been sampled yet" in html


def test_it_falls_back_to_the_default_range(alice_client, make_service) -> None:
    service = make_service(instances=2, **CURRENT)
    response = alice_client.get(f"/services/{service.pk}/?range=5y")
    assert response.status_code == 200
    assert 'class="on" aria-current="true">1h' in response.content.decode()


def test_it_answers_an_unknown_service_with_404(alice_client) -> None:
    assert alice_client.get("/services/999999/").status_code == 404


def test_it_needs_a_login(client, make_service) -> None:
    service = make_service(instances=2, **CURRENT)
    response = client.get(f"/services/{service.pk}/")
    assert response.status_code == 302 and response["Location"] == f"/login/?next=/services/{service.pk}/"


def page_queries(client, service, **kwargs) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        assert client.get(f"/services/{service.pk}/", **kwargs).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("headers", [{}, {"HX-Request": "true"}, {"HX-Request": "true", "HX-Target": "pool-charts"}])
def test_it_runs_as_many_queries_whatever_the_fleet_or_pools(alice_client, make_service, django_assert_num_queries, headers) -> None:
    small = make_service(name="svc-0", instances=1, **CURRENT)
    seed(small, 600)
    for i in range(1, 10):
        make_service(name=f"svc-{i}", instances=1, **CURRENT)
    alice_client.get(f"/services/{small.pk}/")  # warm the session
    with django_assert_num_queries(page_queries(alice_client, small, headers=headers)):
        alice_client.get(f"/services/{small.pk}/", headers=headers)
    for i in range(10, 100):
        make_service(name=f"svc-{i}", instances=1, **CURRENT)
    big = make_service(name="big", instances=25, **CURRENT)
    seed(big, 600)
    expected = page_queries(alice_client, small, headers=headers)
    with django_assert_num_queries(expected):
        alice_client.get(f"/services/{small.pk}/", headers=headers)
    with django_assert_num_queries(expected):
        alice_client.get(f"/services/{big.pk}/", headers=headers)


def test_it_names_every_field_shown_blank_not_only_those_the_preset_lacks(alice_client, make_service) -> None:
    # A HikariCP exporter that sends only in use, idle and min: max, waiting, timeouts,
    # acquire and hold time are blank too, not only overflow and connections closed.
    service = make_service(name="sparse", preset="hikaricp", instances=1, in_use=3, idle=1, min=2)
    html = alice_client.get(f"/services/{service.pk}/").content.decode()
    assert (
        "exporter does not provide: max size, waiting, overflow, timeouts, acquisitions, acquire time (s), "
        "hold time (s), connections opened, connections closed" in html
    )
