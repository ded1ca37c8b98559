"""fleet_sizing(now) on stored inputs the demo does not have: exporters without a waiting count."""

from datetime import timedelta

import pytest
from django.utils import timezone

from poolboard.fleet.models import Service
from poolboard.history.models import PoolRollup1h
from poolboard.lib import sizing as sz
from poolboard.lib.rollups import ONE_HOUR, bucket_start
from poolboard.sizing.recommend import fleet_sizing

from .factories import pools, server_with_snapshot

pytestmark = pytest.mark.django_db


def test_a_pool_whose_exporter_has_no_waiting_count_is_told_apart_from_one_nobody_waited_on(make_source):
    now = timezone.now()
    server = server_with_snapshot("main", now)
    svc = Service.objects.create(name="sqla", source=make_source(), preset="sqlalchemy", server=server)
    [pool] = pools(svc, 1, max=10, now=now)
    # A week at its max of 10; pending NULL in every bucket (the exporter has none).
    PoolRollup1h.objects.bulk_create(
        PoolRollup1h(pool=pool, bucket=bucket_start(now, ONE_HOUR) - timedelta(hours=i), samples=240, max_avg=10,
                     in_use_min=8, in_use_avg=9.5, in_use_max=10, in_use_p95=10, saturated_s=1800.0)
        for i in range(7 * 24)
    )
    [ss] = fleet_sizing(now).servers
    [rec] = ss.sizing.recommendations
    assert rec.action == sz.KEEP
    assert "nobody waited" not in rec.reason
    assert "whether any waited cannot be told" in rec.reason
