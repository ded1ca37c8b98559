from __future__ import annotations

import json
import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Make sure a superuser exists (used by `make demo`). Honours DJANGO_SUPERUSER_USERNAME and "
        "DJANGO_SUPERUSER_PASSWORD; without a password, a new user gets a generated one. Prints one JSON line."
    )

    def handle(self, *args, **options) -> None:
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME") or "admin"
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or None
        users = get_user_model()
        user = users.objects.filter(username=username).first()
        if user is None:
            password = password or secrets.token_urlsafe(12)
            email = os.environ.get("DJANGO_SUPERUSER_EMAIL") or f"{username}@localhost"
            users.objects.create_superuser(username=username, email=email, password=password)
            state = "created"
        elif password:
            user.set_password(password)
            user.is_active = user.is_staff = user.is_superuser = True
            user.save()
            state = "password set"
        else:
            state = "exists"
        self.stdout.write(json.dumps({"username": username, "password": password, "state": state}))
