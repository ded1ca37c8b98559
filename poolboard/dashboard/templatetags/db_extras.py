from __future__ import annotations

import math

from django import template

from poolboard.lib.budget import POOLBOARD, UNATTRIBUTED
from poolboard.lib.pools import format_age

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


def _whole_seconds(value: float) -> str:
    return f"{value:.0f} s" if value < 60 else format_age(value)


@register.filter
def duration_bounds(episode) -> str:
    """How long an episode lasted, as the snapshots bound it: "≥ 41 s, ≤ 51 s" (at least its
    age when last seen, at most until the first snapshot that no longer saw it), or
    "≥ 41 s, ongoing" while it is open."""
    # Rounded outwards, so the bounds stay bounds.
    low = _whole_seconds(math.floor(max(0.0, episode.duration_s)))
    high = episode.duration_max_s
    return f"≥ {low}, ongoing" if high is None else f"≥ {low}, ≤ {_whole_seconds(math.ceil(high))}"
