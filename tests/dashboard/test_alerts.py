"""The Alerts page, a rule's page with its state history, the nav's firing count, the service
page's alerts panel and the "silence 1 h" button."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from poolboard.alerts.models import AlertInstance
from poolboard.notify.models import Silence
from poolboard.notify.silences import silenced_by
from tests.dashboard.alert_factories import alert_fleet, instance, rule, transition

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet(make_service):
    return alert_fleet(make_service)


def test_it_lists_firing_before_pending_with_value_since_rule_and_links(alice_client, fleet):
    page = alice_client.get("/alerts/").content.decode()
    assert "<h1>Alerts</h1>" in page
    assert "1 firing" in page and "1 pending" in page
    firing, pending = page.index(f'id="alert-{fleet["firing"].pk}"'), page.index(f'id="alert-{fleet["pending"].pk}"')
    assert firing < pending
    row = page[firing:pending]
    assert "PoolSaturated" in row and f'href="/alerts/rules/{fleet["saturated"].pk}/"' in row
    assert f'href="/services/{fleet["search"].pk}/"' in row and ">search</a>" in row
    assert "100 %" in row and "&gt; 90 %" in row  # value, and the condition it breaches
    assert "firing since " + timezone.localtime(fleet["firing"].fired_at).strftime("%H:%M") in row
    assert "critical" in row
    assert "pending since" in page[pending:]
    assert "checkout" not in page  # inactive instances are not alerts


def test_it_answers_htmx_with_the_table_alone(alice_client, fleet):
    partial = alice_client.get("/alerts/?sort=rule", headers={"HX-Request": "true"}).content.decode()
    assert partial.lstrip().startswith('<section id="alerts-table"') and "<h1>" not in partial
    assert 'hx-trigger="every 10s, visibilitychange from:document"' in partial
    assert "sort=rule" in partial  # the poll keeps the sort
    assert partial.index("PoolSaturated") < partial.index("PoolWaiting")


def test_it_says_nothing_firing(alice_client, make_service):
    page = alice_client.get("/alerts/").content.decode()
    assert "Nothing firing" in page and "0 firing" in page


def test_it_sorts_and_pages_many_alerts(alice_client, make_service):
    r = rule()
    services = [make_service(f"svc-{i:03d}", instances=1, max=10, in_use=10) for i in range(60)]
    for i, s in enumerate(services):
        instance(r, s, "firing" if i % 2 else "pending", minutes=100 - i, fired_minutes=1 if i % 2 else None, value=100.0)
    page = alice_client.get("/alerts/").content.decode()
    assert page.count('class="alert-row') == 50 and "page 1 of 2" in page
    # firing first (the odd ones), the longest active first
    assert page.index(">svc-001<") < page.index(">svc-059<") < page.index(">svc-000<")
    second = alice_client.get("/alerts/?page=2").content.decode()
    assert second.count('class="alert-row') == 10 and "state-pending" in second and "state-firing" not in second
    by_service = alice_client.get("/alerts/?sort=service").content.decode()
    assert by_service.index(">svc-000<") < by_service.index(">svc-001<") < by_service.index(">svc-002<")
    junk = alice_client.get("/alerts/?sort=%3Cscript%3E&page=zzz")
    assert junk.status_code == 200 and page.count('class="alert-row') == 50


def test_it_marks_a_silenced_alert(alice_client, fleet):
    now = timezone.now()
    Silence.objects.create(matchers=[{"name": "service", "value": "search", "isRegex": False, "isEqual": True}],
                           starts_at=now - timedelta(minutes=1), ends_at=now + timedelta(minutes=30),
                           created_by="bob", comment="deploying")
    page = alice_client.get("/alerts/").content.decode()
    row = page[page.index(f'id="alert-{fleet["firing"].pk}"'):page.index(f'id="alert-{fleet["pending"].pk}"')]
    assert "silenced until" in row and "deploying" in row
    assert "silenced until" not in page[page.index(f'id="alert-{fleet["pending"].pk}"'):]


def test_it_silences_an_alert_for_an_hour_with_one_post(client, bob, fleet):
    client.force_login(bob)
    firing = fleet["firing"]
    page = client.get("/alerts/").content.decode()
    assert f'action="/alerts/{firing.pk}/silence/"' in page and "silence 1 h" in page
    response = client.post(f"/alerts/{firing.pk}/silence/", {"next": "/alerts/?sort=rule"})
    assert response.status_code == 302 and response["Location"] == "/alerts/?sort=rule"
    silence = Silence.objects.get()
    assert {m["name"]: m["value"] for m in silence.matchers} == firing.labels
    assert all(m["isEqual"] and not m["isRegex"] for m in silence.matchers)
    assert silence.created_by == "bob"
    assert abs((silence.ends_at - silence.starts_at).total_seconds() - 3600) < 1
    now = timezone.now()
    assert silenced_by(firing.labels, now) == silence
    assert silenced_by(fleet["pending"].labels, now) is None  # only that alert
    after = client.get("/alerts/?sort=rule").content.decode()
    assert "Silenced PoolSaturated (service=search) until" in after
    row = after[after.index(f'id="alert-{firing.pk}"'):]
    assert "silenced until" in row[:2000]


def test_it_sends_the_silence_button_back_to_a_local_page_only(client, bob, fleet):
    client.force_login(bob)
    response = client.post(f"/alerts/{fleet['firing'].pk}/silence/", {"next": "https://evil.example/"})
    assert response["Location"] == "/alerts/"


def test_it_refuses_to_silence_without_permission_csrf_or_post(alice_client, bob, fleet):
    url = f"/alerts/{fleet['firing'].pk}/silence/"
    assert alice_client.post(url).status_code == 403  # alice may look, not silence
    assert "silence 1 h" not in alice_client.get("/alerts/").content.decode()
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(bob)
    assert strict.post(url).status_code == 403
    assert strict.get(url).status_code == 405
    assert Silence.objects.count() == 0


def test_it_shows_a_rule_with_its_definition_instances_and_state_history(client, bob, fleet):
    client.force_login(bob)
    r, firing = fleet["saturated"], fleet["firing"]
    r.keep_firing_for_s = 600
    r.origin = "Default: saturated pools (reliability.md §4)."
    r.last_evaluated_at = r.last_error_at = timezone.now()
    r.last_error = "cardinality cap: 140 active instances > max_instances 100"
    r.save()
    transition(firing, 1, 17, "inactive", "pending", 95.0)
    transition(firing, 2, 12, "pending", "firing", 100.0)
    page = client.get(f"/alerts/rules/{r.pk}/").content.decode()
    assert "<h1>PoolSaturated" in page
    assert "utilization &gt; 90" in page and "for 5m" in page and "keeps firing for 10m" in page
    assert "saturated pools (reliability.md §4)" in page
    assert "cardinality cap: 140 active instances &gt; max_instances 100" in page  # the rule's health
    assert f'href="/admin/alerts/alertrule/{r.pk}/change/"' in page
    assert f'href="/admin/alerts/alertrule/{r.pk}/backtest/"' in page
    assert f'id="alert-{firing.pk}"' in page
    history = page[page.index("State history"):]
    assert history.index("pending</span></td>\n        <td><span class=\"state state-firing\">firing") < history.index(
        "inactive</span></td>\n        <td><span class=\"state state-pending\">pending")  # newest first
    assert ">100 %<" in history and ">95 %<" in history
    partial = client.get(f"/alerts/rules/{r.pk}/", headers={"HX-Request": "true"}).content.decode()
    assert partial.lstrip().startswith('<section id="rule-state"') and "<h1>" not in partial and "State history" in partial


def test_it_says_a_quiet_rule_never_fired(alice_client, fleet):
    page = alice_client.get(f"/alerts/rules/{fleet['waiting'].pk}/").content.decode()
    assert "pending since" in page  # billing
    quiet = rule("PoolTimeouts", signal="timeouts", threshold=0, for_s=0)
    page = alice_client.get(f"/alerts/rules/{quiet.pk}/").content.decode()
    assert "Nothing firing" in page and "has never been pending or firing" in page
    assert alice_client.get("/alerts/rules/999999/").status_code == 404


def test_it_counts_firing_alerts_in_the_nav(alice_client, fleet):
    page = alice_client.get("/leaks/").content.decode()
    nav = page[page.index("<nav>"):page.index("</nav>")]
    assert 'href="/alerts/"' in nav and '<span id="nav-firing" class="count" title="1 firing">1</span>' in nav
    instance(fleet["waiting"], fleet["search"], "firing", minutes=5, fired_minutes=3, value=4.0)
    page = alice_client.get("/alerts/").content.decode()
    nav = page[page.index("<nav>"):page.index("</nav>")]
    assert 'title="2 firing">2</span>' in nav and 'aria-current="page">Alerts' in nav
    # each refresh of the table brings the top bar's count along (out of band)
    partial = alice_client.get("/alerts/", headers={"HX-Request": "true"}).content.decode()
    assert '<span id="nav-firing" class="count" title="2 firing" hx-swap-oob="true">2</span>' in partial
    AlertInstance.objects.filter(state="firing").update(state="inactive")
    page = alice_client.get("/").content.decode()
    nav = page[page.index("<nav>"):page.index("</nav>")]
    assert 'href="/alerts/"' in nav and 'title="0 firing" hidden>0</span>' in nav


def test_the_nav_count_costs_one_query_whatever_the_number_of_alerts(rf, alice, fleet, django_assert_num_queries):
    from poolboard.dashboard.context_processors import firing_alerts

    request = rf.get("/")
    request.user = alice
    count = firing_alerts(request)["firing_alerts"]
    with django_assert_num_queries(1):
        assert count() == 1 and count() == 1  # asked twice (the badge and its title), counted once


def test_it_shows_a_service_its_alerts(alice_client, fleet):
    search = fleet["search"]
    transition(fleet["firing"], 1, 17, "inactive", "pending", 95.0)
    transition(fleet["firing"], 2, 12, "pending", "firing", 100.0)
    page = alice_client.get(f"/services/{search.pk}/").content.decode()
    panel = page[page.index('id="service-alerts"'):]
    panel = panel[:panel.index("</section>")]
    assert "PoolSaturated" in panel and "firing since" in panel and "PoolWaiting" not in panel
    assert "Transitions in the last 7 days (2)" in panel
    partial = alice_client.get(f"/services/{search.pk}/alerts/", headers={"HX-Request": "true"}).content.decode()
    assert partial.lstrip().startswith('<section id="service-alerts"') and "PoolSaturated" in partial
    quiet = alice_client.get(f"/services/{fleet['checkout'].pk}/alerts/").content.decode()
    assert "Nothing firing or pending for checkout" in quiet
    assert alice_client.get("/services/999999/alerts/").status_code == 404


# --- the backtest on the rule's admin page ----------------------------------------------

TICK = 15  # settings.COLLECT_INTERVAL in tests


@pytest.fixture
def waiting_history(make_service, settings):
    """An hour of samples, one a tick: search has 2 callers waiting for 10 minutes (ticks 40-79)
    and 1 for one minute (ticks 160-163), none otherwise; checkout never has any."""
    from tests.fleet.factories import write_samples

    settings.COLLECT_INTERVAL = TICK
    search = make_service("search", instances=1, max=10, in_use=5, pending=0)
    checkout = make_service("checkout", instances=1, max=10, in_use=2, pending=0)
    start = (int(timezone.now().timestamp()) // TICK) * TICK - 239 * TICK
    rows = []
    for i in range(240):
        waiting = 2.0 if 40 <= i < 80 else 1.0 if 160 <= i < 164 else 0.0
        rows.append((search.pools.get().pk, start + i * TICK, {"max": 10.0, "in_use": 10.0 if waiting else 5.0, "pending": waiting}))
        rows.append((checkout.pools.get().pk, start + i * TICK, {"max": 10.0, "in_use": 2.0, "pending": 0.0}))
    write_samples(rows)
    waiting = rule("PoolWaiting", signal="waiting", threshold=0, for_s=120, severity="warning")
    return {"search": search, "checkout": checkout, "start": start, "rule": waiting}


def backtest_page(client, rule, query="", **headers) -> str:
    response = client.get(f"/admin/alerts/alertrule/{rule.pk}/backtest/?range=6h{query}", headers=headers)
    assert response.status_code == 200
    return response.content.decode()


def figure(page: str, css_class: str) -> str:
    return page.split(f'<b class="{css_class}">', 1)[1].split("</b>", 1)[0]


def test_it_backtests_waiting_for_2m_over_the_stored_samples(client, bob, waiting_history):
    from datetime import datetime
    from datetime import timezone as dt_timezone

    client.force_login(bob)
    page = backtest_page(client, waiting_history["rule"])
    assert "<code>waiting &gt; 0</code> for 2m" in page
    assert "2 of 2 matched services" in page
    # 10 minutes waiting: pending at tick 40, firing 2 m later (tick 48), resolved at tick 80
    assert figure(page, "fired") == "1" and figure(page, "notifications") == "2" and figure(page, "firing-time") == "8m"
    at = lambda tick: datetime.fromtimestamp(waiting_history["start"] + tick * TICK, tz=dt_timezone.utc)  # noqa: E731
    local = lambda tick, fmt: timezone.localtime(at(tick)).strftime(fmt)  # noqa: E731
    episodes = page[page.index('<table class="episodes">'):]
    first = episodes[episodes.index('<tr class="fired">'):]
    assert local(40, "%Y-%m-%d %H:%M:%S") in first and local(48, "%H:%M:%S") in first and local(80, "%H:%M:%S") in first
    # the one-minute blip goes pending and back: no notification
    blip = episodes[episodes.index('<tr class="pending-only">'):]
    assert local(160, "%Y-%m-%d %H:%M:%S") in blip and "never (cleared within for)" in blip
    assert "1 time pending and cleared within <em>for</em> (nothing sent)" in page  # listed apart from the firings
    # the for sweep: 0 s would have fired for the blip too, 1 m as 2 m, 15 m never
    assert "<code>0s</code> → 2 fired, 4 notifications" in page and "<code>1m</code> → 1 fired, 2 notifications" in page
    assert "<code>15m</code> → 0 fired" in page
    # the chart's data: both services' signal, the threshold and the spans
    import json

    data = json.loads(page.split('<script id="backtest-data" type="application/json">', 1)[1].split("</script>", 1)[0])
    assert data["threshold"] == 0 and data["comparator"] == ">"
    assert [s["label"] for s in data["series"]] == ["search", "checkout"]  # the one that fires first
    assert max(v for v in data["series"][0]["values"] if v is not None) == 2
    firing = [b for b in data["bands"] if b["state"] == "firing"]
    assert [(b["start"], b["end"]) for b in firing] == [(at(48).timestamp(), at(80).timestamp())]


def test_it_previews_an_unsaved_threshold_or_for(client, bob, waiting_history):
    client.force_login(bob)
    rule = waiting_history["rule"]
    longer = backtest_page(client, rule, "&for_s=15m&comparator=%3E&threshold=0")
    assert "unsaved edit: for_s" in longer and figure(longer, "fired") == "0" and figure(longer, "notifications") == "0"
    higher = backtest_page(client, rule, "&threshold=1&for_s=300")
    assert "unsaved edit: threshold, for_s" in higher
    assert figure(higher, "fired") == "1" and figure(higher, "firing-time") == "5m"
    assert 'class="pending-only"' not in higher  # 1 waiting is not > 1
    rule.refresh_from_db()
    assert (rule.threshold, rule.for_s) == (0.0, 120)  # nothing saved
    partial = backtest_page(client, rule, "&threshold=1", **{"HX-Request": "true"})
    assert partial.lstrip().startswith('<section id="backtest"') and "<html" not in partial


@pytest.mark.parametrize(("query", "message"), [
    ("&threshold=abc", "threshold: &#x27;abc&#x27; is not a number"),
    ("&threshold=nan", "threshold: &#x27;nan&#x27; is not a finite number"),
    ("&for_s=-5", "for: give a duration of 0 or more"),
    ("&for_s=soon", "for: &#x27;soon&#x27; is neither seconds nor a duration"),
    ("&comparator=%3D%3E", "comparator: &#x27;=&gt;&#x27; is not one of"),
    ("&range=1y", "range: &#x27;1y&#x27; is not one of 6h, 24h, 7d"),
])
def test_it_says_what_is_wrong_with_a_preview(client, bob, waiting_history, query, message):
    client.force_login(bob)
    page = backtest_page(client, waiting_history["rule"], query)
    assert message in page and 'role="alert"' in page


def test_it_says_which_signals_it_cannot_replay(client, bob, db):
    client.force_login(bob)
    page = backtest_page(client, rule("DatabaseBudget", signal="budget", threshold=80, for_s=300))
    assert "is not replayed (yet)" in page


def test_it_shows_the_backtest_on_the_rules_change_form_for_staff_only(client, bob, alice, waiting_history):
    rule = waiting_history["rule"]
    client.force_login(alice)
    assert client.get(f"/admin/alerts/alertrule/{rule.pk}/backtest/").status_code == 302  # to the admin login
    client.force_login(bob)
    form = client.get(f"/admin/alerts/alertrule/{rule.pk}/change/").content.decode()
    assert f'hx-get="/admin/alerts/alertrule/{rule.pk}/backtest/"' in form
    assert "change from:#id_threshold" in form and "change from:#id_for_s" in form


def test_the_backtest_makes_the_transitions_the_live_evaluation_made(client, bob, make_service, settings):
    """The same samples, once through the live evaluation tick by tick (the pools' newest values
    as collection leaves them) and once through the backtest: the same transitions at the same
    instants — with keep_firing_for, a 30 s dip, a flapping stretch and a gap in one service."""
    from datetime import datetime
    from datetime import timezone as dt_timezone

    from poolboard.alerts.evaluate import evaluate_rules
    from poolboard.alerts.models import AlertRule, AlertTransition
    from poolboard.fleet.models import Pool
    from tests.fleet.factories import write_samples

    settings.COLLECT_INTERVAL = TICK
    AlertRule.objects.update(enabled=False)
    waiting = rule("PoolWaiting", signal="waiting", threshold=0, for_s=60, keep_firing_for_s=60, severity="warning")
    search = make_service("search", instances=1, max=10, in_use=5, pending=0)
    checkout = make_service("checkout", instances=1, max=10, in_use=2, pending=0)
    pools = {search.pk: search.pools.get(), checkout.pk: checkout.pools.get()}
    start = (int(timezone.now().timestamp()) // TICK) * TICK - 159 * TICK

    def search_waiting(i: int) -> float | None:
        if 60 <= i < 66:
            return None  # search's exporter gone for 90 s: stale, then no data
        if 10 <= i < 30 or 32 <= i < 45:
            return 2.0  # 5 minutes, a 30 s dip (kept firing), 3 more minutes
        if 80 <= i < 100:
            return float(i % 2)  # flapping every tick
        return 3.0 if 50 <= i < 70 else 0.0

    rows = []
    for i in range(160):
        at = datetime.fromtimestamp(start + i * TICK, tz=dt_timezone.utc)
        value = search_waiting(i)
        if value is not None:
            rows.append((pools[search.pk].pk, start + i * TICK, {"max": 10.0, "in_use": 5.0, "pending": value}))
            Pool.objects.filter(pk=pools[search.pk].pk).update(pending=value, in_use=5.0, max=10.0, sampled_at=at)
        rows.append((pools[checkout.pk].pk, start + i * TICK, {"max": 10.0, "in_use": 2.0, "pending": 0.0}))
        Pool.objects.filter(pk=pools[checkout.pk].pk).update(pending=0.0, in_use=2.0, max=10.0, sampled_at=at)
        evaluate_rules(at)
    write_samples(rows)
    live = list(AlertTransition.objects.filter(rule=waiting).order_by("at", "id")
                .values_list("instance__service__name", "at", "from_state", "to_state"))
    assert len(live) >= 8  # enough happened to compare

    from poolboard.alerts.admin_backtest import params_from, run_backtest

    run = run_backtest(waiting, params_from(waiting, {"range": "6h"}), timezone.now())
    replayed = sorted((s.service.name, at, before, after) for s in run.series for at, before, after, _ in s.result.transitions)
    assert replayed == sorted(live)


def test_it_replays_the_rollups_before_the_raw_samples(client, bob, waiting_history):
    """Days of 5-minute rollups (no raw samples: older than the raw retention, or the demo's made-up
    weeks), then the raw hour: both replayed, and the day without any data between them ends
    what was firing with no data instead of counting it as firing."""
    from datetime import datetime, timedelta
    from datetime import timezone as dt_timezone

    from poolboard.history.models import PoolRollup5m

    pool = waiting_history["search"].pools.get()
    day = datetime.fromtimestamp((waiting_history["start"] // 300) * 300, tz=dt_timezone.utc) - timedelta(days=3)
    for k in range(48):  # 4 hours of buckets; 30 minutes with callers waiting, the last 10 minutes too
        waiting = 2.0 if 12 <= k < 18 or k >= 46 else 0.0
        PoolRollup5m.objects.create(pool=pool, bucket=day + timedelta(minutes=5 * k), samples=20, max_avg=10.0,
                                    in_use_avg=10.0 if waiting else 5.0, pending_max=waiting)  # as the demo's weeks: no average
    client.force_login(bob)
    page = backtest_page(client, waiting_history["rule"], "&range=7d")
    assert "the 5-minute rollups until" in page
    # rollups: pending at the end of bucket 12, firing 5 minutes later (one bucket >= 2 m), resolved at
    # the end of bucket 18: 25 minutes; the last two buckets fire and end with the data (no data) 5 m
    # after their end; then the raw hour's 8 minutes (one evaluation a minute in a 7-day replay)
    assert figure(page, "fired") == "3"
    episodes = page[page.index('<table class="episodes">'):]
    first = episodes[episodes.index('<tr class="fired">'):]
    assert timezone.localtime(day + timedelta(minutes=65)).strftime("%Y-%m-%d %H:%M:%S") in first
    assert timezone.localtime(day + timedelta(minutes=95)).strftime("%H:%M:%S") in first and "<td class=\"num\">25m</td>" in first
    second = first[first.index('<tr class="fired">', 10):]
    assert timezone.localtime(day + timedelta(minutes=240 + 5)).strftime("%H:%M:%S") in second  # no data, not days of firing
    assert "<td class=\"num\">5m</td>" in second


def test_it_replays_idle_in_transaction_and_leak_findings_from_their_stored_spans(client, bob, waiting_history):
    """An idle-in-transaction episode of search (began at tick 20, seen from tick 22, ended at
    tick 30) and a leak finding open from tick 100 to 120, replayed at the samples' ticks."""
    from datetime import datetime
    from datetime import timezone as dt_timezone

    from poolboard.databases.models import Episode, MonitoredServer
    from poolboard.diagnosis.models import Finding

    at = lambda tick: datetime.fromtimestamp(waiting_history["start"] + tick * TICK, tz=dt_timezone.utc)  # noqa: E731
    search = waiting_history["search"]
    server = MonitoredServer.objects.create(name="orders-db", host="127.0.0.1", port=5432, dbname="orders", user="root")
    Episode.objects.create(server=server, kind="idle_in_transaction", pid=4242, started=at(20), first_seen=at(22),
                           last_seen=at(29), ended=at(30), peak_age_s=150, service=search, application_name="search")
    Finding.objects.create(service=search, kind="leak", severity="crit", confidence=0.9, opened_at=at(100),
                           last_seen_at=at(119), closed_at=at(120), summary="leak", fix="Return it.")
    client.force_login(bob)
    idle = backtest_page(client, rule("IdleInTransaction", signal="idle_in_transaction_s", threshold=60, for_s=0))
    # age > 60 s from tick 25 (75 s) until the episode ends at tick 30
    assert figure(idle, "fired") == "1" and figure(idle, "firing-time") == "1m"
    episodes = idle[idle.index('<table class="episodes">'):]
    assert timezone.localtime(at(25)).strftime("%H:%M:%S") in episodes and timezone.localtime(at(30)).strftime("%H:%M:%S") in episodes
    leak = backtest_page(client, rule("LeakSuspected", signal="finding", finding_kind="leak", threshold=0, for_s=0))
    assert figure(leak, "fired") == "1" and figure(leak, "firing-time") == "5m" and figure(leak, "notifications") == "2"


def test_it_reads_a_rollup_bucket_on_the_side_that_breaches():
    from poolboard.alerts.admin_backtest import rollup_sides

    assert rollup_sides("waiting", ">") == {"in_use": "max", "pending": "max"}
    assert rollup_sides("utilization", "<=") == {"in_use": "min", "pending": "min"}
    assert rollup_sides("available", "<") == {"in_use": "max", "pending": "min"}  # more in use, fewer available
    assert rollup_sides("waiting", "==") == {"in_use": "avg", "pending": "avg"}
