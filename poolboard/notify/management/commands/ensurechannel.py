from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from poolboard.alerts.models import AlertRule
from poolboard.notify.models import Channel


class Command(BaseCommand):
    help = (
        "Create or update a notification channel, optionally on every alert rule "
        "(used by `make demo`; handy for scripted set-ups). Secrets are set in the admin, by reference."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("kind", choices=[Channel.EMAIL, Channel.WEBHOOK])
        parser.add_argument("--url", default="", help="webhook: where to POST (Alertmanager v4 JSON)")
        parser.add_argument("--to", default="", help="email: comma-separated addresses")
        parser.add_argument("--group-wait", type=int, default=None, help="seconds (default: the channel's, 30)")
        parser.add_argument("--every-rule", action="store_true", help="add the channel to every alert rule")

    def handle(self, *args, name: str, kind: str, url: str, to: str, group_wait: int | None, every_rule: bool,
               **options) -> None:
        channel = Channel.objects.filter(name=name).first() or Channel(name=name)
        channel.kind = kind
        if kind == Channel.WEBHOOK:
            channel.settings = {**(channel.settings or {}), "url": url}
        else:
            channel.settings = {**(channel.settings or {}), "to": [a.strip() for a in to.split(",") if a.strip()]}
        if group_wait is not None:
            channel.group_wait_s = group_wait
        try:
            channel.full_clean()
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        with transaction.atomic():
            channel.save()
            rules = list(AlertRule.objects.all()) if every_rule else []
            # The through table's unique (rule, channel) keeps a second run from adding it twice.
            AlertRule.channels.through.objects.bulk_create(
                [AlertRule.channels.through(alertrule_id=r.pk, channel_id=channel.pk) for r in rules],
                ignore_conflicts=True,
            )
        on_rules = f", on {len(rules)} rules" if every_rule else ""
        self.stdout.write(f"channel {channel.name}: {channel.kind} {channel.settings}{on_rules}")
