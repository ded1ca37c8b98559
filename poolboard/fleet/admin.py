from __future__ import annotations

from django.contrib import admin, messages

from poolboard.lib.pools import FIELDS as CANONICAL_FIELDS

from .collection import collect_source, current_slot
from .discovery import discover_source
from .models import CollectionRun, CustomPreset, Pool, PrometheusSource, Service


@admin.register(PrometheusSource)
class PrometheusSourceAdmin(admin.ModelAdmin):
    list_display = ["name", "url", "enabled", "presets", "discovered_presets", "last_success_at", "last_error_at"]
    list_filter = ["enabled"]
    readonly_fields = ["created", "last_success_at", "last_error_at", "last_error", "discovered_presets", "discovered_at"]
    actions = ["collect_now", "discover_now"]

    @admin.action(description="Discover services and pools")
    def discover_now(self, request, queryset) -> None:
        for source in queryset:
            result = discover_source(source)
            level = messages.ERROR if result.status == "failed" else messages.INFO
            self.message_user(request, result.summary(), level)

    @admin.action(description="Collect now (one tick)")
    def collect_now(self, request, queryset) -> None:
        for source in queryset:
            result = collect_source(source, current_slot())
            if result.status == "failed":
                self.message_user(request, f"{source.name}: {result.error}", messages.ERROR)
            elif result.status == "skipped":
                self.message_user(request, f"{source.name}: {result.error}; try again in a few seconds.")
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
    fieldsets = [
        (None, {"fields": ["name", "source", "preset", "workers_per_instance", "created", "last_seen_at", "stale_since"]}),
        (
            "Sizing",
            {
                "description": "What the connection budget must allow for where the exporter cannot tell "
                "(the Sizing page adds these up per server). Blank server: learned from where the snapshots see "
                "its sessions.",
                "fields": ["server", "datname", "pool_overflow", "replicas", "replicas_max"],
            },
        ),
        (
            "PgBouncer in front",
            {
                "description": "Services naming the same PgBouncer share its server-side pool: the server sees "
                "default_pool_size × instances (capped by max_db_connections), whatever the pools behind it ask.",
                "fields": ["pooler", "pooler_pool_size", "pooler_max_db_connections", "pooler_instances"],
            },
        ),
    ]


@admin.register(CollectionRun)
class CollectionRunAdmin(admin.ModelAdmin):
    list_display = ["source", "slot", "status", "started", "duration_s", "queries", "samples", "error"]
    list_filter = ["status", "source"]
    readonly_fields = [f.name for f in CollectionRun._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(CustomPreset)
class CustomPresetAdmin(admin.ModelAdmin):
    """Saving runs every template against the chosen source; Prometheus' error lands on the field."""

    list_display = ["name", "title", "source", "marker", "service_label", "pool_label"]
    search_fields = ["name", "title", "marker"]
    fieldsets = [
        (None, {"fields": ["name", "title", "source", "marker", "notes"]}),
        ("Identity labels", {"fields": ["service_label", "instance_label", "pool_label"]}),
        (
            "PromQL templates",
            {
                "description": "One template per field the exporter can give; leave the others empty (absent, never 0). "
                "Placeholders: $by (identity labels: write sum by ($by) (...)), $sel (extra matchers, "
                "e.g. my_metric{state=\"used\",$sel}), $w (the source's rate window).",
                "fields": [f"{f}_query" for f in CANONICAL_FIELDS],
            },
        ),
    ]
