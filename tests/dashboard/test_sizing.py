"""The Sizing page (full and HTMX partial), its CSV, the service page's panel, the what-if calculator, the API."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.utils import timezone

from poolboard.databases.models import MonitoredServer
from poolboard.fleet.models import Service
from tests.sizing.factories import demo_fleet_stored, pools, server_with_snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(make_source):
    return demo_fleet_stored(make_source())


def test_it_shows_each_servers_ledger_and_every_pools_recommendation(alice_client, demo):
    page = alice_client.get("/sizing/").content.decode()
    assert "<h1>Sizing</h1>" in page and 'aria-current="page">Sizing</a>' in page
    assert "Within budget: if every pool filled, 58 of 84 usable connections." in page
    assert ("usable = 100 max_connections − 3 superuser_reserved_connections − 3 for poolboard&#x27;s monitor − "
            "10 kept for admin/migrations = 84") in page
    search = page[page.index('id="rec-search"'):]
    search = search[: search.index("</tr>")]
    assert "grow</span> <b class=\"num\">15</b>" in search and "+10" in search
    billing = page[page.index('id="rec-billing"'):]
    assert "fix the leak first" in billing[: billing.index("</tr>")]
    checkout = page[page.index('id="rec-checkout"'):]
    assert "shrink" in checkout[: checkout.index("</tr>")]


def test_it_lists_the_most_actionable_pools_first_and_all_on_request(alice_client, demo, monkeypatch):
    monkeypatch.setattr("poolboard.dashboard.views.sizing.PAGE_ROWS", 2)
    page = alice_client.get("/sizing/").content.decode()
    # Leaks first (billing, notifications), then slow queries, grow, shrink, fine.
    assert page.index('id="rec-billing"') < page.index('id="rec-notifications"')
    assert 'id="rec-search"' not in page and "The 2 most actionable of 6 pools." in page
    everything = alice_client.get("/sizing/?rows=all").content.decode()
    order = [everything.index(f'id="rec-{name}"') for name in ("billing", "notifications", "reports", "search", "checkout")]
    assert order == sorted(order) and "most actionable" not in everything


def test_its_partial_is_the_servers_block_only(alice_client, demo):
    partial = alice_client.get("/sizing/", headers={"HX-Request": "true"}).content.decode()
    assert partial.lstrip().startswith('<div id="sizing-servers"') and "<h1>" not in partial
    assert "fix the leak first" in partial


def test_it_says_so_when_there_is_nothing_to_size(alice_client):
    page = alice_client.get("/sizing/").content.decode()
    assert "Nothing to size yet" in page and "1h of pool history" in page


def test_an_overcommitted_server_says_how_much_would_be_asked(alice_client, make_source):
    now = timezone.now()
    server = server_with_snapshot("small", now, max_connections=50)
    svc = Service.objects.create(name="api", source=make_source(), preset="db_pool", server=server, replicas=8)
    pools(svc, 1, max=20, now=now)
    page = alice_client.get("/sizing/").content.decode()
    # usable 50 − 3 − 3 − 5 = 39; 20 × 8 = 160, + ceil(8 × 0.25) = 2 × 20 = 40 surge
    assert "Overcommitted: if every pool filled, 200 connections would be asked of a server that accepts 39." in page


def test_the_csv_has_one_row_per_pool_with_its_numbers(alice_client, demo):
    response = alice_client.get("/sizing/sizing.csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    by = {r["service"]: r for r in rows}
    assert set(by) == {"checkout", "search", "billing", "notifications", "reports", "sessions"}
    assert (by["search"]["action"], by["search"]["recommended"], by["search"]["change"], by["search"]["p99"]) == ("grow", "15", "10", "12")
    assert by["checkout"]["instances"] == "2" and by["billing"]["action"] == "fix the leak first"


def test_the_service_page_loads_its_recommendation(alice_client, demo):
    search = Service.objects.get(name="search")
    page = alice_client.get(f"/services/{search.pk}/").content.decode()
    assert f'hx-get="/services/{search.pk}/sizing/"' in page
    panel = alice_client.get(f"/services/{search.pk}/sizing/").content.decode()
    assert "grow" in panel and "max <b class=\"num\">15</b> per process (+10 from 5)" in panel
    assert "Callers waited" in panel


def test_the_what_if_calculator_redraws_the_ledger(alice_client, demo):
    server, _now = demo
    page = alice_client.get(f"/servers/{server.name}/").content.decode()
    assert f'hx-get="/servers/{server.name}/what-if/"' in page
    empty = alice_client.get(f"/servers/{server.name}/what-if/").content.decode()
    assert '<option value="search">' in empty and "Within budget" in empty
    changed = alice_client.get(f"/servers/{server.name}/what-if/?pool=search&max=20&replicas=4").content.decode()
    # 48 − 5 + 20 × 4 = 123 of 84, + search's surge (1 × 20) = 143.
    assert "With search at 20 per process × 4 replicas" in changed
    assert "Overcommitted: if every pool filled, 143 connections would be asked of a server that accepts 84." in changed
    assert '<tr class="chosen"><td>search</td>' in changed
    # The form's own (htmx) requests get the result only: the form keeps what is being typed.
    partial = alice_client.get(f"/servers/{server.name}/what-if/?pool=search&max=20&replicas=4",
                               headers={"HX-Request": "true"}).content.decode()
    assert partial.lstrip().startswith('<div id="what-if-result">') and "<form" not in partial
    assert "143 connections would be asked" in partial
    # Every other pool's room shrinks: checkout could run 8 replicas at 3 (67 − 42 others = 25), fewer now.
    rows = dict((m[0], (int(m[1]), int(m[2]), int(m[3]))) for m in re.findall(
        r'<td>(\w+)</td>\s*<td class="num">(\d+)</td>\s*<td class="num">(\d+)</td>\s*<td class="num">(\d+)</td>', partial))
    assert rows["checkout"][0] == 16 and rows["checkout"][2] == 8 and rows["checkout"][1] < 8
    assert rows["search"][0] == 80


def test_the_what_if_calculator_explains_bad_input(alice_client, demo):
    server, _now = demo
    bad = alice_client.get(f"/servers/{server.name}/what-if/?pool=search&max=lots&replicas=0").content.decode()
    assert "Pool size must be a whole number, not &#x27;lots&#x27;." in bad
    assert "Replicas must be between 1 and 10000." in bad
    unknown = alice_client.get(f"/servers/{server.name}/what-if/?pool=%3Cscript%3E&max=3").content.decode()
    assert "No pool named &#x27;&lt;script&gt;&#x27; on demo." in unknown and "<script>" not in unknown
    assert alice_client.get("/servers/nope/what-if/").status_code == 404


def test_a_server_with_no_pools_says_so_in_the_calculator(alice_client):
    MonitoredServer.objects.create(name="idle", host="idle.invalid")
    body = alice_client.get("/servers/idle/what-if/").content.decode()
    assert "No service's pools are on idle yet" in body


def test_the_api_gives_the_numbers_and_their_inputs(client, auth, demo):
    body = client.get("/api/v1/sizing/", headers=auth).json()
    [server] = body["servers"]
    assert server["ledger"]["usable"] == 84 and server["ledger"]["committed"] == 58
    assert body["policy"]["headroom"] == 0.2
    search = next(p for p in server["pools"] if p["service"] == "search")
    assert (search["action"], search["recommended"], search["change"]) == ("grow", 15, 10)
    assert search["inputs"]["demand"]["p99"] == 12 and search["inputs"]["max"] == 5
    assert search["inputs"]["instances"] == 1 and search["inputs"]["instances_from"] == "seen in 24 h"
    only = client.get("/api/v1/sizing/?service=billing", headers=auth).json()
    assert [p["service"] for s in only["servers"] for p in s["pools"]] == ["billing"]
    missing = client.get("/api/v1/sizing/?service=nope", headers=auth)
    assert missing.status_code == 404 and "no pools of a service named 'nope'" in missing.json()["error"]
    assert client.get("/api/v1/sizing/").status_code == 401
