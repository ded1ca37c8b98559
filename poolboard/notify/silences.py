"""Which silence mutes an alert now."""

from __future__ import annotations

from datetime import datetime

from poolboard.notify.models import Silence


def active_silences(now: datetime) -> list[Silence]:
    return list(Silence.objects.active(now).order_by("-ends_at", "id"))


def silenced_by(labels: dict, now: datetime, silences: list[Silence] | None = None) -> Silence | None:
    """The silence (the longest-running of those that match) muting `labels` at `now`, or None.

    Pass `silences` (from active_silences(now)) to check many alerts with one query.
    """
    for silence in active_silences(now) if silences is None else silences:
        if silence.is_active(now) and silence.matches(labels):
            return silence
    return None
