"""Inventory parsing: every problem names its line and field."""

from __future__ import annotations

import pytest

from poolboard.lib.inventory import InventoryError, dump, parse

SECTIONS = ["sources", "services"]


def problems(text: str) -> list[str]:
    with pytest.raises(InventoryError) as caught:
        parse(text, SECTIONS)  # parse() checks syntax, sections and version itself
    return [str(p) for p in caught.value.problems]


def test_a_syntax_error_names_its_line() -> None:
    assert problems("services:\n  - name: a\n    workers: [1\n") == [
        "line 4: not valid YAML: expected ',' or ']', but got '<stream end>'"
    ]


def test_unknown_sections_and_versions_are_named() -> None:
    assert problems("version: 2\nservice:\n  - name: a\n") == [
        "line 1: version: this poolboard reads version 1, not 2",
        "line 2: service: unknown section (known: sources, services)",
    ]


def test_it_names_the_line_of_any_value_and_falls_back_to_the_parent() -> None:
    doc = parse("services:\n  - name: a\n    workers: two\n  - workers: 3\n", SECTIONS)
    doc.problem(("services", 0, "workers"), "must be a whole number")
    doc.problem(("services", 1, "name"), "is required")  # absent: the entry's line
    assert [str(p) for p in doc.problems] == [
        "line 3: services[0].workers: must be a whole number",
        "line 4: services[1].name: is required",
    ]


def test_duplicate_keys_are_refused() -> None:
    assert problems("services:\n  - name: a\n    name: b\n") == ["line 3: services[0].name: appears twice"]


def test_a_section_must_be_a_list() -> None:
    assert problems("services:\n  name: a\n") == ["line 1: services: must be a list of entries (- name: ...)"]


def test_dump_is_deterministic_and_parses_back() -> None:
    sections = {"services": [{"name": "a\"b\nc", "workers": 2, "on": False}], "sources": []}
    text = dump(1, sections)
    assert text == dump(1, sections)
    doc = parse(text, SECTIONS)
    assert doc.data == sections
