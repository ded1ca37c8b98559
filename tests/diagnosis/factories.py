"""Diagnosis findings for tests: the engine's Finding as the pass would hand it to record()."""

from __future__ import annotations

from datetime import timedelta

from poolboard.lib import diagnosis as engine


def verdict(kind: str, since, severity: str = "warn", leaked: float = 0.0, text: str = "in use rose 3 → 9 of 10") -> engine.Finding:
    return engine.Finding(
        kind=kind,
        severity=severity,
        confidence=0.8,
        since=since,
        evidence=(engine.Evidence(text=text, start=since, end=since + timedelta(minutes=14)),),
        fix="Return the connection: close the session in a finally block.",
        suspected_leaked=leaked,
        detail={"signals": ["floor"]},
    )
