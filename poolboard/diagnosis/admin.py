from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from poolboard.lib.diagnosis import Thresholds

from .models import AgentReport, Finding, ServiceThresholds


def check_overrides(overrides) -> dict:
    """Only known Thresholds names with positive numbers: a typo must not silently do nothing."""
    if not isinstance(overrides, dict):
        raise ValidationError('Give a JSON object such as {"leak_s": 120}.')
    known = set(Thresholds.__dataclass_fields__)
    errors = [f"{name!r} is not a threshold (known: {', '.join(sorted(known))})" for name in overrides if name not in known]
    errors += [
        f"{name} must be a positive number, not {value!r}"
        for name, value in overrides.items()
        if name in known and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0)
    ]
    if errors:
        raise ValidationError(errors)
    return overrides


class ServiceThresholdsForm(forms.ModelForm):
    class Meta:
        model = ServiceThresholds
        fields = ["service", "overrides"]

    def clean_overrides(self):
        return check_overrides(self.cleaned_data["overrides"])


@admin.register(ServiceThresholds)
class ServiceThresholdsAdmin(admin.ModelAdmin):
    form = ServiceThresholdsForm
    list_display = ["service", "overrides"]
    search_fields = ["service__name"]
    autocomplete_fields = ["service"]


@admin.register(Finding)
class FindingAdmin(admin.ModelAdmin):
    """Read-only history: findings are written by the diagnosis pass only."""

    list_display = ["service", "kind", "severity", "opened_at", "closed_at", "suspected_leaked", "summary"]
    list_filter = ["kind", "severity", ("closed_at", admin.EmptyFieldListFilter)]
    search_fields = ["service__name", "summary"]
    date_hierarchy = "opened_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AgentReport)
class AgentReportAdmin(admin.ModelAdmin):
    list_display = ["service_name", "instance", "function", "count", "oldest_hold_s", "received_at"]
    search_fields = ["service_name", "function"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
