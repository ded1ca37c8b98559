from .urls import NAV_SECTIONS


def nav_section(request):
    """The top-bar entry of the page being rendered ('fleet', 'databases', …), or None."""
    match = getattr(request, "resolver_match", None)
    if match is None or match.namespace != "dashboard":
        return {"nav_section": None}
    return {"nav_section": NAV_SECTIONS.get(match.url_name)}
