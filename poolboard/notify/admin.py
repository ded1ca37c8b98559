from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from poolboard.databases.models import SecretError
from poolboard.lib import matchers as lib_matchers
from poolboard.notify.dispatch import db_now, send_test
from poolboard.notify.models import Channel, Notification, Silence


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "enabled", "last_ok_at", "last_error_at", "last_error_short"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name"]
    readonly_fields = ["secret_status", "last_ok_at", "last_error_at", "last_error"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "enabled", "settings"]}),
        ("Secret", {
            "fields": ["secret_env", "secret_file", "secret_status"],
            "description": "The Slack webhook URL, the PagerDuty routing key or the webhook's bearer token is referenced "
            "(environment variable or file), never stored or shown here.",
        }),
        ("Grouping (as Alertmanager)", {
            "fields": ["group_by", "group_wait_s", "group_interval_s", "repeat_interval_s", "send_resolved"],
        }),
        ("Delivery", {"fields": ["last_ok_at", "last_error_at", "last_error"]}),
    ]
    actions = ["send_test_notification"]

    @admin.display(description="last error")
    def last_error_short(self, channel: Channel) -> str:
        return channel.last_error[:120]

    @admin.display(description="secret")
    def secret_status(self, channel: Channel) -> str:
        if not (channel.secret_env or channel.secret_file):
            return "none referenced"
        try:
            return "readable" if channel.secret() else "empty"
        except SecretError as exc:
            return str(exc)

    @admin.action(description="Send a test notification")
    def send_test_notification(self, request, queryset) -> None:
        for channel in queryset:
            state, error = send_test(channel, request.user.get_username(), db_now())
            if state == Notification.SENT:
                self.message_user(request, f"{channel.name}: test notification delivered.")
            else:
                self.message_user(request, f"{channel.name}: test notification not delivered: {error}", messages.ERROR)


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """The outbox, read-only: what was sent, what waits, what failed and why."""

    list_display = ["created", "channel", "kind", "idempotency_key", "state", "attempts", "next_attempt_at", "sent_at", "last_error_short"]
    list_filter = ["state", "kind", "channel"]
    search_fields = ["idempotency_key", "fingerprint", "batch_key"]
    date_hierarchy = "created"
    actions = ["send_again"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Notification._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="last error")
    def last_error_short(self, row: Notification) -> str:
        return row.last_error[:120]

    @admin.action(description="Send again (failed or dropped rows)")
    def send_again(self, request, queryset) -> None:
        now = timezone.now()
        count = queryset.filter(state__in=[Notification.FAILED, Notification.DROPPED]).update(
            state=Notification.PENDING, next_attempt_at=now, deadline_at=now + timedelta(hours=1), batch_key="",
            claim_token=None, lease_until=None,
        )
        self.message_user(request, f"{count} notifications queued again (same idempotency keys).")


class SilenceForm(forms.ModelForm):
    matchers_text = forms.CharField(
        label="Matchers", widget=forms.Textarea(attrs={"rows": 4}),
        help_text='One per line, all must match: service="billing", severity!="info", service=~"bill.*", alertname!~"Test.*".',
    )

    class Meta:
        model = Silence
        fields = ["matchers_text", "starts_at", "ends_at", "comment"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["matchers_text"].initial = "\n".join(lib_matchers.format_matcher(m) for m in self.instance.matchers)

    def clean_matchers_text(self) -> list[dict]:
        parsed, errors = [], []
        for line in self.cleaned_data["matchers_text"].splitlines():
            if not line.strip():
                continue
            try:
                parsed.append(lib_matchers.parse(line))
            except lib_matchers.MatcherError as exc:
                errors.append(str(exc))
        if errors:
            raise forms.ValidationError(errors)
        if not parsed:
            raise forms.ValidationError("Give at least one matcher.")
        return parsed

    def _post_clean(self):
        if "matchers_text" in self.cleaned_data:
            self.instance.matchers = self.cleaned_data["matchers_text"]
        super()._post_clean()


@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin):
    form = SilenceForm
    list_display = ["__str__", "state_now", "starts_at", "ends_at", "created_by", "comment"]
    search_fields = ["comment", "created_by"]
    readonly_fields = ["created_by", "created"]
    actions = ["expire_now"]

    @admin.display(description="state")
    def state_now(self, silence: Silence) -> str:
        return silence.state(timezone.now())

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            obj.created_by = request.user.get_username()
        super().save_model(request, obj, form, change)

    def delete_queryset(self, request, queryset) -> None:
        for silence in queryset:  # one by one: each releases the alerts it held back
            silence.delete()

    @admin.action(description="Expire now")
    def expire_now(self, request, queryset) -> None:
        now = timezone.now()
        for silence in queryset.filter(ends_at__gt=now):
            silence.ends_at = max(now, silence.starts_at)
            silence.save()
        self.message_user(request, "Silences expired; the alerts they held back are looked at again.")
