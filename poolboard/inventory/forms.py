"""The one way an inventory entry is checked: a Django form per section.

Each entry of a section is bound to the section's form (a ModelForm of the row it
creates or updates, with the file's references as names), so the admin and the file
refuse the same values with the same messages: model validators and Model.clean()
run through the form. `check_entries` binds every entry and reports each form error
on the entry's line and field:

    line 14: services[2].workers_per_instance: Ensure this value is greater than or equal to 1.

The form fields here take YAML values as they come instead of coercing them the way
HTML form fields coerce strings: text must be text and a flag true or false.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models

from poolboard.lib.inventory import Document, Path, path_text


class Text(forms.CharField):
    """Text as written: no stripping (export → import must give the same bytes), no numbers coerced."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("strip", False)
        super().__init__(**kwargs)

    def to_python(self, value):
        if value not in self.empty_values and not isinstance(value, str):
            raise ValidationError(f"must be text, not {value!r}")
        return super().to_python(value)


class Flag(forms.Field):
    """true or false. (forms.BooleanField's checkbox reads any non-empty value as true.)"""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_python(self, value):
        if not isinstance(value, bool):
            raise ValidationError(f"must be true or false, not {value!r}")
        return value


class NameList(forms.Field):
    def to_python(self, value):
        if value in (None, ""):
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValidationError(f"must be a list of names, not {value!r}")
        return value


class TextMap(forms.Field):
    def to_python(self, value):
        if value in (None, ""):
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ValidationError("must map names to text")
        return value


class MapList(forms.Field):
    def to_python(self, value):
        if value in (None, ""):
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ValidationError("must be a list of mappings (- key: value)")
        return value


class Refused(forms.Field):
    """A key the file must not have (a secret given in clear), with the message saying what to do instead."""

    def __init__(self, message: str, **kwargs) -> None:
        super().__init__(required=False, **kwargs)
        self.message = message

    def validate(self, value) -> None:
        if value not in (None, ""):
            raise ValidationError(self.message)


def known(value: str, names: set[str], message: str) -> str:
    """A name the entry refers to, if it exists (in the database or earlier in the file)."""
    if value not in names:
        raise ValidationError(message.format(value))
    return value


def at(index: Any, message: str) -> ValidationError:
    """An error on one item of a list or map field: its path ends with `index`."""
    return ValidationError(message, params={"at": index})


def yaml_formfield(model_field: models.Field, **kwargs) -> forms.Field | None:
    """ModelForm fields (Meta.formfield_callback) for YAML values; the initial value is the model default."""

    if isinstance(model_field, models.BooleanField):
        field = Flag()
    elif model_field.choices or not isinstance(model_field, (models.CharField, models.TextField)):
        if isinstance(model_field, models.PositiveIntegerField):
            kwargs.setdefault("min_value", 1)  # no port, size or threshold in the file is meaningful at 0
        field = model_field.formfield(**kwargs)
    else:
        field = Text(max_length=model_field.max_length, required=not model_field.blank)
    if field is not None and model_field.has_default():
        field.initial = model_field.get_default()
    return field


def bind(form_class: type[forms.BaseForm], entry: dict, **kwargs) -> forms.BaseForm:
    """The form bound to an entry; a key that is absent (or null) takes the field's initial value."""
    data = {}
    for name, field in form_class.base_fields.items():
        initial = field.initial() if callable(field.initial) else field.initial
        data[name] = entry[name] if entry.get(name) is not None else initial
    return form_class(data=data, **kwargs)


def report(doc: Document, path: Path, form: forms.BaseForm) -> None:
    """Each of the form's errors on `doc`, at the entry's field (or the entry for errors of the whole form)."""
    paths = getattr(form, "paths", {})
    for name, errors in form.errors.as_data().items():
        base = () if name == NON_FIELD_ERRORS else paths.get(name, (name,))
        for error in errors:
            index = (error.params or {}).get("at")
            where = (*path, *base, index) if index is not None else (*path, *base)
            for message in error.messages:
                doc.problem(where, message)


def check_entries(
    doc: Document, path: Path, entries: Iterable[Any], make_form: Callable[[dict], forms.BaseForm], unique: str = "name"
) -> list[tuple[Path, forms.BaseForm]]:
    """Bind every entry of the list at `path` to its form; the valid ones, as (path, form).

    Every problem goes to `doc`: an entry that is not a mapping, keys the form does not
    know, a `unique` value (name) that repeats, and the form's own errors. A section's
    form class says what it reads from the file:
    `file_fields`: the keys an entry may have, in the order export writes them;
    `paths` (optional): where a form field's errors belong in the entry when its
    key differs (e.g. CustomPreset.in_use_query ↔ queries.in_use).
    """
    valid: list[tuple[Path, forms.BaseForm]] = []
    seen: dict[Any, int] = {}
    for index, entry in enumerate(entries or []):
        entry_path: Path = (*path, index)
        if not isinstance(entry, dict):
            doc.problem(entry_path, "must be a mapping (name: ..., ...)")
            continue
        form = make_form(entry)
        known = form.file_fields
        ok = True
        for key in entry:
            if key not in known:
                doc.problem((*entry_path, key), f"unknown field (known: {', '.join(known)})")
                ok = False
        value = entry.get(unique)
        if isinstance(value, str) and value:
            if value in seen:
                doc.problem((*entry_path, unique), f"{value!r} already appears in {path_text(path)}[{seen[value]}]")
                ok = False
            seen.setdefault(value, index)
        if not form.is_valid():
            report(doc, entry_path, form)
            ok = False
        if ok:
            valid.append((entry_path, form))
    return valid

