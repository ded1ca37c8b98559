from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def run(monkeypatch, **env) -> dict:
    for key in ("DJANGO_SUPERUSER_USERNAME", "DJANGO_SUPERUSER_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = StringIO()
    call_command("ensuresuperuser", stdout=out)
    return json.loads(out.getvalue())


def test_it_creates_admin_with_a_generated_password(monkeypatch) -> None:
    result = run(monkeypatch)
    assert result["username"] == "admin" and result["state"] == "created" and len(result["password"]) >= 12
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.check_password(result["password"])


def test_it_honours_djangos_variables_and_resets_the_password(monkeypatch) -> None:
    run(monkeypatch, DJANGO_SUPERUSER_USERNAME="ops", DJANGO_SUPERUSER_PASSWORD="first-pass")
    result = run(monkeypatch, DJANGO_SUPERUSER_USERNAME="ops", DJANGO_SUPERUSER_PASSWORD="second-pass")
    assert result == {"username": "ops", "password": "second-pass", "state": "password set"}
    assert get_user_model().objects.get(username="ops").check_password("second-pass")


def test_an_existing_user_without_a_new_password_is_left_alone(monkeypatch) -> None:
    first = run(monkeypatch)
    again = run(monkeypatch)
    assert again == {"username": "admin", "password": None, "state": "exists"}
    assert get_user_model().objects.get(username="admin").check_password(first["password"])
