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
        primary: orders-db-main                       # a hot standby of this monitored server (optional)
        attribution:                                  # this database's rules, in order
          - {service: billing, application_name: "billing-*", usename: "", client_addr: ""}

Each entry is a monitored server (the section keeps its name from when it was a database;
`dbname` is the database to connect to). Each one and each of its rules is checked by its ModelForm (poolboard.inventory.forms).
Rules that apply to every server live in the admin (they are not per-database data).
Registered from DatabasesConfig.ready().
"""

from __future__ import annotations

from django import forms

from poolboard.fleet.models import Service
from poolboard.inventory.forms import MapList, Refused, Text, bind, check_entries, known, yaml_formfield
from poolboard.inventory.registry import Writer, register_section
from poolboard.lib.inventory import Document

from .models import AttributionRule, MonitoredServer

SCALAR_FIELDS = [
    "host", "port", "dbname", "user", "sslmode", "password_env", "password_file", "enabled",
    "idle_in_transaction_s", "query_s", "transaction_s", "admin_user", "admin_password_env", "admin_password_file",
]


class DatabaseForm(forms.ModelForm):
    file_fields = ("name", *SCALAR_FIELDS, "primary", "attribution", "password", "admin_password")
    attribution = MapList(required=False)
    primary = Text(required=False)
    password = Refused("give password_env or password_file, never the password itself")
    admin_password = Refused("give admin_password_env or admin_password_file, never the password itself")

    class Meta:
        model = MonitoredServer
        fields = ["name", *SCALAR_FIELDS]
        formfield_callback = yaml_formfield

    def __init__(self, *args, known_servers: set[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.known_servers = known_servers

    def clean_primary(self) -> str:
        name = self.cleaned_data.get("primary") or ""
        if not name:
            return ""
        if name == self.data.get("name"):
            raise forms.ValidationError("a server cannot be a standby of itself")
        return known(name, self.known_servers, "no monitored server named {!r}")


class RuleForm(forms.ModelForm):
    file_fields = ("service", "application_name", "usename", "client_addr")
    service = Text()

    class Meta:
        model = AttributionRule
        fields = ["application_name", "usename", "client_addr"]
        formfield_callback = yaml_formfield

    def __init__(self, *args, known_services: set[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.known_services = known_services

    def clean_service(self) -> str:
        return known(self.cleaned_data["service"], self.known_services, "no service named {!r}")


def export_databases() -> list[dict]:
    rules: dict[int, list[dict]] = {}
    for rule in AttributionRule.objects.filter(server__isnull=False).select_related("service").order_by("position", "id"):
        rules.setdefault(rule.server_id, []).append(
            {"service": rule.service.name, "application_name": rule.application_name, "usename": rule.usename,
             "client_addr": rule.client_addr}
        )
    # "primary" only when set: files of servers that are not standbys stay as they were.
    return [
        {"name": db.name, **{f: getattr(db, f) for f in SCALAR_FIELDS},
         **({"primary": db.primary.name} if db.primary_id else {}), "attribution": rules.get(db.id, [])}
        for db in MonitoredServer.objects.select_related("primary").order_by("name")
    ]


def import_databases(doc: Document, state: dict) -> Writer:
    existing = {d.name: d for d in MonitoredServer.objects.all()}
    known_services = set(Service.objects.values_list("name", flat=True)) | set(state.get("services", set()))

    entries = doc.data.get("databases")
    in_file = {e.get("name") for e in entries if isinstance(e, dict)} if isinstance(entries, list) else set()
    known_servers = set(existing) | {n for n in in_file if isinstance(n, str)}

    def database_form(entry: dict) -> DatabaseForm:
        return bind(DatabaseForm, entry, instance=existing.get(entry.get("name")) or MonitoredServer(),
                    known_servers=known_servers)

    def rule_form(entry: dict) -> RuleForm:
        return bind(RuleForm, entry, instance=AttributionRule(), known_services=known_services)

    rows: list[tuple[MonitoredServer, list[tuple[AttributionRule, str]]]] = []
    primaries: dict[str, str] = {}  # server name -> its primary's name ("" clears it)
    for path, form in check_entries(doc, ("databases",), doc.data.get("databases"), database_form):
        rules = form.cleaned_data["attribution"]
        valid = check_entries(doc, (*path, "attribution"), rules, rule_form, unique="")
        if len(valid) == len(rules):
            rows.append((form.instance, [(f.instance, f.cleaned_data["service"]) for _, f in valid]))
            primaries[form.instance.name] = form.cleaned_data["primary"]

    def write() -> dict[str, int]:
        services = {s.name: s for s in Service.objects.all()}
        created = sum(1 for db, _ in rows if db.pk is None)
        for db, rules in rows:
            db.save()
            # The file states this database's rules completely: replace them.
            AttributionRule.objects.filter(server=db).delete()
            for position, (rule, service_name) in enumerate(rules):
                rule.server, rule.service, rule.position = db, services[service_name], position
            AttributionRule.objects.bulk_create(rule for rule, _ in rules)
        # Primaries last: a standby may name a server defined further down the file.
        by_name = {s.name: s for s in MonitoredServer.objects.all()}
        for db, _ in rows:
            primary = by_name.get(primaries.get(db.name, ""))
            if db.primary_id != (primary.pk if primary else None):
                db.primary = primary
                db.save(update_fields=["primary"])
        return {"created": created, "updated": len(rows) - created}

    return write


def register() -> None:
    """Called from DatabasesConfig.ready(), after the fleet's sections (rules name services)."""
    register_section("databases", export_databases, import_databases)
