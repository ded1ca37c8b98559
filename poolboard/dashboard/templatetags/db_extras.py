from __future__ import annotations

from django import template

from poolboard.lib.budget import POOLBOARD, UNATTRIBUTED

register = template.Library()


@register.filter
def slice_class(label: str, index: int) -> str:
    """A stable colour class for a budget slice."""
    if label == POOLBOARD:
        return "own"
    if label == UNATTRIBUTED:
        return "unattributed"
    return f"c{int(index) % 8}"


@register.filter
def width(pct) -> str:
    """A CSS percentage from a float 0..100, clamped (no user text ever reaches a style)."""
    try:
        value = float(pct)
    except (TypeError, ValueError):
        return "0%"
    return f"{max(0.0, min(100.0, value)):.2f}%"
