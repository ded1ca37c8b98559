from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from poolboard.fleet.models import PrometheusSource
from tests.fleet import factories

pytestmark = pytest.mark.django_db

URL = "/"


@pytest.fixture
def fleet():
    src = factories.source()
    factories.service_with_pool(src, "search", max=10, in_use=10, idle=0, pending=7, timeouts=0)
    factories.service_with_pool(src, "checkout", max=20, in_use=4, idle=16, pending=0, timeouts=0)
    factories.service_with_pool(src, "billing", max=10, in_use=9, idle=1, pending=0, timeouts=3)
    return src


def test_it_shows_one_row_per_service_as_a_full_page(alice_client, fleet) -> None:
    response = alice_client.get(URL)

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" in html and 'id="fleet-table"' in html
    assert "3 services" in html
    assert "10 / 10" in html and "4 / 20" in html and "9 / 10" in html
    # Worst first by default: billing (timeouts) and search (exhausted) are critical, checkout ok.
    assert html.index(">billing<") < html.index(">checkout<")
    assert html.index(">search<") < html.index(">checkout<")
    assert "exhausted: all connections in use, 7 waiting" in html
    assert "3 acquire timeouts" in html


def test_htmx_poll_gets_only_the_table_partial(alice_client, fleet) -> None:
    response = alice_client.get(URL, headers={"HX-Request": "true"})

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert html.lstrip().startswith('<section id="fleet-table"')
    assert 'hx-trigger="every 10s, visibilitychange from:document"' in html
    assert response["Vary"] == "HX-Request, Cookie" or "HX-Request" in response["Vary"]


def test_it_sorts_by_a_column_and_keeps_the_sort_in_the_poll_url(alice_client, fleet) -> None:
    html = alice_client.get(URL + "?sort=name&dir=asc").content.decode()

    assert html.index(">billing<") < html.index(">checkout<") < html.index(">search<")
    assert 'hx-get="/?sort=name&dir=asc&page=1"' in html
    assert 'aria-sort="ascending"' in html

    by_utilization = alice_client.get(URL + "?sort=utilization&dir=desc").content.decode()
    assert by_utilization.index(">search<") < by_utilization.index(">billing<") < by_utilization.index(">checkout<")


def test_an_unknown_sort_falls_back_to_status(alice_client, fleet) -> None:
    response = alice_client.get(URL + "?sort=__class__&dir=sideways&page=abc")
    assert response.status_code == 200
    assert response.context["sort"] == "status"


def test_it_says_what_to_do_when_there_is_no_source(alice_client) -> None:
    html = alice_client.get(URL).content.decode()

    assert "No Prometheus source yet" in html
    assert "/admin/fleet/prometheussource/add/" in html
    assert "python manage.py collect --once" in html


def test_it_says_what_to_check_when_a_source_found_no_services(alice_client) -> None:
    factories.source(name="prod")
    html = alice_client.get(URL).content.decode()
    assert "No services found yet" in html
    assert "<em>prod</em>" in html


def test_it_says_data_is_stale_when_prometheus_is_failing(alice_client, fleet) -> None:
    last_ok = timezone.now() - timedelta(minutes=5)
    PrometheusSource.objects.filter(pk=fleet.pk).update(
        last_success_at=last_ok, last_error_at=timezone.now(), last_error="cannot connect to Prometheus at http://prom:9090"
    )
    html = alice_client.get(URL).content.decode()

    assert f"Data stale since {timezone.localtime(last_ok):%Y-%m-%d %H:%M:%S}" in html
    assert "cannot connect to Prometheus at http://prom:9090" in html


def test_it_marks_services_whose_samples_stopped_as_stale(alice_client) -> None:
    src = factories.source()
    factories.service_with_pool(src, "old", age_s=3600, max=5, in_use=1)
    html = alice_client.get(URL).content.decode()
    assert "no sample for 1h" in html
    assert "1 stale / no data" in html


def test_query_count_does_not_grow_with_the_fleet(alice_client, django_assert_num_queries) -> None:
    from poolboard.fleet.overview import forget_overview_rows

    src = factories.source()
    for i in range(5):
        factories.service_with_pool(src, f"svc-{i}", max=10, in_use=i)
    alice_client.get(URL)  # warm the session
    forget_overview_rows()  # what the first poll after a collection tick runs
    # session, user, data version (sources; services + findings), services (+source), pools,
    # open findings, sources for the banners, the top bar's firing alerts
    with django_assert_num_queries(9) as small:
        alice_client.get(URL)
    for i in range(5, 60):
        factories.service_with_pool(src, f"svc-{i}", max=10, in_use=1)
    forget_overview_rows()
    with django_assert_num_queries(len(small.captured_queries)):
        alice_client.get(URL)
    # The polls between ticks reuse the rows: session, user, data version, sources, firing alerts.
    with django_assert_num_queries(6):
        alice_client.get(URL)


def test_it_paginates_large_fleets(alice_client) -> None:
    src = factories.source()
    for i in range(130):
        factories.service_with_pool(src, f"svc-{i:03d}", max=10, in_use=1)
    html = alice_client.get(URL + "?sort=name&dir=asc&page=2").content.decode()
    assert "page 2 of 2" in html
    assert ">svc-100<" in html and ">svc-000<" not in html
