from __future__ import annotations

from django.contrib import admin, messages

from .collection import collect_source, current_slot
from .models import CollectionRun, Pool, PrometheusSource, Service


@admin.register(PrometheusSource)
class PrometheusSourceAdmin(admin.ModelAdmin):
    list_display = ["name", "url", "enabled", "presets", "last_success_at", "last_error_at"]
    list_filter = ["enabled"]
    readonly_fields = ["created", "last_success_at", "last_error_at", "last_error"]
    actions = ["collect_now"]

    @admin.action(description="Collect now (one tick)")
    def collect_now(self, request, queryset) -> None:
        for source in queryset:
            result = collect_source(source, current_slot())
            if result.status == "failed":
                self.message_user(request, f"{source.name}: {result.error}", messages.ERROR)
            elif result.status == "skipped":
                self.message_user(request, f"{source.name}: this slot was already collected; try again in a few seconds.")
            else:
                self.message_user(request, f"{source.name}: {result.samples} pools from {result.queries} queries.")


class PoolInline(admin.TabularInline):
    model = Pool
    extra = 0
    fields = ["instance", "name", "max", "in_use", "idle", "pending", "timeouts", "sampled_at"]
    readonly_fields = fields
    can_delete = False


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ["name", "source", "preset", "workers_per_instance", "last_seen_at", "stale_since"]
    list_filter = ["source", "preset"]
    search_fields = ["name"]
    readonly_fields = ["created", "last_seen_at", "stale_since"]
    inlines = [PoolInline]


@admin.register(CollectionRun)
class CollectionRunAdmin(admin.ModelAdmin):
    list_display = ["source", "slot", "status", "started", "duration_s", "queries", "samples", "error"]
    list_filter = ["status", "source"]
    readonly_fields = [f.name for f in CollectionRun._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
