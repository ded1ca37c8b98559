"""Inventory as code: the registry of the file's top-level sections.

Each app registers its sections from its AppConfig.ready() (fleet: `sources:`,
`presets:`, `services:`; databases: `databases:`). The contract of a section:

- `export_fn() -> list[dict]`: the section's entries, ordered (by name), each a dict
  whose keys come in a fixed order; values are YAML scalars, lists or dicts. Export
  must be deterministic: export → wipe → import → export is byte-identical.
- `import_fn(doc, state) -> writer`: *checks* the entries of `doc.data[name]` without
  writing anything, each through the section's form (poolboard.inventory.forms);
  every problem lands on `doc` with its line. It may record what it defines in
  `state` (a dict shared by all sections, e.g. `state["sources"]` = source names in
  the file) for later sections to resolve references. It returns a zero-argument
  writer that creates or updates the rows; writers run only when no section reported
  a problem, in registration order, inside one transaction; a writer may append
zero-argument callables to `state["after_writers"]`, run after every writer in the
same transaction (to point at rows a later section creates).

Import creates and updates by name; it never deletes anything that is not in the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from poolboard.lib import inventory as inv
from poolboard.lib.inventory import Document, InventoryError

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


def unregister_section(name: str) -> None:
    _SECTIONS.pop(name, None)


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
        # References to rows a later section writes (a service's server): writers queue them here.
        for finish in state.get("after_writers", []):
            finish()
    return results


__all__ = ["InventoryError", "Section", "Writer", "export_inventory", "import_inventory", "register_section", "sections"]
