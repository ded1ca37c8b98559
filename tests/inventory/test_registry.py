"""The inventory registry and its one way of checking entries (a Django form per section)."""

from __future__ import annotations

from io import StringIO

import pytest
from django import forms
from django.core.management import call_command

from poolboard.fleet.models import PrometheusSource
from poolboard.inventory.forms import Flag, Text, bind, check_entries
from poolboard.inventory.registry import import_inventory, register_section, unregister_section
from poolboard.lib.inventory import InventoryError, parse

pytestmark = pytest.mark.django_db


class ThingForm(forms.Form):
    file_fields = ("name", "size", "on")
    name = Text()
    size = forms.IntegerField(min_value=0, initial=1)
    on = Flag(initial=True)


def thing_problems(text: str) -> tuple[list[str], list[dict]]:
    doc = parse(text, ["things"])
    valid = check_entries(doc, ("things",), doc.data.get("things"), lambda entry: bind(ThingForm, entry))
    return [str(p) for p in InventoryError(doc.problems).problems], [form.cleaned_data for _, form in valid]


def test_it_reports_each_form_error_on_its_line_and_field() -> None:
    text = (
        "things:\n  - name: a\n    size: two\n  - size: 3\n  - name: a\n    colour: red\n    on: maybe\n"
        "  - name: 7\n  - just text\n  - name: ok\n"
    )
    problems, valid = thing_problems(text)
    assert problems == [
        "line 3: things[0].size: Enter a whole number.",
        "line 4: things[1].name: This field is required.",
        "line 5: things[2].name: 'a' already appears in things[0]",
        "line 6: things[2].colour: unknown field (known: name, size, on)",
        "line 7: things[2].on: must be true or false, not 'maybe'",
        "line 8: things[3].name: must be text, not 7",
        "line 9: things[4]: must be a mapping (name: ..., ...)",
    ]
    # An absent key takes the field's initial value.
    assert valid == [{"name": "ok", "size": 1, "on": True}]


def test_it_keeps_text_as_written() -> None:
    _, valid = thing_problems('things:\n  - name: " padded\\n"\n    on: false\n')
    assert valid == [{"name": " padded\n", "size": 1, "on": False}]


def export() -> str:
    out = StringIO()
    call_command("exportinventory", stdout=out)
    return out.getvalue()


def test_a_failure_while_writing_rolls_everything_back() -> None:
    def explode() -> None:
        raise RuntimeError("disk full")

    register_section("boom", lambda: [], lambda doc, state: explode)
    try:
        with pytest.raises(RuntimeError):
            import_inventory("sources:\n- name: brand-new\n  url: http://p:9090\n")
    finally:
        unregister_section("boom")
    assert not PrometheusSource.objects.filter(name="brand-new").exists()


def test_other_apps_can_add_a_section() -> None:
    seen = []

    def import_things(doc, state):
        valid = check_entries(doc, ("things",), doc.data.get("things"), lambda entry: bind(ThingForm, entry))
        return lambda: seen.extend(form.cleaned_data for _, form in valid)

    register_section("things", lambda: [{"name": "a", "size": 1, "on": True}], import_things)
    try:
        assert export().endswith("things:\n- name: a\n  size: 1\n  'on': true\n")
        with pytest.raises(InventoryError) as caught:
            import_inventory("things:\n- name: b\n  size: -1\n")
        assert str(caught.value) == "line 3: things[0].size: Ensure this value is greater than or equal to 0."
        assert seen == []
        import_inventory("things:\n- name: b\n  size: 2\n")
        assert seen == [{"name": "b", "size": 2, "on": True}]
    finally:
        unregister_section("things")


def test_the_sections_come_in_the_order_they_may_reference_each_other() -> None:
    from poolboard.inventory.registry import sections

    assert [s.name for s in sections()][:4] == ["sources", "presets", "services", "databases"]
