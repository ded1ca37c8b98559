"""Exposition servers whose counters grow at a known rate, for exact rate()/increase() checks.

A fixture line ending in `@R/s` is served with the value R × (seconds since BASE): a
counter that grows at R per second, the same at every scrape of every exporter, so a
rate over any window is R (Prometheus extrapolates a linear series exactly, up to
scrape jitter) and a ratio of two such rates is exact.
"""

from __future__ import annotations

import re
import time

from tests.prom import ExpositionServer, exposition

RATE_RE = re.compile(r"@([0-9.eE+-]+)/s$", re.MULTILINE)
# Far enough in the past that counters are large and never look like a reset.
BASE = time.time() - 100_000


def render(template: str, now: float | None = None) -> str:
    elapsed = (time.time() if now is None else now) - BASE
    return RATE_RE.sub(lambda m: repr(float(m.group(1)) * elapsed), template)


class RatedExposition(ExpositionServer):
    """Serves `template` with every `@R/s` counter evaluated at request time."""

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(template)

    @property
    def text(self) -> str:  # type: ignore[override]
        return render(self.template)

    @text.setter
    def text(self, value: str) -> None:
        self.template = value


def dialect(name: str) -> str:
    return exposition(f"dialects/{name}")
