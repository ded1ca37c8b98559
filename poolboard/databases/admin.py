from __future__ import annotations

from django.contrib import admin, messages

from .models import AttributionRule, BackendAction, Episode, MonitoredServer, QueryFingerprint, ServerDatabase, Snapshot
from .snapshots import snapshot_server


class ServerDatabaseInline(admin.TabularInline):
    """The databases seen on the server (pg_database and its sessions), kept by the snapshots."""

    model = ServerDatabase
    fields = readonly_fields = ["datname", "first_seen", "last_seen"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(MonitoredServer)
class MonitoredServerAdmin(admin.ModelAdmin):
    list_display = ["name", "host", "port", "dbname", "user", "enabled", "server_version", "last_snapshot_at", "last_error_kind"]
    list_filter = ["enabled"]
    search_fields = ["name", "host", "dbname"]
    readonly_fields = ["created", "last_snapshot_at", "last_error_at", "last_error", "last_error_kind", "server_version",
                       "in_recovery", "wal_sender_host", "wal_sender_port"]
    fieldsets = [
        (None, {"fields": ["name", "enabled"]}),
        ("Connection", {
            "fields": ["host", "port", "dbname", "user", "sslmode", "password_env", "password_file"],
            "description": "The password is referenced (environment variable or file), never stored here.",
        }),
        ("Episode thresholds", {"fields": ["idle_in_transaction_s", "query_s", "transaction_s"]}),
        ("Replication", {
            "fields": ["primary"],
            "description": "A hot standby needs max_connections at least its primary's, or recovery stops: "
                           "the Sizing page, the server page and checkdatabase say so.",
        }),
        ("Cancel / terminate (needs ALLOW_BACKEND_SIGNALS)", {
            "fields": ["admin_user", "admin_password_env", "admin_password_file"],
            "classes": ["collapse"],
        }),
        ("Status", {"fields": readonly_fields}),
    ]
    inlines = [ServerDatabaseInline]
    actions = ["check_connection", "snapshot_now"]

    @admin.action(description="Check connection")
    def check_connection(self, request, queryset) -> None:
        for db in queryset:
            result = db.check_connection()
            if not result.ok:
                self.message_user(request, f"{db.name}: {result.error_kind or 'error'}: {result.error}", messages.ERROR)
                continue
            visible = "query text visible" if result.can_read_all_stats else "query text HIDDEN"
            self.message_user(
                request,
                f"{db.name}: reachable, PostgreSQL {result.server_version}, max_connections {result.max_connections}, {visible}.",
            )
            for warning in result.warnings:
                self.message_user(request, f"{db.name}: {warning}", messages.WARNING)

    @admin.action(description="Take a snapshot now")
    def snapshot_now(self, request, queryset) -> None:
        for db in queryset:
            result = snapshot_server(db)
            if result.status == "failed":
                self.message_user(request, f"{db.name}: {result.error}", messages.ERROR)
            elif result.status == "skipped":
                self.message_user(request, f"{db.name}: this slot was already stored; try again shortly.")
            else:
                self.message_user(request, f"{db.name}: {result.total} connections, {result.opened} new episodes.")


@admin.register(AttributionRule)
class AttributionRuleAdmin(admin.ModelAdmin):
    list_display = ["position", "service", "application_name", "usename", "client_addr", "server", "enabled"]
    list_display_links = ["service"]
    list_editable = ["position", "enabled"]
    list_filter = ["enabled", "server"]
    autocomplete_fields = ["service"]


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Episode)
class EpisodeAdmin(ReadOnlyAdmin):
    list_display = ["server", "datname", "kind", "service", "application_name", "pid", "first_seen", "last_seen", "peak_age_s", "ended"]
    list_filter = ["kind", "server", "datname", "service"]
    date_hierarchy = "first_seen"


@admin.register(Snapshot)
class SnapshotAdmin(ReadOnlyAdmin):
    list_display = ["server", "taken_at", "total", "max_connections", "elapsed_ms", "sessions_listed"]
    list_filter = ["server"]


@admin.register(QueryFingerprint)
class QueryFingerprintAdmin(ReadOnlyAdmin):
    list_display = ["fingerprint", "text", "first_seen", "last_seen"]
    search_fields = ["fingerprint", "text"]


@admin.register(BackendAction)
class BackendActionAdmin(ReadOnlyAdmin):
    list_display = ["created", "server", "user", "action", "pid", "application_name", "succeeded", "error"]
    list_filter = ["action", "succeeded", "server"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
