"""Monitored databases from an inventory file (YAML), the same fields as the admin.

    databases:
      - name: orders-db
        host: db.internal
        port: 5432
        dbname: orders
        user: poolboard_mon
        sslmode: require
        password_env: ORDERS_DB_MONITOR_PASSWORD   # or password_file: /run/secrets/orders-mon
        idle_in_transaction_s: 60
        query_s: 30
        attribution:                               # optional, tried in order
          - {service: billing, application_name: "billing-*"}
          - {service: etl, usename: etl_user}

A literal `password:` key is refused: secrets are only ever referenced.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from poolboard.fleet.models import Service

from .models import AttributionRule, MonitoredDatabase

FIELDS = {
    "host", "port", "dbname", "user", "sslmode", "password_env", "password_file", "enabled",
    "idle_in_transaction_s", "query_s", "transaction_s", "admin_user", "admin_password_env", "admin_password_file",
}


class InventoryError(ValueError):
    pass


@transaction.atomic
def apply_databases(entries: list[dict]) -> list[str]:
    """Create or update each entry (by name); return what changed, one line each.

    Validation errors name the entry and the field; nothing is saved if any entry is bad.
    """

    if not isinstance(entries, list):
        raise InventoryError("`databases` must be a list")
    done = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise InventoryError(f"databases[{i}]: each entry needs a name")
        name = str(entry["name"])
        if "password" in entry or "admin_password" in entry:
            raise InventoryError(f"{name}: give password_env or password_file, never the password itself")
        unknown = set(entry) - FIELDS - {"name", "attribution"}
        if unknown:
            raise InventoryError(f"{name}: unknown field(s) {', '.join(sorted(unknown))}")
        db = MonitoredDatabase.objects.filter(name=name).first() or MonitoredDatabase(name=name)
        created = db.pk is None
        for field in FIELDS & set(entry):
            setattr(db, field, entry[field])
        try:
            db.full_clean()
        except ValidationError as exc:
            raise InventoryError(f"{name}: {'; '.join(f'{k}: {v[0]}' for k, v in exc.message_dict.items())}") from None
        db.save()
        if "attribution" in entry:
            db.attributionrule_set.all().delete()
            for pos, rule in enumerate(entry["attribution"] or []):
                service = Service.objects.filter(name=rule.get("service")).first()
                if service is None:
                    raise InventoryError(f"{name}: attribution[{pos}]: no service named {rule.get('service')!r}")
                r = AttributionRule(
                    database=db, service=service, position=pos,
                    application_name=rule.get("application_name", ""), usename=rule.get("usename", ""),
                    client_addr=rule.get("client_addr", ""),
                )
                try:
                    r.full_clean()
                except ValidationError as exc:
                    raise InventoryError(f"{name}: attribution[{pos}]: {'; '.join(exc.messages)}") from None
                r.save()
        done.append(f"{name}: {'created' if created else 'updated'}")
    return done
