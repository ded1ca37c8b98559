"""Inventory as code: parse and check an inventory YAML file, keeping each value's line.

Pure: no Django, no I/O. `parse` turns the text into plain data plus the line of every
value (from yaml's node marks), so every problem can name its line and field:

    line 14: services[2].workers_per_instance: Enter a whole number.

Checking each entry (a Django form per section, poolboard.inventory.forms) and writing
it are the apps' business, after everything was checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

VERSION = 1
Path = tuple[Any, ...]


def path_text(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class Problem:
    line: int | None
    path: Path
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        field_name = path_text(self.path)
        return f"{where}{field_name}: {self.message}" if field_name else f"{where}{self.message}"


class InventoryError(Exception):
    """The file cannot be imported; `problems` lists every reason, in file order."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line or 0, path_text(p.path)))
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class Document:
    data: dict[str, Any]
    lines: dict[Path, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def line(self, path: Path) -> int | None:
        """The line of `path`, else of its nearest parent that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def problem(self, path: Path, message: str) -> None:
        self.problems.append(Problem(self.line(path), path, message))

    def check(self) -> None:
        if self.problems:
            raise InventoryError(self.problems)


def _construct(node: yaml.Node, path: Path, doc: Document, loader: yaml.SafeLoader) -> Any:
    doc.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                doc.problem(path, "keys must be plain names")
                continue
            key = key_node.value
            if key in out:
                doc.lines[(*path, key)] = key_node.start_mark.line + 1
                doc.problem((*path, key), "appears twice")
                continue
            out[key] = _construct(value_node, (*path, key), doc, loader)
            doc.lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), doc, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def parse(text: str, known_sections: Iterable[str]) -> Document:
    """Parse inventory YAML. Raises InventoryError for syntax errors and unknown sections."""
    loader = yaml.SafeLoader("")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise InventoryError([Problem(line, (), f"not valid YAML: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise InventoryError([Problem(None, (), f"not valid YAML: {exc}")]) from None
    doc = Document(data={})
    if root is None:
        return doc
    if not isinstance(root, yaml.MappingNode):
        raise InventoryError([Problem(root.start_mark.line + 1, (), "the file must be a mapping of sections")])
    data = _construct(root, (), doc, loader)
    doc.data = data
    known = list(known_sections)
    version = data.pop("version", VERSION)
    if version != VERSION:
        doc.problem(("version",), f"this poolboard reads version {VERSION}, not {version!r}")
    for name, value in data.items():
        if name not in known:
            doc.problem((name,), f"unknown section (known: {', '.join(known)})")
        elif value is not None and not isinstance(value, list):
            doc.problem((name,), "must be a list of entries (- name: ...)")
    doc.check()
    return doc


def dump(version: int, sections: Mapping[str, list[Mapping[str, Any]]]) -> str:
    """Deterministic YAML: sections and fields in the given order, entries as given."""
    body = {"version": version}
    body.update({name: [dict(entry) for entry in entries] for name, entries in sections.items()})
    return yaml.safe_dump(body, sort_keys=False, allow_unicode=True, default_flow_style=False, width=4096)
