from __future__ import annotations

from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.http import HttpResponse
from django.shortcuts import resolve_url


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
