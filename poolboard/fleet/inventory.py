"""The fleet's sections of the inventory file: Prometheus sources, custom presets, services.

    sources:
      - {name: prod, url: http://prometheus:9090, presets: [hikaricp], rate_window: 5m, ...}
    presets:
      - {name: acme, source: prod, marker: acme_pool_busy, queries: {in_use: ..., max: ...}, ...}
    services:
      - {name: checkout, source: prod, preset: hikaricp, workers_per_instance: 4}

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


class ServiceForm(forms.ModelForm):
    file_fields = ("name", "source", "preset", "workers_per_instance")
    source = Text()

    class Meta:
        model = Service
        fields = ["name", "preset", "workers_per_instance"]
        formfield_callback = yaml_formfield

    def __init__(self, *args, known_sources: set[str], known_presets: set[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.known_sources = known_sources
        self.known_presets = known_presets

    def clean_source(self) -> str:
        return known(self.cleaned_data["source"], self.known_sources, "no Prometheus source named {!r}")

    def clean_preset(self) -> str:
        return known(self.cleaned_data["preset"], self.known_presets, "unknown preset {!r}")


def export_services() -> list[dict]:
    return [
        {"name": s.name, "source": s.source.name, "preset": s.preset, "workers_per_instance": s.workers_per_instance}
        for s in Service.objects.select_related("source").order_by("name")
    ]


def import_services(doc: Document, state: dict) -> Writer:
    existing = {s.name: s for s in Service.objects.all()}
    known_sources = set(PrometheusSource.objects.values_list("name", flat=True)) | state.get("sources", set())
    known_presets = set(BUILTIN_PRESETS) | set(CustomPreset.objects.values_list("name", flat=True)) | state.get("presets", set())

    def make_form(entry: dict) -> ServiceForm:
        instance = existing.get(entry.get("name")) or Service()
        return bind(ServiceForm, entry, instance=instance, known_sources=known_sources, known_presets=known_presets)

    rows = [(form.instance, form.cleaned_data["source"]) for _, form in check_entries(doc, ("services",), doc.data.get("services"), make_form)]
    state["services"] = {s.name for s, _ in rows}

    def write() -> dict[str, int]:
        sources = {s.name: s for s in PrometheusSource.objects.all()}
        created = sum(1 for s, _ in rows if s.pk is None)
        for service, source_name in rows:
            service.source = sources[source_name]
            service.save()
        return _upsert_stats(created, len(rows) - created)

    return write


def register() -> None:
    """Called from FleetConfig.ready(): the fleet's sections, in the order they may reference each other."""
    register_section("sources", export_sources, import_sources)
    register_section("presets", export_presets, import_presets)
    register_section("services", export_services, import_services)
