from __future__ import annotations

from django.contrib import admin

from .admin_backtest import BacktestMixin
from .models import AlertInstance, AlertRule, AlertTransition, RuleOverride


class RuleOverrideInline(admin.TabularInline):
    model = RuleOverride
    extra = 0
    autocomplete_fields = ["service"]


@admin.register(AlertRule)
class AlertRuleAdmin(BacktestMixin, admin.ModelAdmin):
    """Every field is checked by AlertRule.clean: each problem is shown on its own field."""

    list_display = ["name", "enabled", "signal", "comparator", "threshold", "for_s", "severity", "health",
                    "last_evaluated_at"]
    list_filter = ["enabled", "signal", "severity"]
    search_fields = ["name", "summary", "origin"]
    filter_horizontal = ["channels"]
    inlines = [RuleOverrideInline]
    readonly_fields = ["last_evaluated_at", "last_error", "last_error_at", "failing_evaluations", "evaluations_missed"]
    fieldsets = [
        (None, {"fields": ["name", "enabled", "severity", "origin"]}),
        ("Condition", {"fields": ["signal", "finding_kind", "comparator", "threshold", "for_s", "keep_firing_for_s",
                                  "no_data", "max_instances"]}),
        ("Selection", {"fields": ["service_glob", "service_labels", "database_glob"]}),
        ("Notification", {"fields": ["labels", "summary", "description", "channels"]}),
        ("Health", {"fields": ["last_evaluated_at", "last_error", "last_error_at", "failing_evaluations",
                               "evaluations_missed"]}),
    ]

    @admin.display(description="health")
    def health(self, rule: AlertRule) -> str:
        return rule.health


@admin.register(RuleOverride)
class RuleOverrideAdmin(admin.ModelAdmin):
    list_display = ["rule", "service", "threshold"]
    search_fields = ["rule__name", "service__name"]
    autocomplete_fields = ["service"]


@admin.register(AlertInstance)
class AlertInstanceAdmin(admin.ModelAdmin):
    """Written by the evaluation only."""

    list_display = ["rule", "subject", "state", "value", "active_since", "fired_at", "resolved_at"]
    list_filter = ["state", "rule"]
    search_fields = ["rule__name", "fingerprint"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AlertTransition)
class AlertTransitionAdmin(admin.ModelAdmin):
    list_display = ["rule", "instance", "at", "from_state", "to_state", "value", "reason"]
    list_filter = ["to_state", "rule"]
    date_hierarchy = "at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
