"""Built-in presets: well-formed PromQL, identities, discovery helpers (no I/O but promtool)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from poolboard.lib import presets
from poolboard.lib.pools import FIELDS, PoolKey
from poolboard.lib.presets import BUILTIN_PRESETS, Preset, choose_presets, marker_query

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def test_every_builtin_query_is_valid_promql(tmp_path) -> None:
    rules = []
    for preset in BUILTIN_PRESETS.values():
        for canonical_field in preset.queries:
            for sel in ("", 'job="a\\"b"'):
                record = f"pb:{preset.name}:{canonical_field}:{len(rules)}"
                rules.append({"record": record, "expr": preset.query(canonical_field, window="1m", sel=sel)})
    rules.append({"record": "pb:marker", "expr": marker_query(list(BUILTIN_PRESETS.values()), ["job", "service"])})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "presets", "rules": rules}]}))
    done = subprocess.run([PROMTOOL, "check", "rules", "--lint=none", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def test_the_three_demo_presets_keep_their_names() -> None:
    assert {"db_pool", "hikaricp", "otel"} <= set(BUILTIN_PRESETS)


def test_every_builtin_covers_the_dialects_of_the_research_notes() -> None:
    assert set(BUILTIN_PRESETS) == {
        "db_pool", "hikaricp", "otel", "asyncpg", "sqlalchemy", "hikaricp_tracker", "spring_jdbc", "go_sql",
        "pgxpool", "otelsql", "otel_old", "npgsql", "npgsql10", "node_postgres", "pgbouncer", "pgbouncer_spreaker",
    }


@pytest.mark.parametrize("preset", BUILTIN_PRESETS.values(), ids=lambda p: p.name)
def test_no_preset_fakes_a_missing_field_with_zero(preset: Preset) -> None:
    for canonical_field, template in preset.queries.items():
        assert "vector(0)" not in template and "or on" not in template, canonical_field
        assert "$by" in template and "$sel" in template, canonical_field
    assert set(preset.missing_fields()) == set(FIELDS) - set(preset.queries)


@pytest.mark.parametrize("preset", BUILTIN_PRESETS.values(), ids=lambda p: p.name)
def test_unit_conversions_are_spelled_out(preset: Preset) -> None:
    for canonical_field, template in preset.queries.items():
        if canonical_field not in ("acquire_s", "hold_s", "pending"):
            continue  # counts of a ms/ns histogram carry no unit
        if "nanos" in template or "_ns" in template:
            assert template.endswith("/ 1e9"), (canonical_field, template)
        if "millis" in template:
            assert template.endswith("/ 1e3"), (canonical_field, template)
        if "microseconds" in template:
            assert template.endswith("/ 1e6"), (canonical_field, template)


def test_the_identity_keeps_exported_instance_and_prefers_it() -> None:
    preset = BUILTIN_PRESETS["otel"]
    assert "sum by (job, instance, exported_instance, db_client_connection_pool_name)" in preset.query("max")
    scraped = {"job": "ledger", "instance": "collector:8889", "exported_instance": "ledger-7f9c", "db_client_connection_pool_name": "p"}
    assert preset.key_for(scraped) == PoolKey("ledger", "ledger-7f9c", "p")
    assert preset.key_for({"job": "ledger", "instance": "10.0.0.1:80"}) == PoolKey("ledger", "10.0.0.1:80", "default")
    assert preset.key_for({"instance": "10.0.0.1:80"}) is None


def test_the_service_label_can_be_overridden() -> None:
    preset = BUILTIN_PRESETS["hikaricp"].with_service_label("service")
    assert preset.identity_labels == ["service", "instance", "exported_instance", "pool"]
    assert preset.key_for({"service": "cart", "job": "k8s", "instance": "i", "pool": "p"}) == PoolKey("cart", "i", "p")
    assert BUILTIN_PRESETS["hikaricp"].with_service_label("") is BUILTIN_PRESETS["hikaricp"]
    with pytest.raises(ValueError, match="is not a valid Prometheus label name"):
        BUILTIN_PRESETS["hikaricp"].with_service_label('job"}')


def test_node_postgres_pools_are_told_apart_by_host() -> None:
    preset = BUILTIN_PRESETS["node_postgres"]
    key = preset.key_for({"job": "web", "instance": "i", "database": "shop", "host": "db-replica:5432"})
    assert key == PoolKey("web", "i", "shop/db-replica:5432")


def test_the_marker_query_asks_once_for_every_preset() -> None:
    text = marker_query([BUILTIN_PRESETS["pgbouncer"], BUILTIN_PRESETS["otel_old"]], ["job", "job", "service"])
    assert text == (
        'count by (__name__, job, service) ({__name__=~"(?:pgbouncer_stats(_totals)?_client_wait_seconds_total)'
        '|(?:db_client_connections_usage(_connections)?)"})'
    )
    assert BUILTIN_PRESETS["pgbouncer"].marker_matches("pgbouncer_stats_totals_client_wait_seconds_total")
    assert BUILTIN_PRESETS["pgbouncer"].marker_matches("pgbouncer_stats_client_wait_seconds_total")
    assert not BUILTIN_PRESETS["pgbouncer"].marker_matches("pgbouncer_stats_transactions_total")


def test_a_more_specific_preset_wins() -> None:
    found = {"cart": {"spring_jdbc", "hikaricp"}, "billing": {"spring_jdbc"}, "api": {"otel", "npgsql10"}, "py": {"asyncpg", "sqlalchemy"}}
    assert choose_presets(found, BUILTIN_PRESETS) == {"cart": "hikaricp", "billing": "spring_jdbc", "api": "npgsql10", "py": "sqlalchemy"}


def test_a_preset_rejects_unknown_fields_and_bad_labels() -> None:
    with pytest.raises(ValueError, match="unknown canonical fields"):
        Preset(name="x", title="x", marker="m", queries={"inuse": "m"})
    with pytest.raises(ValueError, match="not a valid Prometheus label name"):
        Preset(name="x", title="x", marker="m", queries={}, pool_label="a-b")
    with pytest.raises(ValueError, match="not a metric-name regex"):
        Preset(name="x", title="x", marker='m"}', queries={})


def test_notes_exist_for_every_derived_field() -> None:
    assert "Little's law" in presets.GO_SQL.notes["pending"]
    assert "Little's law" in presets.PGXPOOL.notes["pending"]
    assert "unlimited" in presets.GO_SQL.notes["max"]
    assert "get_size()" in presets.ASYNCPG.notes["in_use"]


def test_it_counts_fields_no_pool_reported_as_missing_too() -> None:
    hikari = BUILTIN_PRESETS["hikaricp"]
    assert hikari.missing_fields() == ["overflow", "conns_closed"]
    # A HikariCP exporter that gives only some meters: in use, idle, min and opened.
    latest = [
        {"max": None, "min": 2.0, "in_use": 3.0, "idle": 1.0, "pending": None, "timeouts": None, "acquisitions": None,
         "acquire_s": None, "hold_s": None, "conns_opened": 0.0},
        {"in_use": 1.0, "idle": 2.0},
    ]
    assert hikari.missing_fields(latest) == [
        "max", "pending", "overflow", "timeouts", "acquisitions", "acquire_s", "hold_s", "conns_closed",
    ]
    # A 0 is a value (no timeouts in the window), not a missing field; one pool reporting is enough.
    latest[1].update(max=10.0, pending=0.0, timeouts=0.0)
    assert hikari.missing_fields(latest) == ["overflow", "acquisitions", "acquire_s", "hold_s", "conns_closed"]
    # No pools yet: every field is blank.
    assert hikari.missing_fields([]) == list(FIELDS)


def test_it_says_why_a_field_is_missing_in_the_presets_words_or_by_what_it_lacks() -> None:
    hikari = BUILTIN_PRESETS["hikaricp"]
    assert hikari.field_note("conns_closed") == "HikariCP does not export closed connections"
    assert hikari.field_note("max") == (
        "No max size reported: the exporter sends none of the series the hikaricp preset reads for it"
    )
    assert BUILTIN_PRESETS["asyncpg"].field_note("timeouts") == "The asyncpg preset gives no timeouts"
