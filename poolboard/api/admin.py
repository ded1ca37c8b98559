from django.contrib import admin

from .models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created", "last_used_at"]
    readonly_fields = ["prefix", "created", "last_used_at"]
    search_fields = ["user__username", "name", "prefix"]

    def has_add_permission(self, request) -> bool:
        # Tokens are issued with `manage.py createapitoken`, which shows the secret once.
        return False
