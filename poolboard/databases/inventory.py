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
    file_fields = ("name", *SCALAR_FIELDS, "attribution", "password", "admin_password")
    attribution = MapList(required=False)
    password = Refused("give password_env or password_file, never the password itself")
    admin_password = Refused("give admin_password_env or admin_password_file, never the password itself")

    class Meta:
        model = MonitoredServer
        fields = ["name", *SCALAR_FIELDS]
        formfield_callback = yaml_formfield


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
    return [
        {"name": db.name, **{f: getattr(db, f) for f in SCALAR_FIELDS}, "attribution": rules.get(db.id, [])}
        for db in MonitoredServer.objects.order_by("name")
    ]


def import_databases(doc: Document, state: dict) -> Writer:
    existing = {d.name: d for d in MonitoredServer.objects.all()}
    known_services = set(Service.objects.values_list("name", flat=True)) | set(state.get("services", set()))

    def database_form(entry: dict) -> DatabaseForm:
        return bind(DatabaseForm, entry, instance=existing.get(entry.get("name")) or MonitoredServer())

    def rule_form(entry: dict) -> RuleForm:
        return bind(RuleForm, entry, instance=AttributionRule(), known_services=known_services)

    rows: list[tuple[MonitoredServer, list[tuple[AttributionRule, str]]]] = []
    for path, form in check_entries(doc, ("databases",), doc.data.get("databases"), database_form):
        rules = form.cleaned_data["attribution"]
        valid = check_entries(doc, (*path, "attribution"), rules, rule_form, unique="")
        if len(valid) == len(rules):
            rows.append((form.instance, [(f.instance, f.cleaned_data["service"]) for _, f in valid]))

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
        return {"created": created, "updated": len(rows) - created}

    return write


def register() -> None:
    """Called from DatabasesConfig.ready(), after the fleet's sections (rules name services)."""
    register_section("databases", export_databases, import_databases)
