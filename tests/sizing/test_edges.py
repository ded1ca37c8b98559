"""fleet_sizing(now) on stored inputs the demo does not have: exporters without a waiting count."""

from datetime import timedelta

import pytest
from django.utils import timezone

from poolboard.fleet.models import Pool, Service
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


def test_a_pool_size_lowered_by_a_redeploy_counts_at_its_new_size_not_the_gone_pods(make_source):
    # Kubernetes gives each deploy new pod names: the old pods' rows stay, with the old max of 20.
    now = timezone.now()
    server = server_with_snapshot("main", now)
    svc = Service.objects.create(name="api", source=make_source(), preset="db_pool", server=server)
    Pool.objects.create(service=svc, instance="api-7d9f-old", name="main", max=20, in_use=0,
                        first_seen_at=now - timedelta(days=9), sampled_at=now - timedelta(days=3))
    Pool.objects.create(service=svc, instance="api-5c2b-new", name="main", max=10, in_use=0,
                        first_seen_at=now - timedelta(days=3), sampled_at=now - timedelta(seconds=5))
    [ss] = fleet_sizing(now).servers
    [rec] = ss.sizing.recommendations
    assert rec.current == 10
    assert ss.sizing.ledger.committed - ss.sizing.ledger.surge == 10


def test_a_service_gone_quiet_for_a_day_still_counts_its_last_known_size(make_source):
    now = timezone.now()
    server = server_with_snapshot("main", now)
    svc = Service.objects.create(name="batch", source=make_source(), preset="db_pool", server=server)
    Pool.objects.create(service=svc, instance="batch-1", name="main", max=15, in_use=0,
                        first_seen_at=now - timedelta(days=9), sampled_at=now - timedelta(days=2))
    [ss] = fleet_sizing(now).servers
    [rec] = ss.sizing.recommendations
    assert rec.current == 15
