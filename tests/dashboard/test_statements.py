"""The slow-queries page, a statement's page and the service page's "queries holding this pool"
panel, over statement statistics written as the collector and the snapshots store them."""

from __future__ import annotations

import json
import re

import pytest
from django.utils import timezone

from poolboard.statements.models import StatementsStatus
from tests.dashboard.statement_factories import make_statement, statement_fleet

pytestmark = pytest.mark.django_db

@pytest.fixture
def fleet(monitored, make_service, settings):
    return statement_fleet(monitored, make_service, settings)


def statement_order(html: str) -> list[str]:
    return re.findall(r'href="/statements/(\d+)/"', html)


def test_it_shows_each_statement_with_its_services_share_of_pool_and_episodes(alice_client, fleet):
    r = alice_client.get("/queries/slow/")
    html = r.content.decode()
    assert r.status_code == 200 and "<html" in html
    row = html[html.index("SELECT pg_sleep($1)"):]
    row = row[: row.index("</tr>")]
    assert "6 calls" in row and "0.25/h" in row and "40.00 s" in row and "45.00 s" in row  # calls, mean, max
    assert "reports</b> 3 of 5 in its pool (60%)" in row
    assert f'/statements/{fleet["sleep"].pk}/#episodes">1</a>' in row
    assert "new" in row  # nothing a week earlier
    # Sorted by total time: 240 s of sleeps before 6 s of lookups.
    assert statement_order(html)[:2] == [str(fleet["sleep"].pk), str(fleet["orders"].pk)]
    assert "checkout</b> 1 of 20 in its pool (5%)" in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html and "<script>alert" not in html


def test_it_answers_htmx_with_the_table_alone(alice_client, fleet):
    r = alice_client.get("/queries/slow/?sort=calls", headers={"HX-Request": "true"})
    html = r.content.decode()
    assert r.status_code == 200 and "<html" not in html and 'id="statements-table"' in html
    assert statement_order(html)[:2] == [str(fleet["orders"].pk), str(fleet["sleep"].pk)]


@pytest.mark.parametrize(("sort", "first"), [("total", "sleep"), ("mean", "sleep"), ("calls", "orders"), ("held", "sleep")])
def test_it_sorts_by_total_mean_calls_and_held_time(alice_client, fleet, sort, first):
    html = alice_client.get(f"/queries/slow/?sort={sort}").content.decode()
    assert statement_order(html)[0] == str(fleet[first].pk)
    assert f'<option value="{sort}" selected>' in html


def test_it_filters_by_service_and_database(alice_client, fleet):
    html = alice_client.get("/queries/slow/?service=checkout").content.decode()
    assert statement_order(html) == [str(fleet["orders"].pk)]
    html = alice_client.get("/queries/slow/?database=orders-db/app").content.decode()
    assert len(statement_order(html)) == 3
    html = alice_client.get("/queries/slow/?database=orders-db/elsewhere").content.decode()
    assert statement_order(html) == [] and "No statement ran in orders-db/elsewhere in the last 24h" in html


def test_it_says_which_filter_it_ignored(alice_client, fleet):
    r = alice_client.get("/queries/slow/?sort=bogus&range=2y&service=nobody&database=nowhere/x")
    html = r.content.decode()
    assert r.status_code == 200
    assert "Ignored: unknown sort &#x27;bogus&#x27;; use one of total, mean, calls, held." in html
    assert "Ignored: unknown range &#x27;2y&#x27;" in html
    assert "Ignored: no service named &#x27;nobody&#x27;." in html
    assert "Ignored: no monitored server named &#x27;nowhere&#x27;" in html
    assert len(statement_order(html)) == 3  # the defaults, unfiltered


def test_it_pages_fifty_statements_at_a_time(alice_client, fleet):
    now = timezone.now()
    for i in range(60):
        make_statement(fleet["server"], f"SELECT {i} FROM t{i}", 1000 + i, now=now, calls=[1], mean_ms=0.5)
    html = alice_client.get("/queries/slow/").content.decode()
    assert len(statement_order(html)) == 50 and "page 1 of 2 · 63 statements" in html
    assert 'href="?range=24h&amp;sort=total&page=2"' in html
    html = alice_client.get("/queries/slow/?page=2", headers={"HX-Request": "true"}).content.decode()
    assert len(statement_order(html)) == 13


def test_it_has_an_empty_state(alice_client, monitored):
    StatementsStatus.objects.create(server=monitored, state="ok", checked_at=timezone.now())
    html = alice_client.get("/queries/slow/").content.decode()
    assert "No statement ran in the last 24h." in html


def test_it_says_how_to_enable_pg_stat_statements_and_keeps_the_episode_list(alice_client, fleet):
    status = StatementsStatus.objects.get(server=fleet["server"])
    status.state = "not_preloaded"
    status.message = "pg_stat_statements is not preloaded.\nAdd shared_preload_libraries = 'pg_stat_statements'"
    status.save()
    html = alice_client.get("/queries/slow/").content.decode()
    assert "No statement statistics from orders-db:</strong> pg_stat_statements is not preloaded.<br>Add shared_preload_libraries" in html
    assert "Long-running queries seen in the snapshots" in html
    fallback = html[html.index("Long-running queries seen in the snapshots"):]
    assert f'/queries/{fleet["sleep"].query.fingerprint}/' in fallback and "41.00 s" in fallback


def test_it_tells_a_server_never_checked_apart(alice_client, fleet):
    StatementsStatus.objects.filter(server=fleet["server"]).delete()
    html = alice_client.get("/queries/slow/").content.decode()
    assert "No statement statistics from orders-db:</strong> pg_stat_statements has not been checked on this server yet." in html


def test_it_shows_a_statement_with_its_history_services_and_episodes(alice_client, fleet):
    sleep = fleet["sleep"]
    r = alice_client.get(f"/statements/{sleep.pk}/")
    html = r.content.decode()
    assert r.status_code == 200 and "<html" in html
    assert "SELECT pg_sleep($1)" in html and "orders-db/app" in html
    assert "Calls <b>6</b>" in html and "Mean <b>40.00 s</b>" in html
    data = json.loads(re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert [c["id"] for c in data["charts"]] == ["calls", "mean"]
    assert data["charts"][1]["series"][0]["values"] == [40.0, 40.0, 40.0]
    services = html[html.index("Services running it"):html.index('id="episodes"')]
    assert f'href="/services/{fleet["reports"].pk}/">reports</a>' in services
    assert '<td class="num">3</td><td class="num">5</td><td class="num">60%</td>' in services
    episodes = html[html.index('id="episodes"'):]
    assert "pid 4242" in episodes and "≥ 41.00 s" in episodes
    assert f'href="/queries/{sleep.query.fingerprint}/"' in html  # the fingerprint's episode page, kept
    assert alice_client.get(f"/queries/{sleep.query.fingerprint}/").status_code == 200


def test_it_answers_a_statement_range_with_the_history_alone(alice_client, fleet):
    r = alice_client.get(f"/statements/{fleet['orders'].pk}/?range=1h", headers={"HX-Request": "true"})
    html = r.content.decode()
    assert r.status_code == 200 and "<html" not in html and 'id="statement-history"' in html
    assert "Calls <b>3000</b>" in html and "checkout" in html
    assert alice_client.get("/statements/999999/").status_code == 404


def test_it_shows_a_statement_nobody_was_seen_running(alice_client, fleet):
    html = alice_client.get(f"/statements/{fleet['hostile'].pk}/").content.decode()
    assert "No snapshot in the last 24h saw a session running this statement" in html
    assert "No snapshot caught this statement running longer" in html
    assert "<script>alert" not in html


def test_it_loads_the_queries_holding_a_services_pool(alice_client, fleet):
    page = alice_client.get(f"/services/{fleet['reports'].pk}/").content.decode()
    assert f'hx-get="/services/{fleet["reports"].pk}/statements/"' in page
    r = alice_client.get(f"/services/{fleet['reports'].pk}/statements/", headers={"HX-Request": "true"})
    html = r.content.decode()
    assert r.status_code == 200 and "<html" not in html and 'id="service-statements"' in html
    assert statement_order(html) == [str(fleet["sleep"].pk)]
    assert "3 of 5 (60%)" in html and "40.00 s" in html and '<td class="num">6</td>' in html
    assert "<td class=\"num\">80 s</td>" in html  # (2 + 3 + 3) sessions × 10 s snapshots


def test_it_has_an_empty_queries_holding_panel(alice_client, fleet, make_service):
    quiet = make_service("quiet")
    html = alice_client.get(f"/services/{quiet.pk}/statements/").content.decode()
    assert "No statement of quiet was seen holding a connection in the last 24h" in html
