"""Alert payloads and channels for the notify tests."""

from __future__ import annotations

from datetime import datetime, timezone

from poolboard.notify.models import Channel

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def alert(fingerprint: str = "0123456789abcdef", status: str = "firing", alertname: str = "PoolSaturated", **labels) -> dict:
    return {
        "status": status,
        "fingerprint": fingerprint,
        "labels": {"alertname": alertname, "severity": "critical", **labels},
        "annotations": {"summary": f"{alertname} on {labels.get('service', 'checkout')}", "description": "in use = max for 5 m"},
        "startsAt": "2026-12-01T11:55:00+00:00",
        "endsAt": None if status == "firing" else "2026-12-01T12:10:00+00:00",
        "generatorURL": "/alerts/rules/1/",
        "value": 1.0,
    }


def channel(kind: str = "webhook", name: str = "hook", url: str = "http://127.0.0.1:9/", **fields) -> Channel:
    defaults = {"group_wait_s": 0, "group_interval_s": 0, "repeat_interval_s": 3600}
    config = {"email": {"to": ["oncall@example.org"]}, "webhook": {"url": url}, "slack": {}, "pagerduty": {"url": url}}[kind]
    return Channel.objects.create(kind=kind, name=name, settings=fields.pop("settings", config), **{**defaults, **fields})
