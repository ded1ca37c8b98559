from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from poolboard.api.models import ApiToken
from tests.fleet import factories

pytestmark = pytest.mark.django_db

URL = "/api/v1/services/"


@pytest.fixture
def token(alice) -> str:
    out = StringIO()
    call_command("createapitoken", "alice", stdout=out)
    return out.getvalue().strip()


def test_createapitoken_prints_a_token_that_is_stored_only_as_a_hash(alice, token) -> None:
    assert token.startswith("pb_") and len(token) > 30
    row = ApiToken.objects.get(user=alice)
    assert token not in (row.key_hash, row.prefix) and row.prefix == token[:10]


def test_createapitoken_names_an_unknown_user() -> None:
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("createapitoken", "nobody")


def test_it_lists_services_with_their_pools_latest_values_by_bearer_token(client, token) -> None:
    src = factories.source()
    factories.service_with_pool(src, "search", max=10, in_use=10, idle=0, pending=7, timeouts=2)

    response = client.get(URL, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200
    body = response.json()
    [service] = body["services"]
    assert service["name"] == "search" and service["stale"] is False
    [pool] = service["pools"]
    assert {k: pool[k] for k in ("instance", "pool", "max", "in_use", "idle", "pending", "timeouts")} == {
        "instance": "10.0.0.1:9100",
        "pool": "search-pool",
        "max": 10,
        "in_use": 10,
        "idle": 0,
        "pending": 7,
        "timeouts": 2,
    }
    assert pool["timestamp"] and pool["overflow"] is None  # absent stays null, never 0


def test_it_flags_stale_services(client, token) -> None:
    src = factories.source()
    factories.service_with_pool(src, "old", age_s=7200, max=5, in_use=1)
    body = client.get(URL, headers={"Authorization": f"Bearer {token}"}).json()
    assert body["services"][0]["stale"] is True


def test_the_browser_session_works_too(alice_client) -> None:
    assert alice_client.get(URL).status_code == 200


def test_a_wrong_token_gets_a_401_json_error(client, token) -> None:
    response = client.get(URL, headers={"Authorization": "Bearer pb_not-a-real-token"})
    assert response.status_code == 401
    assert response.json() == {"error": "invalid or revoked API token"}


def test_no_credentials_get_a_401_json_error(client) -> None:
    response = client.get(URL)
    assert response.status_code == 401
    assert response.json()["error"].startswith("authentication required")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_the_api_is_read_only(alice_client) -> None:
    assert alice_client.post(URL).status_code == 405


def test_output_is_strict_json(alice_client) -> None:
    src = factories.source()
    factories.service_with_pool(src, "x", max=None, in_use=None)
    text = alice_client.get(URL).content.decode()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
