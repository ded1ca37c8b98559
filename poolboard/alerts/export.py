"""The rules as a Prometheus rule file, for teams who keep alerting in Prometheus/Alertmanager.

Each pool-signal rule becomes one Prometheus alerting rule per (preset, source settings) of the
services it selects today, with the presets' own PromQL (the queries collection runs), so the
labels are the same as poolboard's instances (alertname, severity, service, the rule's labels)
and `promtool test rules` agrees with poolboard's evaluator (tests/alerts/test_export.py).

- when the selected services all use one preset, the service glob becomes a regex on its
  service label (new services match too); otherwise, and for a label selector (source and
  preset are not Prometheus labels), each rule lists the services it selects by name;
- per-service overrides: the services are left out of the main rule and get one rule each;
- utilization and available are the worst pool's, with the capacity max + the service's
  configured overflow (Service.pool_overflow): no metric gives the overflow, so it is written
  into the expression as a constant, services with different overflows get separate rules
  (closed lists), and a comment says so: re-export after changing a service's overflow;
- signals only poolboard has (staleness, diagnosis findings, pg_stat_activity ages, the
  budget) and no-data policies other than resolve are written as comments, not guessed.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import yaml
from django.conf import settings

from poolboard.fleet.models import Service, resolve_presets
from poolboard.lib import alerting, promql

from .models import AlertRule
from .signals import service_labels


def export_rules(now: datetime, rules=None) -> str:
    rules = list(rules if rules is not None else AlertRule.objects.enabled().prefetch_related("overrides__service"))
    services = list(Service.objects.select_related("source").order_by("name"))
    notes: list[str] = []
    capacities: list[str] = []
    out_rules: list[dict] = []
    for rule in rules:
        out, why = _rule_entries(rule, services)
        out_rules += out
        if why:
            notes.append(f"{rule.name}: {why}")
        overflows = _overflows(rule, services) if out else {}
        if overflows:
            # No metric gives the configured overflow: the expressions carry it as a constant.
            capacities.append(f"{rule.name}: capacity is each pool's max + the service's configured overflow, "
                              f"written in as of now ({', '.join(f'{n} +{o}' for n, o in overflows.items())}); "
                              "re-export after changing a service's overflow")
    doc = {"groups": [{"name": "poolboard", "interval": f"{int(settings.COLLECT_INTERVAL)}s", "rules": out_rules}]}
    header = [f"# Written by poolboard exportrules at {now:%Y-%m-%d %H:%M:%S} UTC from its alert rules.",
              "# Check with: promtool check rules <this file>"]
    header += [f"# overflow: {note}" for note in capacities]
    header += [f"# not exported: {note}" for note in notes]
    return "\n".join(header) + "\n" + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000)


def _selected(rule: AlertRule, services: list[Service]) -> list[Service]:
    return [
        s for s in services
        if alerting.glob_matches(rule.service_glob, s.name)
        and all(service_labels(s).get(k) == v for k, v in (rule.service_labels or {}).items())
    ]


def _overflows(rule: AlertRule, services: list[Service]) -> dict[str, int]:
    """{service: configured overflow} of the services whose exported capacity includes one."""
    if rule.signal not in alerting.CAPACITY_SIGNALS:
        return {}
    return {s.name: s.pool_overflow for s in _selected(rule, services) if s.pool_overflow}


def _rule_entries(rule: AlertRule, services: list[Service]) -> tuple[list[dict], str]:
    if rule.signal not in alerting.POOL_SIGNALS or rule.signal == "stale_s":
        return [], f"signal {rule.signal} is computed by poolboard (no preset metric gives it)"
    if rule.no_data != alerting.NO_DATA_RESOLVE:
        note = f"no-data policy {rule.no_data!r} has no Prometheus equivalent (exported as resolve)"
    else:
        note = ""
    chosen = _selected(rule, services)
    overrides = {o.service.name: o.threshold for o in rule.overrides.all()}
    uses_capacity = rule.signal in alerting.CAPACITY_SIGNALS
    groups: dict[tuple, list[Service]] = defaultdict(list)
    for s in chosen:
        overflow = s.pool_overflow if uses_capacity else 0
        groups[(s.preset, s.source.service_label, s.source.rate_window, overflow)].append(s)
    entries: list[dict] = []
    for (preset_name, service_label, window, overflow), members in sorted(groups.items()):
        presets = resolve_presets([preset_name])
        if not presets:
            continue
        preset = presets[0].with_service_label(service_label)
        label = preset.service_label
        names = [s.name for s in members]
        if rule.service_labels or len(groups) > 1 or overflow:
            # A closed list: the other presets' services must not be matched by this one's rule
            # (two presets can read the same metric), nor services a label selector leaves out,
            # nor a new service that may not have this overflow.
            main_sel = promql.matchers(one_of={label: [n for n in names if n not in overrides]})
        else:
            parts = [f"{label}=~{promql.quote(alerting.glob_to_regex(rule.service_glob))}"] if rule.service_glob else []
            mine = [n for n in names if n in overrides]
            if mine:
                parts.append(f"{label}!~{promql.quote('|'.join(promql.regex_escape(n) for n in sorted(mine)))}")
            main_sel = ",".join(parts)
        if any(n not in overrides for n in names):
            expr = alerting.prometheus_expr(rule.signal, preset, window=window, sel=main_sel, overflow=overflow)
            if expr is None:
                note = note or f"preset {preset_name} gives no metric for {rule.signal}"
                continue
            lookups = alerting.prometheus_pool_lookups(rule.signal, preset, window=window, sel=main_sel,
                                                       overflow=overflow)
            entries.append(_entry(rule, expr, rule.threshold, lookups))
        for name in sorted(n for n in names if n in overrides):
            sel = promql.matchers({label: name})
            expr = alerting.prometheus_expr(rule.signal, preset, window=window, sel=sel, overflow=overflow)
            if expr is not None:
                lookups = alerting.prometheus_pool_lookups(rule.signal, preset, window=window, sel=sel,
                                                           overflow=overflow)
                entries.append(_entry(rule, expr, overrides[name], lookups))
    if not entries and not note:
        note = "it selects no service today"
    return entries, note


def _entry(rule: AlertRule, expr: str, threshold: float, lookups: dict[str, str]) -> dict:
    entry: dict = {"alert": rule.name, "expr": f"{expr} {rule.comparator} {alerting.format_threshold(threshold)}"}
    if rule.for_s:
        entry["for"] = alerting.prometheus_duration(rule.for_s)
    if rule.keep_firing_for_s:
        entry["keep_firing_for"] = alerting.prometheus_duration(rule.keep_firing_for_s)
    entry["labels"] = {**rule.labels, "severity": rule.severity}
    annotations = {k: alerting.prometheus_template(getattr(rule, k), threshold, lookups)
                   for k in ("summary", "description") if getattr(rule, k)}
    if annotations:
        entry["annotations"] = annotations
    return entry
