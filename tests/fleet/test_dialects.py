"""Every built-in dialect, served as real exposition text to one real Prometheus.

One Prometheus for the module (1 s scrapes) scrapes one exporter per dialect. The
source lists no presets: discovery finds them, collection reads what it found, and
the canonical numbers (unit conversions and derived fields included) are checked.
Counters grow at known rates (tests/fleet/exposition.py): increase() over the 10 s
window is checked to 15 % (scrape jitter), ratios of rates exactly.
"""

from __future__ import annotations

import pytest

from poolboard.fleet.collection import collect_source, current_slot
from poolboard.fleet.discovery import discover_source
from poolboard.fleet.models import Pool, PrometheusSource, Service
from poolboard.lib import promql
from poolboard.lib.pools import FIELDS
from poolboard.lib.presets import BUILTIN_PRESETS
from tests.fleet.exposition import RatedExposition, dialect
from tests.prom import PrometheusServer
from tests.wait import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.prometheus, pytest.mark.usefixtures("empty_raw_samples")]

WINDOW_S = 10

# scrape job (= service) -> fixture file
JOBS = {
    "orders": "db_pool",
    "notify": "asyncpg",
    "reports": "sqlalchemy",
    "search": "hikaricp",
    "billing": "hikaricp_tracker",
    "inventory": "spring_jdbc",
    "payments": "go_sql",
    "ledger-go": "pgxpool",
    "catalog": "otelsql",
    "checkout": "otel_old",
    "pricing": "otel_old_sqlalchemy",
    "ledger": "otel",
    "accounts": "npgsql",
    "shipping": "npgsql10",
    "web": "node_postgres",
    "pgbouncer-main": "pgbouncer",
    "pgbouncer-legacy": "pgbouncer_legacy",
    "pgbouncer-edge": "pgbouncer_spreaker",
    "broken": "nan_inf",
    "escapes": "escapes",
}

# The preset discovery must choose for each service (escapes exports no pool metric).
EXPECTED_PRESETS = {
    "orders": "db_pool",
    "notify": "asyncpg",
    "reports": "sqlalchemy",
    "search": "hikaricp",  # also exports Spring's jdbc_connections_*: the specific preset wins
    "billing": "hikaricp_tracker",
    "inventory": "spring_jdbc",
    "payments": "go_sql",
    "ledger-go": "pgxpool",
    "catalog": "otelsql",
    "checkout": "otel_old",
    "pricing": "otel_old",
    "ledger": "otel",
    "accounts": "npgsql",  # matches otel_old's marker too
    "shipping": "npgsql10",
    "web": "node_postgres",
    "pgbouncer-main": "pgbouncer",
    "pgbouncer-legacy": "pgbouncer",
    "pgbouncer-edge": "pgbouncer_spreaker",
    "broken": "hikaricp",
}


def per_window(rate_per_s: float):
    """increase() over the window of a counter growing at rate_per_s."""
    return pytest.approx(rate_per_s * WINDOW_S, rel=0.15)


def rate(value: float):
    return pytest.approx(value, rel=0.15)


def exact(value: float):
    return pytest.approx(value, rel=1e-6)


# (service, pool) -> canonical values; every field not listed must be absent (None).
EXPECTED = {
    ("orders", "orders-main"): dict(
        max=20, in_use=9, idle=3, pending=2, timeouts=per_window(0.5), acquisitions=per_window(12), acquire_s=exact(0.2 / 4),
        hold_s=exact(0.3 / 12), conns_opened=per_window(0.1), conns_closed=per_window(0.1),
    ),
    # asyncpg: in use = get_size() - get_idle_size(); no max.
    ("notify", "default"): dict(in_use=5, idle=3),
    ("reports", "reports"): dict(max=10, in_use=12, idle=0, overflow=2),
    ("reports", "reports-replica"): dict(max=10, in_use=3, idle=0, overflow=0),  # overflow() = -7 -> 0
    ("search", "HikariPool-1"): dict(
        max=10, min=10, in_use=10, idle=0, pending=7, timeouts=per_window(0.3), acquisitions=per_window(5), acquire_s=exact(0.25),
        hold_s=exact(0.1), conns_opened=per_window(0.2),
    ),
    # ns and ms summaries -> seconds
    ("billing", "billing-db"): dict(
        max=15, min=5, in_use=6, idle=4, pending=0, timeouts=0, acquisitions=per_window(100), acquire_s=exact(2e6 / 100 / 1e9),
        hold_s=exact(300 / 100 / 1e3), conns_opened=per_window(0.1),
    ),
    ("inventory", "dataSource"): dict(max=50, min=10, in_use=12, idle=8),
    # max 0 = unlimited (stored as reported); waiters by Little's law = rate(wait seconds)
    ("payments", "payments"): dict(
        max=0, in_use=5, idle=2, pending=rate(0.5), acquire_s=exact(0.25), conns_closed=per_window(0.3),
    ),
    ("ledger-go", "ledger"): dict(
        max=16, in_use=9, idle=1, pending=rate(0.2), timeouts=per_window(0.2), acquisitions=per_window(50),
        acquire_s=exact(5e7 / 50 / 1e9),
        conns_opened=per_window(0.1), conns_closed=per_window(0.1),
    ),
    ("catalog", "catalog"): dict(
        max=30, in_use=4, idle=6, pending=rate(0.05), acquire_s=exact(50 / 1 / 1e3), conns_closed=per_window(0.3),
    ),
    ("checkout", "HikariPool-1"): dict(
        max=10, min=10, in_use=7, idle=3, pending=1, timeouts=per_window(0.1), acquisitions=per_window(10),
        acquire_s=exact(30 / 10 / 1e3),
        hold_s=exact(500 / 10 / 1e3), conns_opened=per_window(0.2),
    ),
    ("pricing", "postgresql://db:5432/pricing"): dict(in_use=2, idle=5),
    ("ledger", "ledger"): dict(
        max=10, min=2, in_use=4, idle=6, pending=0, timeouts=0, acquisitions=per_window(20), acquire_s=exact(0.1 / 20),
        hold_s=exact(2 / 20),
        conns_opened=per_window(0.3),
    ),
    ("accounts", "accounts"): dict(max=100, in_use=3, idle=7, pending=0, timeouts=0, conns_opened=per_window(0.3)),
    ("shipping", "shipping"): dict(max=12, in_use=11, idle=1, pending=4, timeouts=per_window(0.2), conns_opened=per_window(0.1)),
    ("web", "shop/db-primary:5432"): dict(max=10, in_use=6, idle=2, pending=3, conns_opened=per_window(0.2), conns_closed=per_window(0.1)),
    ("web", "shop/db-replica:5432"): dict(max=10, in_use=1, idle=2, pending=0, conns_opened=0, conns_closed=0),
    # pool_size 20 applies to each of the 2 user pools of the database
    # acquisitions = pooled transactions (each takes a server connection in transaction pooling)
    ("pgbouncer-main", "orders"): dict(
        max=40, in_use=20, idle=3, pending=5, acquisitions=per_window(100), acquire_s=exact(0.5 / 100), hold_s=exact(2 / 100),
    ),
    # no transactions: 0 acquisitions, and 0/0 times are absent
    ("pgbouncer-main", "pgbouncer"): dict(max=2, in_use=0, idle=0, pending=0, acquisitions=0),
    ("pgbouncer-legacy", "users"): dict(
        max=8, in_use=4, idle=3, pending=0, acquisitions=per_window(10), acquire_s=exact(0.02 / 10), hold_s=exact(0.4 / 10),
    ),
    ("pgbouncer-edge", "orders"): dict(
        max=25, in_use=7, idle=3, pending=0, acquisitions=per_window(50), acquire_s=exact(25000 / 50 / 1e6),
        hold_s=exact(1e5 / 50 / 1e6),
    ),
    # +Inf, NaN and -Inf count as no sample
    ("broken", "broken"): dict(idle=3),
}


@pytest.fixture(scope="module")
def fleet():
    servers = {job: RatedExposition(dialect(name)) for job, name in JOBS.items()}
    prom = PrometheusServer({job: [s.address] for job, s in servers.items()}, scrape_interval="1s")
    prom.exporters = servers
    try:
        # Every counter needs a full window of scrapes for increase() to be whole.
        def scraped_a_full_window() -> bool:
            got = prom.query(f"min(count_over_time(up[{WINDOW_S}s]))")
            return bool(got) and float(got[0]["value"][1]) >= WINDOW_S - 1 and len(prom.query("up == 1")) == len(JOBS)

        wait_until(scraped_a_full_window, timeout=60, interval=0.5, what="a full window of scrapes of every exporter")
        yield prom
    finally:
        prom.close()
        for server in servers.values():
            server.close()


def test_every_dialect_is_discovered_and_collected_with_canonical_numbers(fleet) -> None:
    source = PrometheusSource.objects.create(name="fleet", url=fleet.url, presets=[], rate_window=f"{WINDOW_S}s")

    found = discover_source(source)

    assert found.status == "ok", found.error
    assert found.services == EXPECTED_PRESETS
    assert sorted(Service.objects.values_list("name", "preset")) == sorted(EXPECTED_PRESETS.items())
    # One marker query, then one identity query per preset found.
    assert found.queries == 1 + len(set(EXPECTED_PRESETS.values()))
    source.refresh_from_db()
    assert set(source.discovered_presets) == set(EXPECTED_PRESETS.values())
    assert {(p.service.name, p.name) for p in Pool.objects.select_related("service")} == set(EXPECTED)

    result = collect_source(source, current_slot())

    assert result.status == "ok", result.error
    assert result.queries == sum(len(BUILTIN_PRESETS[name].queries) for name in set(EXPECTED_PRESETS.values()))
    assert result.samples == len(EXPECTED) and result.new_services == []
    pools = {(p.service.name, p.name): p for p in Pool.objects.select_related("service")}
    assert set(pools) == set(EXPECTED)
    for key, expected in EXPECTED.items():
        got = pools[key].values()
        for canonical_field in FIELDS:
            want = expected.get(canonical_field)
            assert got[canonical_field] == want, f"{key} {canonical_field}: got {got[canonical_field]!r}, want {want!r}"
    for (service, _), pool in pools.items():
        if service == "shipping":
            # The collector's own instance label, renamed at scrape, is the instance.
            assert pool.instance == "shipping-5d8f"
        else:
            assert pool.instance == fleet.exporters[service].address
    assert pools[("payments", "payments")].utilization is None  # max 0 = unlimited


def test_the_service_label_is_configurable_per_source(fleet) -> None:
    source = PrometheusSource.objects.create(name="collector", url=fleet.url, service_label="exported_job")

    found = discover_source(source)

    assert found.status == "ok", found.error
    assert found.services == {"shipping": "npgsql10"}
    assert collect_source(source, current_slot()).status == "ok"
    pool = Pool.objects.get()
    assert (pool.service.name, pool.instance, pool.name, pool.in_use) == ("shipping", "shipping-5d8f", "shipping", 11)


def test_explicit_presets_limit_discovery_and_collection(fleet) -> None:
    source = PrometheusSource.objects.create(name="java", url=fleet.url, presets=["spring_jdbc"], rate_window="10s")

    found = discover_source(source)

    # Only the configured preset is looked for, so search falls back to the generic set.
    assert found.services == {"inventory": "spring_jdbc", "search": "spring_jdbc"}
    result = collect_source(source, current_slot())
    assert result.queries == 4
    assert Pool.objects.get(service__name="search").name == "dataSource"


def test_label_values_with_quotes_backslashes_and_newlines_match_only_themselves(fleet) -> None:
    source = PrometheusSource.objects.create(name="escapes", url=fleet.url)
    values = {'a"b': 1, "a\\b": 2, "a\nb": 3, "ab": 4, 'a\\"b': 5, "a.b": 6, "a|b": 7}
    with source.client() as client:
        for value, number in values.items():
            series = client.instant(f'pb_escape_probe{{job="escapes",{promql.matchers({"pool": value})}}}')
            assert [(s.labels["pool"], s.value) for s in series] == [(value, number)], repr(value)
        injection = promql.matchers({"pool": 'x"} or vector(1) #'})
        hostile = client.instant(f"pb_escape_probe{{{injection}}}")
        assert hostile == []
        # Regex alternatives are escaped literals: "a.b" does not match "a\nb" nor "ab".
        series = client.instant(f"pb_escape_probe{{{promql.matchers(one_of={'pool': ['a.b', 'a|b']})}}}")
        assert sorted(s.value for s in series) == [6, 7]


def test_a_service_that_vanishes_is_marked_stale_and_kept(fleet) -> None:
    source = PrometheusSource.objects.create(name="fleet", url=fleet.url, rate_window="10s")
    assert discover_source(source).status == "ok"
    exporter = fleet.exporters["notify"]
    template = exporter.template
    exporter.text = ""
    try:
        wait_until(lambda: not fleet.query('db_pool_available{job="notify"}'), timeout=15, interval=0.3,
                   what="Prometheus to drop the notify series")
        found = discover_source(source)
        assert found.stale_services == ["notify"]
        notify = Service.objects.get(name="notify")
        assert notify.stale_since is not None
        assert Pool.objects.filter(service=notify).count() == 1
        assert Service.objects.get(name="orders").stale_since is None
    finally:
        exporter.text = template
        wait_until(lambda: fleet.query('db_pool_available{job="notify"}'), timeout=15, interval=0.3,
                   what="the notify series to come back")
    found = discover_source(source)
    assert "notify" not in found.stale_services
    assert Service.objects.get(name="notify").stale_since is None


def test_every_dialect_shows_the_same_numbers_on_the_overview_service_page_and_api(fleet, client, django_user_model) -> None:
    from poolboard.dashboard.templatetags.pool_extras import num

    source = PrometheusSource.objects.create(name="fleet", url=fleet.url, presets=[], rate_window=f"{WINDOW_S}s")
    assert discover_source(source).status == "ok"
    assert collect_source(source, current_slot()).status == "ok"
    client.force_login(django_user_model.objects.create_user("viewer", password="x"))

    overview = client.get("/?sort=name&dir=asc").content.decode()
    pools = {(p.service.name, p.name): p for p in Pool.objects.select_related("service")}
    for (service_name, pool_name), pool in pools.items():
        assert f">{service_name}<" in overview
        api = client.get(f"/api/v1/services/{service_name}/").json()
        [api_pool] = [p for p in api["pools"] if p["pool"] == pool_name]
        for canonical_field in FIELDS:
            assert api_pool[canonical_field] == getattr(pool, canonical_field), (service_name, canonical_field)
        page = client.get(f"/services/{pool.service.pk}/").content.decode()
        assert f"<td>{pool_name}</td>" in page.replace("&#x27;", "'")
        if pool.in_use is not None:
            assert f'<td class="num">{num(pool.in_use)}</td>' in page
    orders = pools[("orders", "orders-main")]
    assert f"{num(orders.in_use)} / {num(orders.max)}" in overview
