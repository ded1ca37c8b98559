"""The live session list, cheaper to rewrite.

Every snapshot rewrites MonitoredDatabase.last_sessions (~100 kB of JSON for
200 sessions), which is only ever written and read whole: store it as json
(the text, checked on write) instead of jsonb (decomposed on every write),
compressed with lz4 instead of pglz where the server has lz4. The same value,
written in about a third of the time.
"""

from django.db import migrations

import poolboard.databases.models

LZ4 = """
DO $$ BEGIN
    ALTER TABLE databases_monitoreddatabase ALTER COLUMN last_sessions SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;  -- a server built without lz4 keeps pglz
END $$"""


class Migration(migrations.Migration):

    dependencies = [
        ("databases", "0002_episode_updates_fewer_indexes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="monitoreddatabase",
            name="last_sessions",
            field=poolboard.databases.models.JSONTextField(blank=True, default=list, editable=False),
        ),
        migrations.RunSQL(
            LZ4, "ALTER TABLE databases_monitoreddatabase ALTER COLUMN last_sessions SET COMPRESSION DEFAULT"
        ),
    ]
