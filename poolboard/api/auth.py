from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

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


def token_post_view(view):
    """Write endpoint for programs (poolboard.agent): POST with `Authorization: Bearer <token>` only.

    CSRF protects cookie sessions; a bearer token is never sent by a browser on its own, so the
    view is exempt, and a session cookie alone is refused (otherwise a forged cross-site form post
    would ride on it).
    """

    @login_not_required
    @csrf_exempt
    @require_POST
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            response = JsonResponse({"error": "send Authorization: Bearer <token> (an API token from createapitoken)"}, status=401)
            response["WWW-Authenticate"] = 'Bearer realm="poolboard"'
            return response
        user = ApiToken.objects.user_for(header[len("Bearer "):].strip())
        if user is None:
            return JsonResponse({"error": "invalid or revoked API token"}, status=401)
        request.user = user
        return view(request, *args, **kwargs)

    return wrapper
