from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from .models import ApiToken


def api_view(view):
    """Read-only JSON endpoint: the browser session or `Authorization: Bearer <token>`.

    Unauthenticated calls get a 401 JSON error rather than a redirect to the login page.
    """

    @login_not_required
    @require_GET
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            user = ApiToken.objects.user_for(header[len("Bearer "):].strip())
            if user is None:
                return JsonResponse({"error": "invalid or revoked API token"}, status=401)
            request.user = user
        elif not request.user.is_authenticated:
            response = JsonResponse(
                {"error": "authentication required: log in or send Authorization: Bearer <token>"}, status=401
            )
            response["WWW-Authenticate"] = 'Bearer realm="poolboard"'
            return response
        return view(request, *args, **kwargs)

    return wrapper


def json_response(data, status: int = 200) -> JsonResponse:
    # NaN/Inf never reach here (parsed to None), and allow_nan=False keeps the output valid JSON.
    return JsonResponse(data, status=status, json_dumps_params={"allow_nan": False}, safe=not isinstance(data, list))
