"""Reports are read-only here (stored once); staff subscribe team addresses here."""

from __future__ import annotations

from django.contrib import admin
from django.utils import timezone

from .models import Report, Subscription


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ["week", "version", "period_start", "period_end", "created", "created_by", "demo"]
    list_filter = ["demo"]
    readonly_fields = [f.name for f in Report._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False  # `manage.py report --week` builds them

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "user", "email", "active", "next_send_at", "last_sent_week"]
    list_filter = ["active", "weekday"]
    fields = ["user", "email", "active", "weekday", "hour", "time_zone", "services", "databases", "next_send_at",
              "last_sent_week"]
    readonly_fields = ["next_send_at", "last_sent_week"]
    raw_id_fields = ["user"]

    def save_model(self, request, obj, form, change) -> None:
        obj.next_send_at = obj.next_send_after(timezone.now())
        super().save_model(request, obj, form, change)
