"""The default rules: shipped enabled, editable in the admin (a later edit is never overwritten).

Each cites where its default comes from (the `origin` field, shown in the admin). Their data is
written out here rather than imported, so this migration means the same thing forever.
"""

from django.db import migrations

DEFAULT_RULES = [
    {
        "name": "PoolSaturated", "signal": "utilization", "comparator": ">", "threshold": 90.0, "for_s": 300,
        "severity": "critical",
        "summary": "{{ service }}: {{ value }} % of its pool in use (> {{ threshold }} %) for 5 minutes",
        "origin": "DESIGN.md §7 'available → 0 / utilization > 90 %', from seeds/000 ('Alert when pool_available "
                  "approaches 0'); for: 5m as Percona PMM's connection rule (research/anchors.md, PMM).",
    },
    {
        "name": "PoolWaiting", "signal": "waiting", "comparator": ">", "threshold": 0.0, "for_s": 120,
        "severity": "warning",
        "summary": "{{ service }}: {{ value }} callers waiting for a connection for 2 minutes",
        "origin": "DESIGN.md §7 'waiters > 0'; seeds/001 ('Alert on exhaustion and high wait times'); for: 2m as "
                  "the postgres_exporter mixin's long-transaction rule (research/anchors.md).",
    },
    {
        "name": "PoolTimeouts", "signal": "timeouts", "comparator": ">", "threshold": 0.0, "for_s": 0,
        "severity": "critical",
        "summary": "{{ service }}: {{ value }} connection acquire timeouts",
        "origin": "DESIGN.md §7 'timeouts > 0': each is a failed request (seeds/002: PoolTimeout after "
                  "pool_timeout, 30 s); no for: one is already an outage for someone.",
    },
    {
        "name": "IdleInTransaction", "signal": "idle_in_transaction_s", "comparator": ">", "threshold": 60.0,
        "for_s": 0, "severity": "warning",
        "summary": "{{ service }}: a session idle in transaction for {{ value }} s (> {{ threshold }} s)",
        "origin": "DESIGN.md §7 'idle in transaction > 60 s'; the monitored server's default idle-in-transaction "
                  "threshold (60 s); PgHero long_running_query_sec = 60 (research/anchors.md).",
    },
    {
        "name": "SlowQuery", "signal": "query_s", "comparator": ">", "threshold": 30.0, "for_s": 0,
        "severity": "warning",
        "summary": "{{ service }}: a query running for {{ value }} s (> {{ threshold }} s)",
        "origin": "DESIGN.md §7 'query > 30 s'; Datadog DBM 'Long Running Query' > 30 s (research/anchors.md); "
                  "seeds/001 (now() - query_start > interval '30 seconds').",
    },
    {
        "name": "DatabaseBudget", "signal": "budget", "comparator": ">", "threshold": 80.0, "for_s": 300,
        "severity": "warning",
        "summary": "{{ server }}: {{ value }} % of its usable connections open (> {{ threshold }} %)",
        "origin": "DESIGN.md §6-§7 (the 80 % line of the budget, lib/budget.py WARN_FRACTION); Percona PMM "
                  "too_many_connections threshold 80, for: 5m; pgEdge 'High connection utilization > 80 %' "
                  "(research/anchors.md).",
    },
    {
        "name": "LeakSuspected", "signal": "finding", "finding_kind": "leak", "comparator": ">", "threshold": 0.0,
        "for_s": 0, "severity": "critical",
        "summary": "{{ service }}: connection leak suspected (see its diagnosis)",
        "origin": "Issue 11 ('a leak is an alert'): the diagnosis' leak finding (DESIGN.md §6), which already "
                  "waits for its own evidence, so no for:.",
    },
]


def create_defaults(apps, schema_editor):
    AlertRule = apps.get_model("alerts", "AlertRule")
    for spec in DEFAULT_RULES:
        AlertRule.objects.get_or_create(name=spec["name"], defaults=spec)


def remove_defaults(apps, schema_editor):
    AlertRule = apps.get_model("alerts", "AlertRule")
    AlertRule.objects.filter(name__in=[s["name"] for s in DEFAULT_RULES], instances__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("alerts", "0001_initial")]

    operations = [migrations.RunPython(create_defaults, remove_defaults)]
