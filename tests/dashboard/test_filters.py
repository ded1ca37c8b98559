from __future__ import annotations

import pytest

from poolboard.dashboard.templatetags.pool_extras import num, pct, pct_width, seconds


@pytest.mark.parametrize(("value", "text"), [(None, "—"), (-0.0002, "0 ms"), (0.138, "138 ms"), (2.5, "2.50 s"), (600, "10m")])
def test_seconds(value, text) -> None:
    assert seconds(value) == text


@pytest.mark.parametrize(("value", "text"), [(None, "—"), (5.0, "5"), (0.25, "0.25"), (12.34, "12.3"), (12500, "12.5k")])
def test_num(value, text) -> None:
    assert num(value) == text


def test_percentages_and_bar_widths_are_clamped() -> None:
    assert pct(0.5) == "50%" and pct(None) == "—"
    assert pct_width(1.7) == "100.0%" and pct_width(-1) == "0.0%" and pct_width(None) == "0%"
