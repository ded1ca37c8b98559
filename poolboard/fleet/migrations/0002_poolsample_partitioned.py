from django.db import migrations

# Raw samples are range-partitioned by day (dropped by partition after RAW_RETENTION);
# the primary key (pool_id, ts) serves the service page's per-pool time ranges, BRIN on
# ts serves rollups that scan all pools for a time bucket. Partitions are created by
# poolboard.fleet.partitions; the DEFAULT partition catches stragglers.
CREATE = """
CREATE TABLE fleet_poolsample (
    pool_id bigint NOT NULL,
    ts timestamptz NOT NULL,
    max double precision,
    min double precision,
    in_use double precision,
    idle double precision,
    pending double precision,
    overflow double precision,
    timeouts double precision,
    acquire_s double precision,
    hold_s double precision,
    created double precision,
    closed double precision,
    PRIMARY KEY (pool_id, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX fleet_poolsample_ts_brin ON fleet_poolsample USING brin (ts);
CREATE TABLE fleet_poolsample_default PARTITION OF fleet_poolsample DEFAULT;
"""

DROP = "DROP TABLE IF EXISTS fleet_poolsample CASCADE;"


class Migration(migrations.Migration):
    dependencies = [("fleet", "0001_initial")]
    operations = [migrations.RunSQL(CREATE, DROP)]
