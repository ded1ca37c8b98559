"""Explicit builders for database-side rows (no factory library)."""

from __future__ import annotations

from poolboard.databases.models import MonitoredServer


def copy_newest_snapshot(monitored: MonitoredServer, name: str) -> MonitoredServer:
    """Another monitored server (on a port nobody listens on) whose newest snapshot (and live
    sessions) are a copy of `monitored`'s."""
    other = MonitoredServer.objects.create(
        name=name, host="127.0.0.1", port=10000 + MonitoredServer.objects.count(), dbname="postgres", user="root",
        last_sessions=monitored.last_sessions,
    )
    snap = monitored.snapshots.order_by("-slot").first()
    counts = list(snap.counts.all())
    snap.pk, snap.server = None, other
    snap.save()
    for count in counts:
        count.pk, count.snapshot = None, snap
        count.save()
    return other
