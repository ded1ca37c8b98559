import django.contrib.postgres.fields
from django.db import migrations, models

# lib.session_ages.AGE_EDGES_S when this migration was written (stored counts mean these).
EDGES = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800, 3600, 86400)

# The diagnosis reads the last half hour or so: the counts of the last hour are worked out
# from the ages kept so far; older rows keep empty counts (read as zero).
CONVERT = """
UPDATE databases_sessioncount AS c
   SET idle_over = ARRAY(SELECT (SELECT count(*) FROM unnest(c.idle_ages_s) AS a WHERE a > e)::int
                           FROM unnest(%(edges)s::float8[]) WITH ORDINALITY AS x(e, i) ORDER BY i),
       young_under = ARRAY(SELECT (SELECT count(*) FROM unnest(c.young_ages_s) AS a WHERE a < e)::int
                             FROM unnest(%(edges)s::float8[]) WITH ORDINALITY AS x(e, i) ORDER BY i),
       longest_idle_s = (SELECT max(a) FROM unnest(c.idle_ages_s) AS a)
  FROM databases_snapshot AS s
 WHERE s.id = c.snapshot_id AND s.taken_at > now() - interval '1 hour'
"""


def convert(apps, schema_editor) -> None:
    with schema_editor.connection.cursor() as cur:
        cur.execute(CONVERT, {"edges": list(EDGES)})


class Migration(migrations.Migration):
    """Session ages as counts over fixed edges (lib.session_ages), counted by the monitored
    server, instead of every idle and young session's age: shipping and storing the ages
    cost more than the rest of a snapshot (bench_snapshot's snapshot_ratio)."""

    dependencies = [
        ("databases", "0009_monitoredserver_host_port"),
    ]

    operations = [
        migrations.AddField(
            model_name="sessioncount",
            name="idle_over",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.PositiveIntegerField(), blank=True, default=list, size=None
            ),
        ),
        migrations.AddField(
            model_name="sessioncount",
            name="young_under",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.PositiveIntegerField(), blank=True, default=list, size=None
            ),
        ),
        migrations.AddField(
            model_name="sessioncount",
            name="longest_idle_s",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.RunPython(convert, migrations.RunPython.noop),
        migrations.RemoveField(model_name="sessioncount", name="idle_ages_s"),
        migrations.RemoveField(model_name="sessioncount", name="young_ages_s"),
    ]
