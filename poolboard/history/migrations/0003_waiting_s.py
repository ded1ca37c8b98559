"""Seconds with callers waiting, per rollup bucket; filled from the raw samples still kept.

Buckets older than the raw samples (RAW_RETENTION_DAYS) cannot be recomputed and keep no
waiting figure: the weekly report shows those weeks' saturation minutes as unknown rather
than guess them from saturated_s, which also counts a full pool with nobody queued.
"""

from django.conf import settings
from django.db import migrations, models

# The definition of poolboard.history.rollup.ROLLUP_SQL's waiting_s, frozen here: a
# migration must keep doing what it did when it was written.
BACKFILL_SQL = """
UPDATE {table} AS r SET waiting_s = w.waiting_s
FROM (
    SELECT pool_id,
           date_bin(make_interval(secs => %(width)s), ts, TIMESTAMPTZ 'epoch') AS bucket,
           CASE WHEN bool_or(pending IS NOT NULL)
                THEN least(coalesce(sum(span) FILTER (WHERE pending > 0), 0), %(width)s) END AS waiting_s
    FROM (
        SELECT pool_id, ts, pending,
               least(coalesce(extract(epoch FROM lead(ts) OVER w - ts),
                              extract(epoch FROM ts - lag(ts) OVER w),
                              %(max_gap)s), %(max_gap)s) AS span
        FROM fleet_poolsample
        WINDOW w AS (PARTITION BY pool_id ORDER BY ts)
    ) AS s
    GROUP BY 1, 2
) AS w
WHERE r.pool_id = w.pool_id AND r.bucket = w.bucket
"""


def backfill(apps, schema_editor):
    max_gap = 2.0 * settings.COLLECT_INTERVAL
    with schema_editor.connection.cursor() as cursor:
        for table, width in (("history_rollup_5m", 300), ("history_rollup_1h", 3600)):
            cursor.execute(BACKFILL_SQL.format(table=table), {"width": width, "max_gap": max_gap})


class Migration(migrations.Migration):
    dependencies = [("history", "0002_acquisitions")]

    operations = [
        migrations.AddField(model_name="poolrollup1h", name="waiting_s", field=models.FloatField(null=True)),
        migrations.AddField(model_name="poolrollup5m", name="waiting_s", field=models.FloatField(null=True)),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
