"""Explicit builders for database-side rows (no factory library)."""

from __future__ import annotations

from poolboard.databases.models import MonitoredDatabase


def copy_newest_snapshot(monitored: MonitoredDatabase, name: str) -> MonitoredDatabase:
    """Another monitored database whose newest snapshot (and live sessions) are a copy of `monitored`'s."""
    other = MonitoredDatabase.objects.create(
        name=name, host="127.0.0.1", dbname="postgres", user="root", last_sessions=monitored.last_sessions
    )
    snap = monitored.snapshots.order_by("-slot").first()
    counts = list(snap.counts.all())
    snap.pk, snap.database = None, other
    snap.save()
    for count in counts:
        count.pk, count.snapshot = None, snap
        count.save()
    return other
