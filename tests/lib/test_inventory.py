"""Inventory parsing: every problem names its line and field."""

from __future__ import annotations

import pytest

from poolboard.lib.inventory import Field, InventoryError, check_records, dump, parse

SECTIONS = ["sources", "services"]
FIELDS = [Field("name", "str", required=True), Field("workers", "int", default=1), Field("on", "bool", default=True)]


def problems(text: str) -> list[str]:
    with pytest.raises(InventoryError) as caught:
        doc = parse(text, SECTIONS)
        check_records(doc, "services", FIELDS)
        doc.check()
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


def test_field_problems_name_line_and_field() -> None:
    text = "services:\n  - name: a\n    workers: two\n  - workers: 3\n  - name: a\n    colour: red\n    on: maybe\n"
    assert problems(text) == [
        "line 3: services[0].workers: must be a whole number ≥ 1, not 'two'",
        "line 4: services[1]: name is required",
        "line 5: services[2].name: 'a' already appears in services[0]",
        "line 6: services[2].colour: unknown field (known: name, workers, on)",
        "line 7: services[2].on: must be true or false, not 'maybe'",
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
    records = check_records(doc, "services", FIELDS)
    assert records == [(("services", 0), {"name": "a\"b\nc", "workers": 2, "on": False})]
