"""The fleet's sections of the inventory file: Prometheus sources, custom presets, services.

    sources:
      - {name: prod, url: http://prometheus:9090, presets: [hikaricp], rate_window: 5m, ...}
    presets:
      - {name: acme, source: prod, marker: acme_pool_busy, queries: {in_use: ..., max: ...}, ...}
    services:
      - {name: checkout, source: prod, preset: hikaricp, workers_per_instance: 4}
      - {name: search, source: prod, preset: db_pool, database: main/shop, replicas_max: 12,
         pooler: pgb-main, pooler_pool_size: 40}

Each entry is checked by the section's ModelForm (poolboard.inventory.forms), so the
file and the admin refuse the same values; references (a preset's or service's
source, a source's or service's presets) may name rows defined earlier in the same
file. Registered from FleetConfig.ready().
"""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from poolboard.inventory.forms import NameList, Text, TextMap, at, bind, check_entries, known, yaml_formfield
from poolboard.inventory.registry import Writer, register_section
from poolboard.lib.inventory import Document
from poolboard.lib.pools import FIELDS, RENAMED_FIELDS
from poolboard.lib.presets import BUILTIN_PRESETS

from .models import CustomPreset, PrometheusSource, Service


def _upsert_stats(created: int, updated: int) -> dict[str, int]:
    return {"created": created, "updated": updated}


# --- sources ---------------------------------------------------------------------


class SourceForm(forms.ModelForm):
    file_fields = ("name", "url", "enabled", "timeout_s", "rate_window", "bearer_token_env", "presets", "service_label")
    presets = NameList(required=False)

    class Meta:
        model = PrometheusSource
        fields = ["name", "url", "enabled", "timeout_s", "rate_window", "bearer_token_env", "service_label"]
        formfield_callback = yaml_formfield

    def __init__(self, *args, known_presets: set[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.known_presets = known_presets

    def clean_timeout_s(self) -> float:
        value = self.cleaned_data["timeout_s"]
        if value <= 0:
            raise ValidationError(f"must be a number > 0, not {value!r}")
        return value

    def clean_presets(self) -> list[str]:
        presets = self.cleaned_data["presets"]
        errors = [at(i, f"unknown preset {name!r}") for i, name in enumerate(presets) if name not in self.known_presets]
        if errors:
            raise ValidationError(errors)
        return presets


def export_sources() -> list[dict]:
    return [
        {
            "name": s.name,
            "url": s.url,
            "enabled": s.enabled,
            "timeout_s": s.timeout_s,
            "rate_window": s.rate_window,
            "bearer_token_env": s.bearer_token_env,
            "presets": list(s.presets or []),
            "service_label": s.service_label,
        }
        for s in PrometheusSource.objects.order_by("name")
    ]


def _preset_names_in_file(doc: Document) -> set[str]:
    return {e.get("name") for e in doc.data.get("presets") or [] if isinstance(e, dict) and isinstance(e.get("name"), str)}


def import_sources(doc: Document, state: dict) -> Writer:
    existing = {s.name: s for s in PrometheusSource.objects.all()}
    known_presets = set(BUILTIN_PRESETS) | set(CustomPreset.objects.values_list("name", flat=True)) | _preset_names_in_file(doc)

    def make_form(entry: dict) -> SourceForm:
        instance = existing.get(entry.get("name")) or PrometheusSource()
        return bind(SourceForm, entry, instance=instance, known_presets=known_presets)

    rows = []
    for _, form in check_entries(doc, ("sources",), doc.data.get("sources"), make_form):
        form.instance.presets = form.cleaned_data["presets"]
        rows.append(form.instance)
    state["sources"] = {s.name for s in rows}

    def write() -> dict[str, int]:
        created = sum(1 for s in rows if s.pk is None)
        for source in rows:
            source.save()
        return _upsert_stats(created, len(rows) - created)

    return write


# --- custom presets --------------------------------------------------------------


class PresetForm(forms.ModelForm):
    file_fields = ("name", "title", "source", "marker", "service_label", "instance_label", "pool_label", "notes", "queries")
    # CustomPreset keeps one template per canonical field; the file maps field → template.
    paths = {f"{f}_query": ("queries", f) for f in FIELDS}
    source = Text()
    queries = TextMap()

    class Meta:
        model = CustomPreset
        fields = ["name", "title", "marker", "service_label", "instance_label", "pool_label", "notes",
                  *(f"{f}_query" for f in FIELDS)]
        formfield_callback = yaml_formfield

    def __init__(self, *args, known_sources: set[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.known_sources = known_sources
        # Checked locally (names, labels, placeholders); not run against Prometheus here:
        # a file is imported whole or not at all, whatever Prometheus is doing right now.
        self.instance.check_against_source = False

    def clean_source(self) -> str:
        return known(self.cleaned_data["source"], self.known_sources, "no Prometheus source named {!r}")

    def clean(self) -> dict:
        # The templates go to their model fields before CustomPreset.clean() checks them;
        # a key that is no canonical field is reported and the others still checked.
        queries = self.cleaned_data.get("queries")
        if queries is not None:
            for f in FIELDS:
                self.cleaned_data[f"{f}_query"] = queries.get(f, "")
            unknown = [
                at(f, f"renamed {RENAMED_FIELDS[f]}" if f in RENAMED_FIELDS else f"not a canonical field (known: {', '.join(FIELDS)})")
                for f in queries
                if f not in FIELDS
            ]
            if unknown:
                self.add_error("queries", unknown)
        return self.cleaned_data


def export_presets() -> list[dict]:
    return [
        {
            "name": p.name,
            "title": p.title,
            "source": p.source.name,
            "marker": p.marker,
            "service_label": p.service_label,
            "instance_label": p.instance_label,
            "pool_label": p.pool_label,
            "notes": p.notes,
            "queries": p.queries(),
        }
        for p in CustomPreset.objects.select_related("source").order_by("name")
    ]


def import_presets(doc: Document, state: dict) -> Writer:
    existing = {p.name: p for p in CustomPreset.objects.all()}
    known_sources = set(PrometheusSource.objects.values_list("name", flat=True)) | state.get("sources", set())

    def make_form(entry: dict) -> PresetForm:
        instance = existing.get(entry.get("name")) or CustomPreset()
        return bind(PresetForm, entry, instance=instance, known_sources=known_sources)

    rows = [(form.instance, form.cleaned_data["source"]) for _, form in check_entries(doc, ("presets",), doc.data.get("presets"), make_form)]
    state["presets"] = {p.name for p, _ in rows}

    def write() -> dict[str, int]:
        sources = {s.name: s for s in PrometheusSource.objects.all()}
        created = sum(1 for p, _ in rows if p.pk is None)
        for preset, source_name in rows:
            preset.source = sources[source_name]
            preset.save()
        return _upsert_stats(created, len(rows) - created)

    return write


# --- services --------------------------------------------------------------------


# The sizing keys (poolboard.sizing), exported only when set so files without them stay as they were.
SIZING_KEYS = ("database", "pool_overflow", "replicas", "replicas_max", "pooler", "pooler_pool_size",
               "pooler_max_db_connections", "pooler_instances")
SIZING_DEFAULTS = {"database": "", "pool_overflow": 0, "replicas": None, "replicas_max": None, "pooler": "",
                   "pooler_pool_size": None, "pooler_max_db_connections": None, "pooler_instances": 1}


class ServiceForm(forms.ModelForm):
    file_fields = ("name", "source", "preset", "workers_per_instance", *SIZING_KEYS)
    source = Text()
    # "server" or "server/database": the monitored server its pools connect to (blank: learned).
    database = Text(required=False)
    pool_overflow = forms.IntegerField(min_value=0, initial=0)
    pooler_max_db_connections = forms.IntegerField(min_value=0, required=False)

    class Meta:
        model = Service
        fields = ["name", "preset", "workers_per_instance", "pool_overflow", "replicas", "replicas_max", "pooler",
                  "pooler_pool_size", "pooler_max_db_connections", "pooler_instances"]
        formfield_callback = yaml_formfield

    def __init__(self, *args, known_sources: set[str], known_presets: set[str], known_servers: set[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.known_sources = known_sources
        self.known_presets = known_presets
        self.known_servers = known_servers

    def clean_source(self) -> str:
        return known(self.cleaned_data["source"], self.known_sources, "no Prometheus source named {!r}")

    def clean_preset(self) -> str:
        return known(self.cleaned_data["preset"], self.known_presets, "unknown preset {!r}")

    def clean_database(self) -> tuple[str, str] | None:
        value = self.cleaned_data.get("database") or ""
        if not value:
            return None
        server, _, datname = value.partition("/")
        known(server, self.known_servers, "no monitored server named {!r} (give server or server/database)")
        return server, datname


def _database_key(s: Service, server_names: dict[int, str]) -> str:
    if s.server_id is None:
        return ""
    return f"{server_names[s.server_id]}/{s.datname}" if s.datname else server_names[s.server_id]


def export_services() -> list[dict]:
    from poolboard.databases.models import MonitoredServer  # databases imports fleet

    server_names = dict(MonitoredServer.objects.values_list("pk", "name"))
    out = []
    for s in Service.objects.select_related("source").order_by("name"):
        entry = {"name": s.name, "source": s.source.name, "preset": s.preset, "workers_per_instance": s.workers_per_instance}
        values = {key: getattr(s, key) for key in SIZING_KEYS if key != "database"}
        values["database"] = _database_key(s, server_names)
        entry.update({key: values[key] for key in SIZING_KEYS if values[key] != SIZING_DEFAULTS[key]})
        out.append(entry)
    return out


def import_services(doc: Document, state: dict) -> Writer:
    existing = {s.name: s for s in Service.objects.all()}
    known_sources = set(PrometheusSource.objects.values_list("name", flat=True)) | state.get("sources", set())
    known_presets = set(BUILTIN_PRESETS) | set(CustomPreset.objects.values_list("name", flat=True)) | state.get("presets", set())

    from poolboard.databases.models import MonitoredServer  # databases imports fleet

    # A service may name a server the same file defines (its `databases:` section comes later).
    in_file = {e.get("name") for e in doc.data.get("databases") or [] if isinstance(e, dict)}
    known_servers = set(MonitoredServer.objects.values_list("name", flat=True)) | in_file

    def make_form(entry: dict) -> ServiceForm:
        instance = existing.get(entry.get("name")) or Service()
        return bind(ServiceForm, entry, instance=instance, known_sources=known_sources, known_presets=known_presets,
                    known_servers=known_servers)

    forms_ok = [form for _, form in check_entries(doc, ("services",), doc.data.get("services"), make_form)]
    rows = [(form.instance, form.cleaned_data["source"], form.cleaned_data["database"]) for form in forms_ok]
    state["services"] = {s.name for s, _, _ in rows}

    def place() -> None:
        """After every section is written: the servers named in the file exist by then."""
        servers = {s.name: s for s in MonitoredServer.objects.all()}
        for service, _, database in rows:
            service.server, service.datname = (servers[database[0]], database[1]) if database else (None, "")
            service.save(update_fields=["server", "datname"])

    def write() -> dict[str, int]:
        sources = {s.name: s for s in PrometheusSource.objects.all()}
        created = sum(1 for s, _, _ in rows if s.pk is None)
        for service, source_name, _ in rows:
            service.source = sources[source_name]
            service.save()
        state.setdefault("after_writers", []).append(place)
        return _upsert_stats(created, len(rows) - created)

    return write


def register() -> None:
    """Called from FleetConfig.ready(): the fleet's sections, in the order they may reference each other."""
    register_section("sources", export_sources, import_sources)
    register_section("presets", export_presets, import_presets)
    register_section("services", export_services, import_services)
