from functools import cache

from .urls import NAV_SECTIONS


def nav_section(request):
    """The top bar: the entry of the page being rendered ('fleet', 'databases', …) or None,
    and the firing alerts' count (`firing_alerts`)."""
    match = getattr(request, "resolver_match", None)
    section = NAV_SECTIONS.get(match.url_name) if match is not None and match.namespace == "dashboard" else None
    return {"nav_section": section, **firing_alerts(request)}


def firing_alerts(request):
    """The top bar's firing count: one COUNT on the partial index of active instances, made
    only when a template shows it and at most once per request (the result is cached)."""

    @cache
    def count() -> int:
        from poolboard.alerts.models import AlertInstance

        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return 0
        return AlertInstance.objects.firing().count()

    return {"firing_alerts": count}
