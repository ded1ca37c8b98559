from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.http import HttpResponse
from django.shortcuts import resolve_url
from whitenoise.middleware import WhiteNoiseMiddleware


class HtmxLoginRequiredMiddleware(LoginRequiredMiddleware):
    """Login required on every view, as Django's middleware does.

    An expired session during HTMX polling would otherwise swap the login page into
    a table cell; tell htmx to navigate the whole page to the login form instead.
    """

    def handle_no_permission(self, request, view_func):
        if request.headers.get("HX-Request") == "true":
            response = HttpResponse(status=401)
            response["HX-Redirect"] = resolve_url(self.get_login_url(view_func))
            return response
        return super().handle_no_permission(request, view_func)


class ContentSecurityPolicyMiddleware:
    """Sets settings.CONTENT_SECURITY_POLICY on every response that has none.

    Django 5.2 has no CSP support of its own (6.0 adds SECURE_CSP); the policy is one
    constant string, so a header is all it takes.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = settings.CONTENT_SECURITY_POLICY

    def __call__(self, request):
        response = self.get_response(request)
        if self.policy:
            response.headers.setdefault("Content-Security-Policy", self.policy)
        return response


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, creating STATIC_ROOT when the web process starts.

    WhiteNoise warns about a missing STATIC_ROOT; before `collectstatic` it serves from
    the finders, so an empty folder is all it needs. Made here rather than in settings,
    so importing settings (manage.py, workers, tests) creates no directories.
    """

    def __init__(self, get_response=None, settings=settings):
        if settings.STATIC_ROOT:
            Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)
        super().__init__(get_response, settings=settings)
