from __future__ import annotations

from django import template

from poolboard.lib.alerting import SIGNALS, format_value
from poolboard.lib.pools import format_age

register = template.Library()


@register.filter
def duration(seconds) -> str:
    """A rule's `for` or a firing time as people say it: 0s, 45s, 5m, 2h 5m."""
    if seconds is None:
        return "—"
    return format_age(float(seconds))


@register.filter
def signal_value(value, signal: str) -> str:
    """A signal's value with its unit: '97 %', '12.5 s', '3'; 'no data' when absent."""
    text = format_value(value)
    if value is None or text == "no data":
        return text
    unit = SIGNALS[signal].unit if signal in SIGNALS else ""
    if unit == "%":
        return f"{value:.0f} %" if abs(value) >= 10 else f"{value:.1f} %"
    if unit == "s":
        return f"{value:.0f} s" if abs(value) >= 10 else f"{value:.2g} s"
    return text
