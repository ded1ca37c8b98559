from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from poolboard.api.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token for USERNAME and print it (it is shown only once)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="a note to tell tokens apart")
        parser.add_argument(
            "--replace", action="store_true", help="revoke USERNAME's other tokens of the same --name first"
        )

    def handle(self, *args, username: str, name: str, replace: bool = False, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}; create one with `manage.py createsuperuser`")
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive")
        if replace:
            ApiToken.objects.filter(user=user, name=name).delete()
        _, token = ApiToken.issue(user, name=name)
        self.stdout.write(token)
