"""The `databases:` section of the inventory file (exportinventory / importinventory).

    databases:
      - name: orders-db
        host: db.internal
        port: 5432
        dbname: orders
        user: poolboard_mon
        sslmode: require
        password_env: ORDERS_DB_MONITOR_PASSWORD     # or password_file; never the password
        enabled: true
        idle_in_transaction_s: 60
        query_s: 30
        transaction_s: 300
        attribution:                                  # this database's rules, in order
          - {service: billing, application_name: "billing-*", usename: "", client_addr: ""}

Rules that apply to every database live in the admin (they are not per-database data).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

from poolboard.fleet.inventory import Writer, model_problems
from poolboard.fleet.models import Service
from poolboard.lib import inventory as inv
from poolboard.lib.inventory import Document, Field

from .models import SSLMODES, AttributionRule, MonitoredDatabase

DATABASE_FIELDS = [
    Field("name", "str", required=True),
    Field("host", "str", required=True),
    Field("port", "int", default=5432),
    Field("dbname", "str", default="postgres"),
    Field("user", "str", default="poolboard_mon"),
    Field("sslmode", "str", default="prefer", choices=tuple(SSLMODES)),
    Field("password_env", "str", default=""),
    Field("password_file", "str", default=""),
    Field("enabled", "bool", default=True),
    Field("idle_in_transaction_s", "int", default=60),
    Field("query_s", "int", default=30),
    Field("transaction_s", "int", default=300),
    Field("admin_user", "str", default=""),
    Field("admin_password_env", "str", default=""),
    Field("admin_password_file", "str", default=""),
    Field("attribution", "map_list", default=list),
]
SCALAR_FIELDS = [f.name for f in DATABASE_FIELDS if f.name not in ("name", "attribution")]
RULE_KEYS = ("service", "application_name", "usename", "client_addr")


def export_databases() -> list[dict]:
    rules: dict[int, list[dict]] = {}
    for rule in AttributionRule.objects.filter(database__isnull=False).select_related("service").order_by("position", "id"):
        rules.setdefault(rule.database_id, []).append(
            {"service": rule.service.name, "application_name": rule.application_name, "usename": rule.usename,
             "client_addr": rule.client_addr}
        )
    return [
        {"name": db.name, **{f: getattr(db, f) for f in SCALAR_FIELDS}, "attribution": rules.get(db.id, [])}
        for db in MonitoredDatabase.objects.order_by("name")
    ]


def import_databases(doc: Document, state: dict) -> Writer:
    for index, entry in enumerate(doc.data.get("databases") or []):
        for secret in ("password", "admin_password"):
            if isinstance(entry, dict) and secret in entry:
                doc.problem(("databases", index, secret), f"give {secret}_env or {secret}_file, never the password itself")
    records = inv.check_records(doc, "databases", DATABASE_FIELDS)
    existing = {d.name: d for d in MonitoredDatabase.objects.all()}
    services = set(Service.objects.values_list("name", flat=True)) | set(state.get("services", set()))
    rows: list[tuple[MonitoredDatabase, list[dict]]] = []
    for path, values in records:
        db = existing.get(values["name"]) or MonitoredDatabase(name=values["name"])
        for key in SCALAR_FIELDS:
            setattr(db, key, values[key])
        bad = False
        try:
            db.full_clean(validate_unique=False)
        except ValidationError as exc:
            model_problems(doc, path, exc)
            bad = True
        rules = []
        for i, rule in enumerate(values["attribution"]):
            rule_path = (*path, "attribution", i)
            unknown = set(rule) - set(RULE_KEYS)
            if unknown:
                doc.problem(rule_path, f"unknown key(s) {', '.join(sorted(map(str, unknown)))} (known: {', '.join(RULE_KEYS)})")
                bad = True
                continue
            if rule.get("service") not in services:
                doc.problem((*rule_path, "service"), f"no service named {rule.get('service')!r}")
                bad = True
                continue
            candidate = AttributionRule(position=i, **{k: str(rule.get(k) or "") for k in RULE_KEYS[1:]})
            try:
                candidate.clean()
            except ValidationError as exc:
                doc.problem(rule_path, "; ".join(exc.messages))
                bad = True
                continue
            rules.append({k: str(rule.get(k) or "") for k in RULE_KEYS})
        if not bad:
            rows.append((db, rules))

    def write() -> dict[str, int]:
        by_name = {s.name: s for s in Service.objects.all()}
        created = sum(1 for db, _ in rows if db.pk is None)
        for db, rules in rows:
            db.save()
            # The file states this database's rules completely: replace them.
            AttributionRule.objects.filter(database=db).delete()
            AttributionRule.objects.bulk_create(
                AttributionRule(database=db, service=by_name[r["service"]], position=i, application_name=r["application_name"],
                                usename=r["usename"], client_addr=r["client_addr"])
                for i, r in enumerate(rules)
            )
        return {"created": created, "updated": len(rows) - created}

    return write
