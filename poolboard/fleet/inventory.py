"""Inventory as code: export and import Prometheus sources, custom presets and services.

Other apps add their own sections with `register_section` (the databases app adds
`databases:`). The contract of a section:

- `export_fn() -> list[dict]`: the section's entries, ordered (by name), each a dict
  whose keys come in a fixed order; values are YAML scalars, lists or dicts. Export
  must be deterministic: export → wipe → import → export is byte-identical.
- `import_fn(doc, state) -> writer`: *checks* the entries of `doc.data[name]` without
  writing anything; every problem goes to `doc.problem(path, message)` (the path, e.g.
  `(name, index, "field")`, gives the line). It may record what it defines in `state`
  (a dict shared by all sections, e.g. `state["sources"]` = source names in the file)
  for later sections to resolve references. It returns a zero-argument writer that
  creates or updates the rows; writers run only when no section reported a problem,
  in registration order, inside one transaction.

Import creates and updates by name; it never deletes anything that is not in the file.
Register from your AppConfig.ready() so the commands see the section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from django.core.exceptions import ValidationError
from django.db import transaction

from poolboard.lib import inventory as inv
from poolboard.lib.inventory import Document, Field, InventoryError, Path
from poolboard.lib.pools import FIELDS
from poolboard.lib.presets import BUILTIN_PRESETS

from .models import CustomPreset, PrometheusSource, Service

Writer = Callable[[], Any]


@dataclass(frozen=True)
class Section:
    name: str
    export_fn: Callable[[], list[dict]]
    import_fn: Callable[[Document, dict], Writer | None]


_SECTIONS: dict[str, Section] = {}


def register_section(name: str, export_fn: Callable[[], list[dict]], import_fn: Callable[[Document, dict], Writer | None]) -> None:
    """Add (or replace) a top-level section; sections export and import in registration order."""
    _SECTIONS[name] = Section(name, export_fn, import_fn)


def sections() -> list[Section]:
    return list(_SECTIONS.values())


def export_inventory() -> str:
    return inv.dump(inv.VERSION, {s.name: s.export_fn() for s in sections()})


def import_inventory(text: str) -> dict[str, Any]:
    """Check the whole file, then write it in one transaction. Raises InventoryError; then nothing changed.

    1. Parse (syntax, unknown sections), keeping every value's line.
    2. Every section checks its entries and returns a writer; problems are collected
       across all sections so the user sees them all at once.
    3. Only if there are none: run every writer in one transaction.
    """
    doc = inv.parse(text, [s.name for s in sections()])
    state: dict[str, Any] = {}
    writers: list[tuple[str, Writer]] = []
    for section in sections():
        writer = section.import_fn(doc, state)
        if writer is not None:
            writers.append((section.name, writer))
    doc.check()
    results: dict[str, Any] = {}
    with transaction.atomic():
        for name, writer in writers:
            results[name] = writer()
    return results


def model_problems(doc: Document, path: Path, exc: ValidationError, field_paths: dict[str, Path] | None = None) -> None:
    """Report a model's ValidationError on the inventory fields it names."""
    for model_field, messages in exc.message_dict.items():
        if model_field == "__all__":
            target = path
        else:
            target = (*path, *(field_paths or {}).get(model_field, (model_field,)))
        for message in messages:
            doc.problem(target, message)


def _upsert_stats(created: int, updated: int) -> dict[str, int]:
    return {"created": created, "updated": updated}


# --- sources ---------------------------------------------------------------------

SOURCE_FIELDS = [
    Field("name", "str", required=True),
    Field("url", "str", required=True),
    Field("enabled", "bool", default=True),
    Field("timeout_s", "float", default=10.0),
    Field("rate_window", "str", default="5m"),
    Field("bearer_token_env", "str", default=""),
    Field("presets", "str_list", default=list),
    Field("service_label", "str", default=""),
]


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
    records = inv.check_records(doc, "sources", SOURCE_FIELDS)
    existing = {s.name: s for s in PrometheusSource.objects.all()}
    known_presets = set(BUILTIN_PRESETS) | set(CustomPreset.objects.values_list("name", flat=True)) | _preset_names_in_file(doc)
    rows: list[PrometheusSource] = []
    for path, values in records:
        source = existing.get(values["name"]) or PrometheusSource(name=values["name"])
        for key, value in values.items():
            setattr(source, key, value)
        bad = False
        try:
            source.clean_fields(exclude=["presets", "discovered_presets"])
        except ValidationError as exc:
            model_problems(doc, path, exc)
            bad = True
        for i, preset in enumerate(values["presets"]):
            if preset not in known_presets:
                doc.problem((*path, "presets", i), f"unknown preset {preset!r}")
                bad = True
        if not bad:
            rows.append(source)
    state["sources"] = {s.name for s in rows}

    def write() -> dict[str, int]:
        created = sum(1 for s in rows if s.pk is None)
        for source in rows:
            source.save()
        return _upsert_stats(created, len(rows) - created)

    return write


# --- custom presets --------------------------------------------------------------

PRESET_FIELDS = [
    Field("name", "str", required=True),
    Field("title", "str", default=""),
    Field("source", "str", required=True),
    Field("marker", "str", required=True),
    Field("service_label", "str", default="job"),
    Field("instance_label", "str", default="instance"),
    Field("pool_label", "str", default=""),
    Field("notes", "str", default=""),
    Field("queries", "str_map", required=True),
]


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
    records = inv.check_records(doc, "presets", PRESET_FIELDS)
    existing = {p.name: p for p in CustomPreset.objects.all()}
    db_sources = set(PrometheusSource.objects.values_list("name", flat=True))
    rows: list[tuple[CustomPreset, str]] = []
    for path, values in records:
        queries = values["queries"]
        bad = False
        for canonical_field in queries:
            if canonical_field not in FIELDS:
                doc.problem((*path, "queries", canonical_field), f"not a canonical field (known: {', '.join(FIELDS)})")
                bad = True
        if values["source"] not in db_sources | state.get("sources", set()):
            doc.problem((*path, "source"), f"no Prometheus source named {values['source']!r}")
            bad = True
        preset = existing.get(values["name"]) or CustomPreset(name=values["name"])
        for key in ("title", "marker", "service_label", "instance_label", "pool_label", "notes"):
            setattr(preset, key, values[key])
        for canonical_field in FIELDS:
            setattr(preset, f"{canonical_field}_query", queries.get(canonical_field, ""))
        # Checked locally (names, labels, placeholders); not run against Prometheus here:
        # a file is imported whole or not at all, whatever Prometheus is doing right now.
        preset.check_against_source = False
        source_id = preset.source_id
        preset.source_id = None
        field_paths = {f"{f}_query": ("queries", f) for f in FIELDS}
        try:
            preset.clean_fields(exclude=["source"])
            preset.clean()
        except ValidationError as exc:
            model_problems(doc, path, exc, field_paths)
            bad = True
        preset.source_id = source_id
        if not bad:
            rows.append((preset, values["source"]))
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

SERVICE_FIELDS = [
    Field("name", "str", required=True),
    Field("source", "str", required=True),
    Field("preset", "str", required=True),
    Field("workers_per_instance", "int", default=1),
]


def export_services() -> list[dict]:
    return [
        {"name": s.name, "source": s.source.name, "preset": s.preset, "workers_per_instance": s.workers_per_instance}
        for s in Service.objects.select_related("source").order_by("name")
    ]


def import_services(doc: Document, state: dict) -> Writer:
    records = inv.check_records(doc, "services", SERVICE_FIELDS)
    sources = set(PrometheusSource.objects.values_list("name", flat=True)) | state.get("sources", set())
    presets = set(BUILTIN_PRESETS) | set(CustomPreset.objects.values_list("name", flat=True)) | state.get("presets", set())
    rows: list[dict[str, Any]] = []
    for path, values in records:
        bad = False
        if values["source"] not in sources:
            doc.problem((*path, "source"), f"no Prometheus source named {values['source']!r}")
            bad = True
        if values["preset"] not in presets:
            doc.problem((*path, "preset"), f"unknown preset {values['preset']!r}")
            bad = True
        max_name = Service._meta.get_field("name").max_length
        if len(values["name"]) > max_name or not values["name"]:
            doc.problem((*path, "name"), f"must be 1 to {max_name} characters")
            bad = True
        if not bad:
            rows.append(values)
    state["services"] = {values["name"] for values in rows}

    def write() -> dict[str, int]:
        by_name = {s.name: s for s in PrometheusSource.objects.all()}
        created = 0
        for values in rows:
            _, was_created = Service.objects.update_or_create(
                name=values["name"],
                defaults={
                    "source": by_name[values["source"]],
                    "preset": values["preset"],
                    "workers_per_instance": values["workers_per_instance"],
                },
            )
            created += was_created
        return _upsert_stats(created, len(rows) - created)

    return write


register_section("sources", export_sources, import_sources)
register_section("presets", export_presets, import_presets)
register_section("services", export_services, import_services)

__all__ = ["Field", "InventoryError", "export_inventory", "import_inventory", "model_problems", "register_section"]
