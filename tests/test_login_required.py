"""Every URL needs a login except the login page, /healthz and /metrics (R5.2)."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

pytestmark = pytest.mark.django_db

# The admin has its own login form; it is a login page too.
# The unsubscribe link of a report email: its signed token is the key (reports, RFC 8058).
OPEN = {"/login/", "/admin/login/", "/healthz", "/metrics", "/reports/unsubscribe/x/"}


def walk(patterns, prefix: str = ""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern)


def concrete(route: str) -> str:
    """A requestable path for a route: fill converters and regex groups with samples."""
    route = re.sub(r"<int:\w+>", "1", route)
    route = re.sub(r"<(str|slug|path):\w+>|<\w+>", "x", route)
    route = re.sub(r"\(\?P<\w+>[^)]*\)", "1", route)
    route = route.replace("^", "").replace("$", "").replace("\\Z", "")
    return "/" + route.lstrip("/")


ROUTES = sorted({concrete(r) for r in walk(get_resolver().url_patterns)})


def test_it_walks_every_page_and_the_open_ones() -> None:
    assert {"/", "/api/v1/services/", "/login/"} <= set(ROUTES) and OPEN <= set(ROUTES)
    assert len(ROUTES) > 20  # admin's URLs are walked too


@pytest.mark.parametrize("path", [route for route in ROUTES if route not in OPEN])
def test_it_refuses_anonymous_requests(client, path: str) -> None:
    for headers in ({}, {"HX-Request": "true"}):
        response = client.get(path, headers=headers)
        assert response.status_code in (301, 302, 401, 403, 404, 405), (path, response.status_code)
        if response.status_code in (301, 302):
            assert "/login/" in response["Location"], (path, response["Location"])
        if response.status_code == 404:
            # A 404 is only acceptable when it comes after the login check (e.g. the admin's
            # catch-all); a real page must not answer 404 to an anonymous visitor first.
            assert path.startswith("/admin/"), path


def test_htmx_requests_are_sent_to_login_with_hx_redirect(client) -> None:
    response = client.get("/", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response["HX-Redirect"].startswith("/login/")


def test_it_answers_the_open_urls_without_login(client) -> None:
    login = client.get("/login/")
    assert login.status_code == 200 and 'name="password"' in login.content.decode()
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "# TYPE poolboard_" in metrics.content.decode()
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["database"]["ok"] is True
