"""From raw samples through the real rollups to a recommendation: the sizing reads what the rollup writes."""

from datetime import timedelta

import pytest
from django.utils import timezone

from poolboard.fleet.models import Service
from poolboard.history import rollup
from poolboard.lib import sizing as sz
from poolboard.sizing.recommend import fleet_sizing
from tests.fleet.factories import write_samples

from .factories import pools, server_with_snapshot

pytestmark = pytest.mark.django_db


def test_two_hours_of_samples_give_search_its_size(make_source):
    now = timezone.now()
    server = server_with_snapshot("main", now)
    source = make_source()
    search = Service.objects.create(name="search", source=source, preset="hikaricp", server=server)
    checkout = Service.objects.create(name="checkout", source=source, preset="db_pool", server=server)
    [s] = pools(search, 1, max=5, now=now)
    c1, c2 = pools(checkout, 2, max=8, now=now)
    start = now.timestamp() - 2 * 3600
    rows = []
    for i in range(2 * 3600 // 15):  # every 15 s for 2 h
        t = start + 15 * i
        # search: all 5 in use and 6-8 callers waiting; checkout: 0-2 in use of 8 on each instance.
        rows.append((s.id, t, {"max": 5.0, "in_use": 5.0, "pending": float(6 + i % 3), "acquisitions": 300.0,
                               "hold_s": 0.1}))
        rows += [(p.id, t + 3, {"max": 8.0, "in_use": float(i % 3), "pending": 0.0}) for p in (c1, c2)]
    write_samples(rows)
    rollup.rollup(rollup.RES_1H, now - timedelta(hours=3), now)
    ss = fleet_sizing(now).servers[0]
    recs = {r.pool.service: r for r in ss.sizing.recommendations}
    d = recs["search"].pool.demand
    # in use 5 + waiting p95 8 = 13 in every hour → × 1.2 = 15.6 → 16; the peak 5 + 8.
    assert (d.p99, d.peak) == (13, 13)
    assert d.history_s == pytest.approx(2 * 3600, abs=60)
    assert (recs["search"].action, recs["search"].recommended) == (sz.GROW, 16)
    # 300 checkouts per 5-minute rate window = 1 per second, held 100 ms: Little's law says 0.1 busy.
    assert d.rate_per_s == pytest.approx(1.0, rel=0.02) and d.little == pytest.approx(0.1, rel=0.02)
    # checkout: p95 of 0,1,2 = 2 → 3 per instance, under half of 8: shrink; 2 instances at once.
    assert (recs["checkout"].action, recs["checkout"].recommended, recs["checkout"].instances) == (sz.SHRINK, 3, 2)
