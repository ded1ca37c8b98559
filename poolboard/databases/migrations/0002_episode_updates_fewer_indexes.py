"""Cheaper snapshot stores: every snapshot updates every open episode.

- Drop the single-column foreign-key indexes that a composite index already
  leads with (episode database/query/service, sessioncount service, snapshot
  database): fewer indexes to write on every insert and non-HOT update. Only the
  indexes go; the foreign-key constraints stay as they are (no re-validation).
- Episode pages are filled to 50 %, so the new version of an open episode fits
  on its own page and the per-snapshot UPDATE is HOT (no index writes at all).
  Pages written before this migration keep their fill until rewritten.
"""

import django.db.models.deletion
from django.db import migrations, models

# (model, field, related_name, null, target, index created by 0001)
FOREIGN_KEYS = [
    ("episode", "database", "episodes", False, "databases.monitoreddatabase", "databases_episode_database_id_582f4b42"),
    ("episode", "query", "episodes", True, "databases.queryfingerprint", "databases_episode_query_id_8cd21491"),
    ("episode", "service", "db_episodes", True, "fleet.service", "databases_episode_service_id_8ae9becf"),
    ("sessioncount", "service", "+", True, "fleet.service", "databases_sessioncount_service_id_481c7a83"),
    ("snapshot", "database", "snapshots", False, "databases.monitoreddatabase", "databases_snapshot_database_id_8c9b274f"),
]


def drop_index(model, field, related_name, null, target, index):
    on_delete = django.db.models.deletion.SET_NULL if null else django.db.models.deletion.CASCADE
    extra = {"blank": True, "null": True} if null else {}
    return migrations.SeparateDatabaseAndState(
        database_operations=[
            migrations.RunSQL(
                f"DROP INDEX IF EXISTS {index}",
                f"CREATE INDEX IF NOT EXISTS {index} ON databases_{model} ({field}_id)",
            )
        ],
        state_operations=[
            migrations.AlterField(
                model_name=model,
                name=field,
                field=models.ForeignKey(
                    db_index=False, on_delete=on_delete, related_name=related_name, to=target, **extra
                ),
            )
        ],
    )


class Migration(migrations.Migration):

    dependencies = [
        ("databases", "0001_initial"),
        ("fleet", "0002_poolsample_partitioned"),
    ]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE databases_episode SET (fillfactor = 50)",
            "ALTER TABLE databases_episode RESET (fillfactor)",
        ),
        *[drop_index(*fk) for fk in FOREIGN_KEYS],
    ]
