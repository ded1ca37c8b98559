"""utilization and available are the worst pool's, with the service's configured overflow in the
capacity: live, in the backtest (raw samples and rollups) and in the exported Prometheus rules.

Two defects these guard: one instance at 100 % among idle ones read ~10 % summed over the service
(PoolSaturated never fired while its callers failed), and SQLAlchemy running in its allowed
overflow read 120 % of the pool_size it reports as max (a critical with overflow slots free).
"""

from __future__ import annotations

import importlib
import subprocess
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

import pytest
import yaml
from django.apps import apps
from django.utils import timezone

from poolboard.alerts.evaluate import evaluate_rules
from poolboard.alerts.export import export_rules
from poolboard.alerts.models import AlertInstance, AlertRule
from poolboard.alerts.signals import Tick
from poolboard.fleet.models import Pool, PrometheusSource, Service
from poolboard.lib.alerting import FIRING, INACTIVE
from poolboard.notify.models import Notification

from .factories import T0, channel, only_these_rules, rule, sample, source, ticks
from .test_export import PROMTOOL

pytestmark = pytest.mark.django_db


def service(src, name: str, instances: list[dict], *, preset: str = "db_pool", overflow: int = 0, at=T0) -> Service:
    svc = Service.objects.create(name=name, source=src, preset=preset, pool_overflow=overflow, last_seen_at=at)
    Pool.objects.bulk_create(Pool(service=svc, instance=f"10.0.0.{i}:8080", name="main", sampled_at=at, **values)
                             for i, values in enumerate(instances))
    return svc


def state(r, svc) -> str:
    row = AlertInstance.objects.filter(rule=r, labels__service=svc.name).first()
    return row.state if row else INACTIVE


def shipped_pool_saturated() -> AlertRule:
    """The default rule as a fresh install has it (0002 creates it, 0004 names the instance)."""
    AlertRule.objects.all().delete()
    importlib.import_module("poolboard.alerts.migrations.0002_default_rules").create_defaults(apps, None)
    importlib.import_module("poolboard.alerts.migrations.0004_worst_pool_utilization").name_the_instance(apps, None)
    AlertRule.objects.exclude(name="PoolSaturated").delete()
    return AlertRule.objects.get(name="PoolSaturated")


def test_one_exhausted_instance_among_ten_fires_the_shipped_pool_saturated_naming_it() -> None:
    hook = channel()
    saturated = shipped_pool_saturated()
    saturated.channels.set([hook])
    src = source()
    # Instance 10.0.0.7 has all 10 connections in use; nine others are idle: 10 % summed.
    svc = service(src, "checkout", [{"in_use": 10.0 if i == 7 else 0.0, "max": 10.0} for i in range(10)])
    for at in ticks(T0, 300):
        sample([svc], at)
        evaluate_rules(at)
    assert state(saturated, svc) == FIRING
    (sent,) = Notification.objects.all()
    assert sent.payload["annotations"]["summary"] == (
        "checkout: 100 % of pool main in use on 10.0.0.7:8080 (> 90 %) for 5 minutes")
    (reading,) = Tick(T0 + timedelta(seconds=300)).readings("available")
    assert (reading.value, reading.pool) == (0.0, {"instance": "10.0.0.7:8080", "pool": "main"})


def test_the_default_summary_names_the_worst_pool_too() -> None:
    only_these_rules()
    hook = channel()
    full = rule("PoolFull", "available", 1, comparator="<", for_s=0, channels=[hook])
    svc = service(source(), "search", [{"in_use": 3.0, "max": 10.0}, {"in_use": 20.0, "max": 20.0}])
    evaluate_rules(T0)
    assert state(full, svc) == FIRING
    (sent,) = Notification.objects.all()
    assert sent.payload["annotations"]["summary"] == (
        "search: free connections, fewest in one pool (max + overflow − in use) 0 < 1 (instance 10.0.0.1:8080, pool main)")


def test_sqlalchemy_in_its_allowed_overflow_is_not_saturated_until_the_overflow_is_used() -> None:
    only_these_rules()
    saturated = rule("PoolSaturated", "utilization", 90, for_s=0)
    full = rule("PoolFull", "available", 1, comparator="<", for_s=0)
    src = source()
    # pool_size 10 (reported as max), max_overflow 5: 12 in use is 80 % of the 15 it may open.
    orders = service(src, "orders", [{"in_use": 12.0, "max": 10.0}, {"in_use": 2.0, "max": 10.0}],
                     preset="sqlalchemy", overflow=5)
    evaluate_rules(T0)
    assert (state(saturated, orders), state(full, orders)) == (INACTIVE, INACTIVE)
    readings = {signal: Tick(T0).readings(signal)[0].value for signal in ("utilization", "available")}
    assert readings == {"utilization": 80.0, "available": 3.0}
    # 14 of 15: saturated; 15 of 15: no connection left.
    Pool.objects.filter(service=orders, instance="10.0.0.0:8080").update(in_use=14.0)
    sample([orders], T0 + timedelta(seconds=15))
    evaluate_rules(T0 + timedelta(seconds=15))
    assert (state(saturated, orders), state(full, orders)) == (FIRING, INACTIVE)
    Pool.objects.filter(service=orders, instance="10.0.0.0:8080").update(in_use=15.0)
    sample([orders], T0 + timedelta(seconds=30))
    evaluate_rules(T0 + timedelta(seconds=30))
    assert (state(saturated, orders), state(full, orders)) == (FIRING, FIRING)


def test_the_backtest_replays_the_worst_pool_with_the_overflow_over_rollups_and_samples(settings) -> None:
    """Rollups (before the raw samples) and raw samples of an SQLAlchemy service with overflow 5:
    in use 12 of pool_size 10 is not saturated; 14 on one instance while the other is idle is."""
    from poolboard.alerts.admin_backtest import params_from, run_backtest
    from poolboard.history.models import PoolRollup5m
    from tests.fleet.factories import write_samples

    settings.COLLECT_INTERVAL = 15
    only_these_rules()
    saturated = rule("PoolSaturated", "utilization", 90, for_s=60)
    orders = service(source(), "orders", [{"in_use": 2.0, "max": 10.0}, {"in_use": 0.0, "max": 10.0}],
                     preset="sqlalchemy", overflow=5)
    busy, idle = Pool.objects.filter(service=orders).order_by("instance")
    now = timezone.now()
    start = (int(now.timestamp()) // 15) * 15 - 239 * 15
    rows = []
    for i in range(240):  # an hour of raw samples: 12 in use for 20 minutes, then 14 for 10 minutes
        in_use = 14.0 if 160 <= i < 200 else 12.0 if 40 <= i < 120 else 2.0
        rows.append((busy.pk, start + i * 15, {"max": 10.0, "in_use": in_use}))
        rows.append((idle.pk, start + i * 15, {"max": 10.0, "in_use": 0.0}))
    write_samples(rows)
    day = datetime.fromtimestamp((start // 300) * 300, tz=dt_timezone.utc) - timedelta(days=2)
    for k in range(24):  # two hours of rollups: 12 at most for an hour, then 15 at most for half an hour
        top = 15.0 if 16 <= k < 22 else 12.0 if k < 12 else 2.0
        PoolRollup5m.objects.create(pool=busy, bucket=day + timedelta(minutes=5 * k), samples=20, max_avg=10.0,
                                    in_use_avg=top - 1, in_use_max=top)
        PoolRollup5m.objects.create(pool=idle, bucket=day + timedelta(minutes=5 * k), samples=20, max_avg=10.0,
                                    in_use_avg=0.0, in_use_max=0.0)
    run = run_backtest(saturated, params_from(saturated, {"range": "7d"}), now)
    assert run.from_rollups
    (series,) = run.series
    fired = [(e.firing_at, e.peak) for e in series.result.fired]
    # One episode in the rollups (15 of 15 = 100 %), one in the raw samples (14 of 15); 12 of 15 never.
    assert len(fired) == 2, fired
    assert [round(peak, 1) for _, peak in fired] == [100.0, 93.3]
    assert fired[0][0] < datetime.fromtimestamp(start, tz=dt_timezone.utc) <= fired[1][0]
    before = series.result.episodes[0].pending_at
    assert max(v for at, v in series.points if v is not None and at < before) == 80.0  # 12 of 10 + 5, not 120 %


# --- the export: the same worst pool and overflow in PromQL, the instance in the annotation ---

MINUTES = 12
# (service, instance) -> in_use per minute; every max is 10. orders is SQLAlchemy with overflow 5
# (12 of 10 is 80 %, 14 is 93 %); checkout has one exhausted instance among three.
IN_USE = {
    ("orders", "a:1"): [2, 12, 12, 12, 14, 14, 14, 15, 15, 3, 3, 3],
    ("orders", "b:1"): [1, 1, 1, 1, 1, 1, 13, 1, 1, 1, 1, 1],
    ("checkout", "c:1"): [0, 0, 10, 10, 10, 10, 0, 0, 0, 0, 0, 0],
    ("checkout", "d:1"): [0, 0, 1, 1, 1, 1, 10, 10, 10, 0, 0, 0],
    ("checkout", "e:1"): [0] * MINUTES,
}
PRESETS = {"orders": ("sqlalchemy", 5, "db_pool_checked_out", "db_pool_size"),
           "checkout": ("db_pool", 0, "db_pool_in_use_connections", "db_pool_max_open_connections")}
SUMMARIES = {"PoolSaturated": "{{ service }} saturated on {{ instance }} ({{ pool }})",
             "PoolFull": "{{ service }}: no connection left on {{ instance }}"}


def test_promtool_and_poolboard_agree_on_the_worst_pool_its_instance_and_the_overflow(tmp_path, settings) -> None:
    if PROMTOOL is None:
        pytest.skip("promtool is installed by `make system-prometheus`")
    settings.COLLECT_INTERVAL, settings.STALE_AFTER_TICKS = 60, 5
    only_these_rules()
    src = PrometheusSource.objects.create(name="main", url="http://127.0.0.1:9", presets=["db_pool", "sqlalchemy"],
                                          last_success_at=T0)
    pools = {}
    for (name, instance) in IN_USE:
        preset, overflow, _, _ = PRESETS[name]
        svc, _ = Service.objects.get_or_create(name=name, defaults={"source": src, "preset": preset, "pool_overflow": overflow})
        pools[(name, instance)] = Pool.objects.create(service=svc, instance=instance, name="main")
    rule("PoolSaturated", "utilization", 90, for_s=60, summary=SUMMARIES["PoolSaturated"])
    rule("PoolFull", "available", 1, comparator="<", for_s=0, severity="critical", summary=SUMMARIES["PoolFull"])

    expected = {}  # minute -> [(alertname, service, summary)]
    for minute in range(MINUTES):
        at = T0 + timedelta(minutes=minute)
        for key, pool in pools.items():
            Pool.objects.filter(pk=pool.pk).update(sampled_at=at, in_use=IN_USE[key][minute], max=10)
        PrometheusSource.objects.filter(pk=src.pk).update(last_success_at=at)
        evaluate_rules(at)
        tick = Tick(at)
        worst = {(signal, r.identity["service"]): r.pool for signal in ("utilization", "available")
                 for r in tick.readings(signal)}
        expected[minute] = []
        for row in AlertInstance.objects.filter(state=FIRING).order_by("labels__service"):
            name, svc = row.labels["alertname"], row.labels["service"]
            where = worst[("utilization" if name == "PoolSaturated" else "available", svc)]
            summary = SUMMARIES[name].replace("{{ service }}", svc).replace("{{ instance }}", where["instance"])
            expected[minute].append((name, {k: v for k, v in row.labels.items() if k != "alertname"},
                                     summary.replace("{{ pool }}", where["pool"])))
    # The scenario shows what it should: 12 of pool_size 10 is no saturation with overflow 5,
    # 14 is (after for 1m), and one exhausted instance of three fires, named.
    assert not any(name == "PoolSaturated" and labels["service"] == "orders" for name, labels, _ in expected[3])
    assert ("PoolSaturated", "orders") in {(n, labels["service"]) for n, labels, _ in expected[5]}
    assert "checkout saturated on c:1 (main)" in {s for _, _, s in expected[3]}
    assert "checkout saturated on d:1 (main)" in {s for _, _, s in expected[7]}
    assert "orders: no connection left on a:1" in {s for _, _, s in expected[7]}

    rules_text = export_rules(T0)
    assert "# overflow: PoolSaturated: capacity is each pool's max + the service's configured overflow" in rules_text
    check = subprocess.run([PROMTOOL, "check", "rules", "/dev/stdin"], input=rules_text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    input_series = []
    for (name, instance), values in IN_USE.items():
        _, _, in_use_metric, max_metric = PRESETS[name]
        labels = f'job="{name}",instance="{instance}",pool_name="main"'
        input_series.append({"series": f"{in_use_metric}{{{labels}}}", "values": " ".join(map(str, values))})
        input_series.append({"series": f"{max_metric}{{{labels}}}", "values": " ".join(["10"] * MINUTES)})
    tests = [
        {"eval_time": f"{minute}m", "alertname": alertname,
         "exp_alerts": [{"exp_labels": labels, "exp_annotations": {"summary": summary}}
                        for name, labels, summary in firing if name == alertname]}
        for minute, firing in expected.items() for alertname in ("PoolSaturated", "PoolFull")
    ]
    doc = {"rule_files": ["rules.yml"], "evaluation_interval": "1m",
           "tests": [{"interval": "1m", "input_series": input_series, "alert_rule_test": tests}]}
    (tmp_path / "rules.yml").write_text(rules_text)
    (tmp_path / "test.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    result = subprocess.run([PROMTOOL, "test", "rules", "test.yml"], cwd=Path(tmp_path), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
