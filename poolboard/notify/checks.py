"""System check: NOTIFY_ALLOW_NETWORKS must be addresses or networks (else every send would fail)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

from poolboard.lib import urlpolicy


@register()
def notify_configuration_check(app_configs, **kwargs):
    try:
        urlpolicy.parse_networks(list(getattr(settings, "NOTIFY_ALLOW_NETWORKS", [])))
    except ValueError as exc:
        return [Error(f"NOTIFY_ALLOW_NETWORKS: {exc}.", hint="A comma list such as 10.0.0.0/8,192.168.1.5", id="poolboard.notify.E001")]
    return []
