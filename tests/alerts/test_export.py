"""exportrules, and the differential test: promtool and poolboard give the same firing sets.

The same input series go (a) into `promtool test rules` with the exported rule file and (b)
through poolboard's whole evaluation (Pool rows updated at each evaluation, evaluate_rules at
that instant). The promtool test file expects exactly what poolboard fired at each evaluation
time; promtool compares firing alerts exactly, so it passes only if both agree everywhere.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

from poolboard.alerts.evaluate import evaluate_rules
from poolboard.alerts.export import export_rules
from poolboard.alerts.models import AlertInstance, RuleOverride
from poolboard.fleet.models import Pool, PrometheusSource, Service
from poolboard.lib.alerting import FIRING

from .factories import T0, only_these_rules, rule

pytestmark = pytest.mark.django_db

PROMTOOL = shutil.which("promtool")
MINUTES = 24

# Per pool (service, instance): in_use, max and waiting at minutes 0..23; None = no sample.
# checkout has two pools (they add up); batch is always at 95 % (its override is 99 %);
# search stops reporting for 8 minutes (no data resolves, in both).
SERIES = {
    ("checkout", "a:1"): {
        "in_use": [2, 9, 10, 10, 10, 10, 9, 10, 10, 10, 10, 3, 3, 3, 10, 10, 10, 10, 10, 10, 2, 2, 2, 2],
        "max": [10] * MINUTES,
        "pending": [0, 0, 1, 2, 0, 3, 0, 0, 4, 4, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    },
    ("checkout", "b:1"): {
        "in_use": [1, 9, 9, 10, 10, 10, 10, 10, 9, 10, 10, 1, 1, 1, 10, 10, 10, 10, 10, 10, 1, 1, 1, 1],
        "max": [10] * MINUTES,
        "pending": [0] * MINUTES,
    },
    ("batch", "c:1"): {
        "in_use": [19] * MINUTES,
        "max": [20] * MINUTES,
        "pending": [0] * MINUTES,
    },
    ("search", "d:1"): {
        "in_use": [10, 10, 10, 10] + [None] * 8 + [10] * 12,
        "max": [10, 10, 10, 10] + [None] * 8 + [10] * 12,
        "pending": [2, 2, 2, 2] + [None] * 8 + [2] * 12,
    },
}
METRICS = {"in_use": "db_pool_in_use_connections", "max": "db_pool_max_open_connections",
           "pending": "db_pool_pending_requests"}


def setup_fleet():
    only_these_rules()
    src = PrometheusSource.objects.create(name="main", url="http://127.0.0.1:9", presets=["db_pool"], last_success_at=T0)
    pools = {}
    for service_name, instance in SERIES:
        service, _ = Service.objects.get_or_create(name=service_name, defaults={"source": src, "preset": "db_pool"})
        pools[(service_name, instance)] = Pool.objects.create(service=service, instance=instance, name="main")
    saturated = rule("PoolSaturated", "utilization", 90, for_s=120)
    RuleOverride.objects.create(rule=saturated, service=Service.objects.get(name="batch"), threshold=99)
    rule("PoolWaiting", "waiting", 0, for_s=60, keep_firing_for_s=120, labels={"team": "payments"})
    rule("PoolFull", "available", 1, comparator="<", for_s=0, service_glob="check*", severity="critical")
    return src, pools


def poolboard_firing(src, pools) -> dict[int, set[tuple]]:
    """Minute -> {(alertname, service)} firing after poolboard's evaluation at that minute."""
    fired = {}
    for minute in range(MINUTES):
        at = T0 + timedelta(minutes=minute)
        for key, pool in pools.items():
            values = {f: SERIES[key][f][minute] for f in METRICS}
            if values["in_use"] is not None:
                Pool.objects.filter(pk=pool.pk).update(sampled_at=at, **values)
        PrometheusSource.objects.filter(pk=src.pk).update(last_success_at=at)
        evaluate_rules(at)
        fired[minute] = {
            (i.labels["alertname"], i.labels["service"])
            for i in AlertInstance.objects.filter(state=FIRING)
        }
    return fired


def promtool_tests(fired: dict[int, set[tuple]]) -> dict:
    input_series = []
    for (service_name, instance), fields in SERIES.items():
        for f, metric in METRICS.items():
            values = " ".join("_" if v is None else str(v) for v in fields[f])
            input_series.append({"series": f'{metric}{{job="{service_name}",instance="{instance}",pool_name="main"}}',
                                 "values": values})
    labels_of = {}
    for i in AlertInstance.objects.all():
        labels_of[(i.labels["alertname"], i.labels["service"])] = {k: v for k, v in i.labels.items() if k != "alertname"}
    tests = []
    for minute, firing in fired.items():
        for alertname in ("PoolSaturated", "PoolWaiting", "PoolFull"):
            tests.append({
                "eval_time": f"{minute}m",
                "alertname": alertname,
                "exp_alerts": [{"exp_labels": labels_of[(a, s)]} for a, s in sorted(firing) if a == alertname],
            })
    return {"rule_files": ["rules.yml"], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": input_series, "alert_rule_test": tests}]}


def run_promtool(tmp_path: Path, rules_text: str, tests: dict) -> subprocess.CompletedProcess:
    (tmp_path / "rules.yml").write_text(rules_text)
    (tmp_path / "test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    return subprocess.run([PROMTOOL, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is installed by `make system-prometheus`")
def test_promtool_and_poolboard_fire_the_same_alerts_at_every_evaluation(tmp_path, settings) -> None:
    # Prometheus' lookback is 5 minutes; poolboard's staleness line is set to the same.
    settings.COLLECT_INTERVAL, settings.STALE_AFTER_TICKS = 60, 5
    src, pools = setup_fleet()
    fired = poolboard_firing(src, pools)
    # The scenario exercises what it should: for, keep_firing_for, overrides, no data, two pools.
    assert ("PoolSaturated", "checkout") in fired[4] and ("PoolSaturated", "checkout") not in fired[3]
    assert ("PoolSaturated", "batch") not in set().union(*fired.values())
    assert ("PoolWaiting", "search") in fired[9] and ("PoolWaiting", "search") not in fired[11]
    assert ("PoolWaiting", "checkout") in fired[11]  # kept firing after the waiters went at minute 10
    rules_text = export_rules(T0)
    check = subprocess.run([PROMTOOL, "check", "rules", "/dev/stdin"], input=rules_text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = promtool_tests(fired)
    result = run_promtool(tmp_path, rules_text, tests)
    assert result.returncode == 0, result.stdout + result.stderr

    # And promtool does tell: dropping one expected alert (checkout saturated at minute 4) fails.
    tests["tests"][0]["alert_rule_test"][4 * 3]["exp_alerts"] = []
    wrong = run_promtool(tmp_path, rules_text, tests)
    assert wrong.returncode != 0 and "PoolSaturated" in wrong.stdout + wrong.stderr


def test_exportrules_writes_a_file_and_says_what_it_cannot_export(tmp_path) -> None:
    setup_fleet()
    rule("Leak", "finding", 0, finding_kind="leak")
    target = tmp_path / "rules.yml"
    call_command("exportrules", "-o", str(target), stderr=StringIO())
    text = target.read_text()
    assert "# not exported: Leak: signal finding is computed by poolboard" in text
    doc = yaml.safe_load(text)
    alerts = [r["alert"] for r in doc["groups"][0]["rules"]]
    # PoolSaturated: the main rule (batch left out) and batch's own at 99.
    assert alerts.count("PoolSaturated") == 2
    batch_rule = [r for r in doc["groups"][0]["rules"] if r["alert"] == "PoolSaturated" and 'job="batch"' in r["expr"]]
    assert batch_rule[0]["expr"].endswith("> 99")
    main = [r for r in doc["groups"][0]["rules"] if r["alert"] == "PoolSaturated" and 'job="batch"' not in r["expr"]]
    assert 'job!~"batch"' in main[0]["expr"] and main[0]["for"] == "2m"


def test_a_hostile_glob_stays_a_quoted_literal(tmp_path) -> None:
    only_these_rules()
    src = PrometheusSource.objects.create(name="main", url="http://127.0.0.1:9", presets=["db_pool"])
    Service.objects.create(name='x"} or vector(1) #', source=src, preset="db_pool")
    rule("Odd", "waiting", 0, service_glob='x"} or vector(1) #')
    text = export_rules(T0)
    if PROMTOOL:
        check = subprocess.run([PROMTOOL, "check", "rules", "/dev/stdin"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    assert 'job=~"x\\"\\\\} or vector\\\\(1\\\\) #"' in text


def test_services_on_two_presets_get_closed_lists() -> None:
    only_these_rules()
    src = PrometheusSource.objects.create(name="main", url="http://127.0.0.1:9", presets=["db_pool"])
    Service.objects.create(name="go-svc", source=src, preset="db_pool")
    Service.objects.create(name="java-svc", source=src, preset="hikaricp")
    rule("Waiting", "waiting", 0)
    exprs = [r["expr"] for r in yaml.safe_load(export_rules(T0))["groups"][0]["rules"]]
    assert len(exprs) == 2
    assert any('db_pool_pending_requests{job=~"go-svc"}' in e for e in exprs), exprs
    assert any('hikaricp_connections_pending{job=~"java-svc"}' in e for e in exprs), exprs
