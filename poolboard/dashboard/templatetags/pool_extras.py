from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

from poolboard.lib.pools import format_age

register = template.Library()


@register.filter
def num(value) -> str:
    """A count or measure as people read it: 12, 0.35, 1.2k; an em dash when absent."""
    if value is None:
        return "—"
    value = float(value)
    if abs(value) >= 10000:
        return f"{value / 1000:.1f}k"
    if value == int(value):
        return str(int(value))
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


@register.filter
def pct(value) -> str:
    if value is None:
        return "—"
    return f"{float(value) * 100:.0f}%"


@register.filter
def pct_width(value) -> str:
    """A CSS width for a utilization bar, clamped to 0-100 %."""
    if value is None:
        return "0%"
    return f"{max(0.0, min(1.0, float(value))) * 100:.1f}%"


@register.filter
def seconds(value) -> str:
    if value is None:
        return "—"
    # Ages computed from two clocks can come out a hair below zero: show 0, not "-0 ms".
    value = max(0.0, float(value))
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s" if value < 60 else format_age(value)


@register.filter
def age(value) -> str:
    """How long ago a datetime (or epoch seconds) was: '12s ago'."""
    if value is None:
        return "never"
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value, tz=timezone.get_current_timezone())
    return f"{format_age((timezone.now() - value).total_seconds())} ago"
