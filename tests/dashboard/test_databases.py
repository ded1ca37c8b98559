from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from poolboard.databases.models import BackendAction, Episode
from poolboard.lib import episodes as ep
from tests.databases.factories import copy_newest_snapshot

pytestmark = pytest.mark.django_db

def assert_hostile_escaped(html: str):
    assert "<script>alert" not in html
    assert "<div hx-get='/admin/'" not in html
    assert "4111" not in html


def test_it_sends_anonymous_visitors_to_the_login(client, monitored):
    for url in ["/databases/", "/servers/orders-db/", "/queries/slow/"]:
        r = client.get(url)
        assert r.status_code == 302 and "/login/" in r["Location"]
    r = client.get("/servers/orders-db/", headers={"HX-Request": "true"})
    assert r.status_code == 401


def test_it_lists_databases_as_a_page_and_as_the_poll_partial(alice_client, snapped):
    r = alice_client.get("/databases/")
    assert r.status_code == 200
    assert b"<html" in r.content and b"orders-db" in r.content
    r = alice_client.get("/databases/", headers={"HX-Request": "true"})
    assert b"<html" not in r.content and b'id="databases-table"' in r.content


def test_it_explains_what_to_do_without_a_database(alice_client):
    r = alice_client.get("/databases/")
    assert b"No monitored server yet" in r.content


def test_it_shows_a_database_with_its_budget_and_hostile_text_escaped(alice_client, snapped):
    r = alice_client.get("/servers/orders-db/")
    html = r.content.decode()
    assert r.status_code == 200 and "<html" in html
    assert "Connection budget" in html and "80 %" in html
    assert "hostile-svc" in html and "idle in transaction" in html
    assert_hostile_escaped(html)
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html  # the identifier, escaped
    assert "<tbody hx-disable>" in html
    r = alice_client.get("/servers/orders-db/", headers={"HX-Request": "true"})
    html = r.content.decode()
    assert "<html" not in html and 'id="db-live"' in html
    assert_hostile_escaped(html)


def test_it_filters_and_sorts_sessions(alice_client, snapped):
    monitored, _ = snapped
    # The server is shared: other people's sessions are listed too, so the active hostile
    # session is recognised by its pid, not by a query text anyone may be running.
    hostile_pid = next(s["pid"] for s in monitored.last_sessions if s["application_name"] == "hostile-svc")
    r = alice_client.get("/servers/orders-db/?state=idle+in+transaction", headers={"HX-Request": "true"})
    html = r.content.decode()
    assert "idle-svc" in html and f'<td class="num">{hostile_pid}</td>' not in html
    r = alice_client.get("/servers/orders-db/?app=hostile-svc&sort=age&dir=asc")
    assert "pg_sleep" in r.content.decode()
    r = alice_client.get("/servers/orders-db/?user=nobody-at-all")
    assert "matches these filters" in r.content.decode()
    # An unknown sort falls back to the default one instead of failing.
    html = alice_client.get("/servers/orders-db/?sort=bogus&dir=x").content.decode()
    assert "hostile-svc" in html and "idle-svc" in html


def test_it_redirects_the_old_database_address_to_the_server_page(alice_client, snapped):
    r = alice_client.get("/databases/orders-db/?state=active")
    assert r.status_code == 301 and r["Location"] == "/servers/orders-db/?state=active"
    assert alice_client.get(r["Location"]).status_code == 200


def test_it_answers_an_unknown_database_with_404(alice_client, db):
    assert alice_client.get("/servers/nope/").status_code == 404


def test_it_lists_slow_queries_and_drills_into_one(alice_client, snapped):
    r = alice_client.get("/queries/slow/")
    html = r.content.decode()
    assert r.status_code == 200 and "<html" in html
    assert "pg_sleep($1)" in html and "hostile-svc" in html
    assert_hostile_escaped(html)
    r = alice_client.get("/queries/slow/?days=1&sort=count&server=orders-db", headers={"HX-Request": "true"})
    html = r.content.decode()
    assert "<html" not in html and 'id="statements-table"' in html and "pg_sleep($1)" in html
    episode = Episode.objects.get(kind=ep.LONG_QUERY, application_name="hostile-svc")
    url = f"/queries/{episode.query.fingerprint}/"
    r = alice_client.get(url)
    html = r.content.decode()
    assert r.status_code == 200 and "<html" in html and "hostile-svc" in html
    assert_hostile_escaped(html)
    r = alice_client.get(url + "?kind=long_query", headers={"HX-Request": "true"})
    assert b"<html" not in r.content and b'id="query-episodes"' in r.content
    # Junk parameters fall back to the defaults instead of failing.
    assert "pg_sleep($1)" in alice_client.get("/queries/slow/?days=abc&sort=zzz").content.decode()


def test_it_shows_a_services_database_side_panel(alice_client, snapped):
    _, svc = snapped
    r = alice_client.get(f"/services/{svc.pk}/database-side/", headers={"HX-Request": "true"})
    html = r.content.decode()
    assert r.status_code == 200 and 'id="database-side"' in html and "<html" not in html
    assert "orders-db" in html


def test_it_shows_a_banner_in_raw_query_text_mode(alice_client, snapped, settings):
    settings.QUERY_TEXT_MODE = "raw"
    assert b"Raw query text is being stored" in alice_client.get("/servers/orders-db/").content


# --- cancel / terminate ---------------------------------------------------------------

@pytest.fixture
def signal_setup(snapped, settings, alice):
    db, _ = snapped
    settings.ALLOW_BACKEND_SIGNALS = True
    db.admin_user = "root"
    db.save()
    alice.user_permissions.add(Permission.objects.get(codename="signal_backend"))
    row = [s for s in db.last_sessions if s["application_name"] == "hostile-svc"][0]
    return db, row


def test_it_offers_no_signal_by_default(alice_client, snapped):
    db, _ = snapped
    row = db.last_sessions[0]
    url = f"/servers/orders-db/sessions/{row['pid']}/signal/?action=cancel&backend_start={row['backend_start']}"
    assert alice_client.get(url).status_code == 404
    assert b"terminate</a>" not in alice_client.get("/servers/orders-db/").content


def test_it_refuses_a_signal_without_the_permission(client, signal_setup, django_user_model):
    db, row = signal_setup
    carol = django_user_model.objects.create_user("carol", password="x")
    client.force_login(carol)
    url = f"/servers/orders-db/sessions/{row['pid']}/signal/"
    assert client.post(url, {"action": "cancel", "backend_start": row["backend_start"]}).status_code == 403
    assert not BackendAction.objects.exists()


def test_it_cancels_after_confirmation_and_leaves_an_audit_entry(alice_client, signal_setup, alice):
    db, row = signal_setup
    assert b"terminate</a>" in alice_client.get("/servers/orders-db/").content
    url = f"/servers/orders-db/sessions/{row['pid']}/signal/"
    r = alice_client.get(url, {"action": "cancel", "backend_start": row["backend_start"]})
    html = r.content.decode()
    assert r.status_code == 200 and "Cancel backend" in html and 'method="post"' in html
    assert_hostile_escaped(html)
    assert not BackendAction.objects.exists()  # GET only confirms
    r = alice_client.post(url, {"action": "cancel", "backend_start": row["backend_start"]})
    assert r.status_code == 302
    audit = BackendAction.objects.get()
    assert audit.user == alice and audit.action == "cancel" and audit.succeeded and audit.pid == row["pid"]
    assert "4111" not in audit.query_text


def test_it_sends_no_signal_to_a_session_no_longer_listed(alice_client, signal_setup):
    url = "/servers/orders-db/sessions/1/signal/"
    r = alice_client.post(url, {"action": "terminate", "backend_start": "2020-01-01T00:00:00+00:00"})
    assert r.status_code == 302 and not BackendAction.objects.exists()


def test_it_refuses_a_signal_post_without_csrf_token(signal_setup, alice):
    from django.test import Client

    db, row = signal_setup
    c = Client(enforce_csrf_checks=True)
    c.force_login(alice)
    r = c.post(f"/servers/orders-db/sessions/{row['pid']}/signal/", {"action": "cancel", "backend_start": row["backend_start"]})
    assert r.status_code == 403


def test_it_loads_the_database_side_panel_on_the_service_page(alice_client, snapped):
    _, svc = snapped
    html = alice_client.get(f"/services/{svc.pk}/").content.decode()
    assert f'hx-get="/services/{svc.pk}/database-side/"' in html


def test_it_lists_databases_in_as_many_queries_whatever_their_number(alice_client, snapped, django_assert_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    monitored, _ = snapped
    alice_client.get("/databases/")  # warm the session
    with CaptureQueriesContext(connection) as one:
        alice_client.get("/databases/")
    # Two more databases with a copy of the same snapshot each.
    for name in ("second-db", "third-db"):
        copy_newest_snapshot(monitored, name)
    with django_assert_num_queries(len(one.captured_queries)):
        html = alice_client.get("/databases/").content.decode()
    assert "second-db" in html and "third-db" in html


def test_it_fills_the_service_panel_in_as_many_queries_whatever_the_databases(alice_client, snapped, django_assert_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    monitored, svc = snapped
    url = f"/services/{svc.pk}/database-side/"
    alice_client.get(url)  # warm the session
    with CaptureQueriesContext(connection) as one:
        html = alice_client.get(url).content.decode()
    assert monitored.name in html
    from poolboard.databases.models import Snapshot

    [row] = Snapshot.objects.service_side(svc)["rows"]
    # The fixture's one hostile-svc session runs pg_sleep: active, and counted once.
    assert (row["states"].total, row["states"].active, row["states"].idle_in_tx) == (1, 1, 0)
    for name in ("second-db", "third-db"):
        copy_newest_snapshot(monitored, name)
    with django_assert_num_queries(len(one.captured_queries)):
        html = alice_client.get(url).content.decode()
    assert "second-db" in html and "third-db" in html


def test_it_refuses_to_signal_a_session_without_a_known_start(alice_client, signal_setup):
    """A pid alone may name a later connection (pid reuse): nothing is sent, the page says why."""
    from poolboard.databases.models import BackendAction

    _, row = signal_setup
    url = f"/servers/orders-db/sessions/{row['pid']}/signal/"
    r = alice_client.post(url, {"action": "terminate", "backend_start": ""}, follow=True)
    assert "has no known start time (backend_start)" in r.content.decode()
    assert not BackendAction.objects.exists()
