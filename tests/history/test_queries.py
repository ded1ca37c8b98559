"""Chart series of a service on real PostgreSQL: acquisitions as checkouts per second."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from poolboard.fleet.models import Pool
from poolboard.history import rollup
from poolboard.history.queries import service_series
from tests.fleet.factories import write_samples

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)


def test_it_charts_acquisitions_per_second_from_raw_samples_and_from_rollups(make_service) -> None:
    service = make_service(instances=2)
    a, b = Pool.objects.filter(service=service).order_by("instance")
    # An hour of samples every 15 s. The source's window is 5 m: a's increase over it is
    # 600 checkouts (2/s), b's 300 (1/s); b's first half hour has no acquisitions at all.
    start = T0.timestamp()
    write_samples(
        [(a.id, start + 15 * i, {"in_use": 1.0, "acquisitions": 600.0}) for i in range(240)]
        + [(b.id, start + 15 * i, {"in_use": 1.0, "acquisitions": 300.0 if i >= 120 else None}) for i in range(240)]
    )
    now = T0 + timedelta(hours=1)

    raw = service_series([a.id, b.id], "1h", now)
    values = raw.values["acquisitions"]
    # 30 s steps over (now - 1 h, now]: no gap where only a reports; the bucket holding
    # `now` has no sample yet and stays a gap, never 0.
    assert None not in values[:-1] and values[-1] is None
    assert values[0] == pytest.approx(2.0) and values[-2] == pytest.approx(3.0)

    rollup.rollup(rollup.RES_5M, T0, now)
    week = service_series([a.id, b.id], "7d", now)
    from_rollups = [v for v in week.values["acquisitions"] if v is not None]
    # 15-minute steps: each 5-minute bucket's checkouts ÷ 300 s, added up over the pools.
    assert from_rollups == pytest.approx([2.0, 2.0, 3.0, 3.0])
