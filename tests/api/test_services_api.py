from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from poolboard.api.models import ApiToken
from poolboard.fleet.collection import collect_source, current_slot
from poolboard.fleet.models import PrometheusSource
from tests.fleet import factories
from tests.sources.fakes import json_answer, vector

pytestmark = pytest.mark.django_db

URL = "/api/v1/services/"


def test_it_prints_a_new_token_once_and_stores_only_its_hash(client, alice) -> None:
    out = StringIO()
    call_command("createapitoken", "alice", stdout=out)
    token = out.getvalue().strip()

    assert token.startswith("pb_") and len(token) > 30
    row = ApiToken.objects.get(user=alice)
    assert token not in (row.key_hash, row.prefix) and row.prefix == token[:10]
    assert client.get(URL, headers={"Authorization": f"Bearer {token}"}).json()["services"] == []


def test_it_names_the_unknown_user_it_cannot_make_a_token_for() -> None:
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


def test_it_answers_the_browser_session_too(alice_client) -> None:
    factories.service_with_pool(factories.source(), "search", max=10, in_use=3)

    body = alice_client.get(URL).json()

    assert [(s["name"], s["pools"][0]["in_use"]) for s in body["services"]] == [("search", 3)]


def test_it_answers_a_wrong_token_with_a_401_json_error(client, token) -> None:
    response = client.get(URL, headers={"Authorization": "Bearer pb_not-a-real-token"})
    assert response.status_code == 401
    assert response.json() == {"error": "invalid or revoked API token"}


def test_it_answers_no_credentials_with_a_401_json_error(client) -> None:
    response = client.get(URL)
    assert response.status_code == 401
    assert response.json()["error"].startswith("authentication required")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_is_read_only(alice_client) -> None:
    assert alice_client.post(URL).status_code == 405


def test_it_answers_strict_json_when_an_exporter_says_nan_and_inf(alice_client, fake_prometheus) -> None:
    # A broken gauge callback exports NaN or ±Inf; Prometheus passes them on as strings.
    def answer(query):
        raw = {"hikaricp_connections_active": "NaN", "hikaricp_connections_max": "+Inf"}
        value = next((v for name, v in raw.items() if f"({name}{{" in query), "-Inf" if "idle" in query else "4")
        return json_answer(vector(1, value))

    source = PrometheusSource.objects.create(name="broken", url=fake_prometheus(answer).url, presets=["hikaricp"])
    result = collect_source(source, current_slot())
    assert result.status == "ok", result.error

    text = alice_client.get(URL).content.decode()

    body = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in {text}"))
    [pool] = body["services"][0]["pools"]
    assert (pool["in_use"], pool["max"], pool["idle"], pool["pending"]) == (None, None, None, 4)
