"""Safe defaults (issue 7 §4): each feeds the bad case and checks what poolboard says.

CSP and templates, password validators, login throttling, Prometheus URLs with
credentials, redacted errors, no response bodies in stored errors, and cancel/terminate
of a session whose start time is unknown.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from poolboard.databases.models import MonitoredServer, SignalRefused
from poolboard.fleet.collection import collect_source, current_slot
from poolboard.fleet.models import CollectionRun, PrometheusSource
from poolboard.inventory.registry import import_inventory
from poolboard.lib.inventory import InventoryError
from poolboard.lib.redact import redact_url
from poolboard.sources import pgactivity
from poolboard.sources.prometheus import PrometheusClient, PrometheusError
from tests.prom import free_port

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
CREDENTIALS_REFUSED = (
    "Remove the user:password@ part: credentials in the URL would be stored and shown in clear. "
    "Give a bearer token by the name of the environment variable holding it (bearer token env)."
)


# --- Content-Security-Policy ----------------------------------------------------------

@pytest.mark.django_db
def test_it_sends_a_policy_without_inline_script_or_eval(alice_client) -> None:
    for url in ("/", "/login/", "/admin/login/"):
        policy = alice_client.get(url)["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["script-src"] == "'self'", url
        assert directives["style-src"] == "'self'", url
        assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
        assert "unsafe-eval" not in policy


@pytest.mark.django_db
def test_it_tells_htmx_not_to_inject_styles_or_eval(client) -> None:
    html = client.get("/login/").content.decode()
    assert (
        '<meta name="htmx-config" content=\'{"includeIndicatorStyles": false, "allowEval": false}\'>'
        in html
    )


def template_files() -> list[Path]:
    return sorted(TEMPLATES.rglob("*.html")) + sorted(Path("poolboard").rglob("templates/**/*.html"))


def test_it_keeps_every_script_in_a_static_file() -> None:
    """What the CSP would block, found before a browser does: inline script, handlers, eval."""
    problems = []
    for path in template_files():
        # Template comments are not sent; blank them, keeping line numbers.
        text = re.sub(r"\{#.*?#\}|\{% comment %\}.*?\{% endcomment %\}", lambda m: "\n" * m.group().count("\n"),
                      path.read_text(), flags=re.S)
        for pattern, what in [
            (r"<script(?![^>]*\bsrc=)[^>]*>", "inline <script>"),
            (r"<script(?=[^>]*\bsrc=)[^>]*>\s*[^<\s]", "a <script src> with a body"),
            (r"<style[\s>]", "an inline <style> block"),
            (r"\son[a-z]+\s*=", "an on...= handler"),
            (r"\shx-on[:\-]", "hx-on (evaluated by htmx)"),
            (r"hx-trigger=\"[^\"]*\[", "an hx-trigger filter (evaluated by htmx)"),
            (r"hx-(vals|headers)='?\"?js:", "js: in hx-vals/hx-headers (evaluated by htmx)"),
            (r"javascript:", "a javascript: URL"),
        ]:
            for match in re.finditer(pattern, text):
                line = text.count("\n", 0, match.start()) + 1
                problems.append(f"{path}:{line}: {what}")
    assert problems == []


def test_the_template_check_catches_what_it_looks_for(tmp_path) -> None:
    text = '<script>alert(1)</script><a onclick="x()">' + "<div hx-trigger=\"every 1s [ok()]\">"
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text)
    assert re.search(r"\son[a-z]+\s*=", text)
    assert re.search(r"hx-trigger=\"[^\"]*\[", text)


# --- passwords and logins ---------------------------------------------------------------

@pytest.mark.django_db
def test_it_refuses_weak_passwords_with_djangos_four_messages(django_user_model) -> None:
    user = django_user_model(username="margaret", email="margaret@example.org")
    cases = {
        "margaret1": "The password is too similar to the username.",
        "Zq8!x": "This password is too short. It must contain at least 8 characters.",
        "password123": "This password is too common.",
        "4815162342": "This password is entirely numeric.",
    }
    for password, message in cases.items():
        with pytest.raises(ValidationError) as caught:
            validate_password(password, user)
        assert message in caught.value.messages, password
    validate_password("correct horse battery staple", user)


@pytest.mark.django_db
def test_it_hashes_passwords_fast_in_tests(alice) -> None:
    assert alice.password.startswith("md5$")


@pytest.mark.django_db
def test_it_locks_a_username_out_after_ten_wrong_passwords_even_with_the_right_one(client, alice, settings) -> None:
    assert settings.AXES_FAILURE_LIMIT == 10
    for attempt in range(9):
        response = client.post("/login/", {"username": "alice", "password": f"guess-{attempt}"})
        assert response.status_code == 200 and "Your username and password didn't match." in response.content.decode()
    tenth = client.post("/login/", {"username": "alice", "password": "guess-9"})
    right = client.post("/login/", {"username": "alice", "password": "alice-password"})

    assert tenth.status_code == 429
    assert right.status_code == 429
    html = right.content.decode()
    assert "Too many failed logins" in html
    assert "Logins as <b>alice</b> from your address are locked after 10 wrong passwords." in html
    assert "Try again in 1:00:00" in html
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_a_right_password_before_the_limit_resets_the_count(client, alice) -> None:
    for attempt in range(9):
        client.post("/login/", {"username": "alice", "password": f"guess-{attempt}"})
    assert client.post("/login/", {"username": "alice", "password": "alice-password"}).status_code == 302
    client.logout()
    for attempt in range(9):
        assert client.post("/login/", {"username": "alice", "password": f"again-{attempt}"}).status_code == 200


# --- Prometheus source URLs ------------------------------------------------------------------

@pytest.mark.django_db
def test_it_refuses_a_source_url_with_credentials_on_clean() -> None:
    source = PrometheusSource(name="prod", url="https://scraper:hunter2@prometheus.example:9090", presets=[])
    with pytest.raises(ValidationError) as caught:
        source.full_clean()
    assert caught.value.message_dict == {"url": [CREDENTIALS_REFUSED]}
    source.url = "https://prometheus.example:9090"
    source.full_clean()


@pytest.mark.django_db
def test_ensuresource_refuses_a_url_with_credentials() -> None:
    with pytest.raises(CommandError) as caught:
        call_command("ensuresource", "prod", "http://admin:hunter2@prometheus:9090", stdout=StringIO())
    assert str(caught.value) == f"url: {CREDENTIALS_REFUSED}"
    assert "hunter2" not in str(caught.value)
    assert not PrometheusSource.objects.exists()


@pytest.mark.django_db
def test_inventory_import_refuses_a_url_with_credentials() -> None:
    with pytest.raises(InventoryError) as caught:
        import_inventory("version: 1\nsources:\n- name: prod\n  url: http://admin:hunter2@prometheus:9090\n")
    assert f"line 4: sources[0].url: {CREDENTIALS_REFUSED}" in str(caught.value)
    assert not PrometheusSource.objects.exists()


@pytest.mark.django_db
def test_the_admin_refuses_a_url_with_credentials(client, bob) -> None:
    client.force_login(bob)
    response = client.post(
        "/admin/fleet/prometheussource/add/",
        {"name": "prod", "url": "http://admin:hunter2@prometheus:9090", "timeout_s": "10", "rate_window": "5m",
         "presets": "[]", "discovered_presets": "[]", "created_0": "2026-01-01", "created_1": "00:00:00"},
    )
    assert response.status_code == 200
    assert "Remove the user:password@ part" in response.content.decode()
    assert not PrometheusSource.objects.exists()


def test_it_redacts_userinfo_and_query_values() -> None:
    assert redact_url("https://scraper:hunter2@prom.example:9090/prefix?token=abc&x=1#f") == (
        "https://***@prom.example:9090/prefix?token=***&x=***"
    )
    assert redact_url("http://prometheus:9090") == "http://prometheus:9090"
    assert redact_url("http://[::1]:9090") == "http://[::1]:9090"
    assert redact_url("http://user:pw@host:notaport") == "***"
    assert redact_url("redis//:pw@redis:6379/0") == "redis//***@redis:6379/0"
    assert redact_url("scraper:pw@prometheus:9090") == "***@prometheus:9090"


def test_a_client_error_never_names_the_credentials() -> None:
    port = free_port()
    with PrometheusClient(f"http://scraper:hunter2@127.0.0.1:{port}/?token=abc", timeout=2) as client:
        with pytest.raises(PrometheusError) as caught:
            client.instant("up")
    assert caught.value.message == f"cannot connect to Prometheus at http://***@127.0.0.1:{port}/?token=***"


@pytest.mark.django_db(transaction=True)
def test_a_stored_collection_error_never_names_the_credentials() -> None:
    # A row saved before URLs were validated: collection must still not leak it.
    port = free_port()
    source = PrometheusSource.objects.create(name="old", url=f"http://scraper:hunter2@127.0.0.1:{port}", presets=["otel"])

    result = collect_source(source, current_slot())

    source.refresh_from_db()
    expected = f"cannot connect to Prometheus at http://***@127.0.0.1:{port}"
    assert (result.status, result.error) == ("failed", expected)
    assert source.last_error == expected and CollectionRun.objects.get().error == expected


# --- cancel / terminate -------------------------------------------------------------------

BACKEND_START = "2026-11-30T10:00:00.123456+00:00"


def database_with(*sessions: dict) -> MonitoredServer:
    return MonitoredServer(name="orders", host="127.0.0.1", last_sessions=list(sessions))


def test_it_refuses_to_signal_a_session_whose_start_is_unknown() -> None:
    db = database_with({"pid": 4242, "backend_start": None, "application_name": "billing"})
    with pytest.raises(SignalRefused) as caught:
        db.session_to_signal(4242, "None")
    assert str(caught.value) == (
        "Session 4242 has no known start time (backend_start), so it cannot be told apart from a later session "
        "that reuses pid 4242; nothing was done. poolboard's monitoring role needs pg_read_all_stats "
        "(or pg_monitor) to see other roles' start times."
    )


def test_it_refuses_a_request_that_does_not_say_which_session() -> None:
    db = database_with({"pid": 4242, "backend_start": BACKEND_START})
    for given in ("", None, "yesterday"):
        with pytest.raises(SignalRefused, match="Session 4242 has no known start time"):
            db.session_to_signal(4242, given)


def test_it_refuses_a_pid_that_now_names_another_session() -> None:
    db = database_with({"pid": 4242, "backend_start": BACKEND_START})
    with pytest.raises(SignalRefused) as caught:
        db.session_to_signal(4242, "2026-11-30T09:00:00+00:00")
    assert str(caught.value) == "Pid 4242 now belongs to another session (started at a different time); nothing was done."
    with pytest.raises(SignalRefused) as caught:
        db.session_to_signal(77, BACKEND_START)
    assert str(caught.value) == "Session 77 is no longer in the newest snapshot; nothing was done."


def test_it_finds_the_session_when_pid_and_start_match() -> None:
    row = {"pid": 4242, "backend_start": BACKEND_START, "application_name": "billing"}
    db = database_with({"pid": 7, "backend_start": BACKEND_START}, row)
    session, started = db.session_to_signal(4242, BACKEND_START)
    assert session is row
    assert started == datetime(2026, 11, 30, 10, 0, 0, 123456, tzinfo=timezone.utc)


def test_signal_backend_itself_needs_the_start_time() -> None:
    target = pgactivity.Target(host="127.0.0.1", port=5432, dbname="postgres", user="root")
    with pytest.raises(ValueError, match="backend_start is required"):
        pgactivity.signal_backend(target, None, 4242, None, "terminate")


# --- https behind a proxy -----------------------------------------------------------------

@pytest.mark.django_db
def test_production_redirects_to_https_but_lets_probes_read_healthz_and_metrics(settings) -> None:
    from django.test import Client

    settings.ALLOWED_HOSTS = ["poolboard.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    client = Client(HTTP_HOST="poolboard.example.com")  # middleware built now, with these settings

    login = client.get("/login/")
    assert (login.status_code, login["Location"]) == (301, "https://poolboard.example.com/login/")
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    proxied = client.get("/login/", headers={"X-Forwarded-Proto": "https"})
    assert proxied.status_code == 200
    assert proxied["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
