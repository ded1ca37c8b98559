import django.db.models.deletion
from django.db import migrations, models

# The indexes and constraints that name the renamed FK fields. RenameField renames the
# column (PostgreSQL keeps the indexes on it) but not the field names these keep in the
# migration state: dropped and re-added in the state only, the database is left alone.
RENAMED_IN = [
    ("episode", models.UniqueConstraint(
        fields=["database", "kind", "pid", "backend_start", "started"], name="episode_identity")),
    ("snapshot", models.UniqueConstraint(fields=["database", "slot"], name="snapshot_database_slot")),
    ("episode", models.Index(fields=["database"], condition=models.Q(ended=None), name="episode_open")),
    ("episode", models.Index(fields=["database", "-first_seen"], name="episode_recent")),
]


def _renamed(item):
    fields = ["server" if f == "database" else f for f in item.fields]
    fields = ["-server" if f == "-database" else f for f in fields]
    return type(item)(
        fields=fields, name=item.name, **({"condition": item.condition} if item.condition is not None else {})
    )


def _remove(model, item):
    if isinstance(item, models.Index):
        return migrations.RemoveIndex(model_name=model, name=item.name)
    return migrations.RemoveConstraint(model_name=model, name=item.name)


def _add(model, item):
    if isinstance(item, models.Index):
        return migrations.AddIndex(model_name=model, index=_renamed(item))
    return migrations.AddConstraint(model_name=model, constraint=_renamed(item))


class Migration(migrations.Migration):
    """What is monitored is a server: MonitoredDatabase becomes MonitoredServer, the FK
    fields `database` become `server` (columns renamed, data kept), and each session count,
    query hold and database seen on a server carries its datname."""

    dependencies = [
        ("databases", "0006_episode_fillfactor"),
        ("fleet", "0006_acquisitions"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[_remove(m, i) for m, i in RENAMED_IN]),
        migrations.RenameModel("MonitoredDatabase", "MonitoredServer"),
        migrations.RenameField("snapshot", "database", "server"),
        migrations.RenameField("episode", "database", "server"),
        migrations.RenameField("backendaction", "database", "server"),
        migrations.RenameField("attributionrule", "database", "server"),
        migrations.SeparateDatabaseAndState(state_operations=[_add(m, i) for m, i in RENAMED_IN]),
        migrations.AlterModelOptions(
            name="monitoredserver",
            options={
                "ordering": ["name"],
                "permissions": [("signal_backend", "Can cancel or terminate a backend on a monitored server")],
            },
        ),
        migrations.AlterField(
            model_name="monitoredserver",
            name="dbname",
            field=models.CharField(
                default="postgres", max_length=200, verbose_name="connect to database",
                help_text="Any database on the server: pg_stat_activity shows the sessions of all of them.",
            ),
        ),
        migrations.AlterField(
            model_name="attributionrule",
            name="server",
            field=models.ForeignKey(
                blank=True, help_text="Blank: every server.", null=True,
                on_delete=django.db.models.deletion.CASCADE, to="databases.monitoredserver",
            ),
        ),
        migrations.AddField(
            model_name="episode",
            name="xact_start",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="episode",
            name="ended",
            field=models.DateTimeField(
                blank=True, null=True,
                help_text="First snapshot that no longer saw it (gone, idle or on another query): it ended by then",
            ),
        ),
        migrations.AddField(
            model_name="sessioncount",
            name="datname",
            field=models.CharField(blank=True, db_default="", default="", max_length=200, verbose_name="database"),
        ),
        migrations.CreateModel(
            name="ServerDatabase",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("datname", models.CharField(max_length=200, verbose_name="database")),
                ("first_seen", models.DateTimeField()),
                ("last_seen", models.DateTimeField()),
                ("server", models.ForeignKey(
                    on_delete=django.db.models.deletion.CASCADE, related_name="databases", to="databases.monitoredserver"
                )),
            ],
            options={
                "ordering": ["server", "datname"],
                "constraints": [
                    models.UniqueConstraint(fields=("server", "datname"), name="serverdatabase_server_datname")
                ],
            },
        ),
        migrations.CreateModel(
            name="QueryHold",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("datname", models.CharField(blank=True, max_length=200, verbose_name="database")),
                ("query_id", models.BigIntegerField(blank=True, null=True)),
                ("application_name", models.CharField(blank=True, max_length=200)),
                ("count", models.PositiveIntegerField()),
                ("service", models.ForeignKey(
                    blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL,
                    related_name="+", to="fleet.service",
                )),
                ("snapshot", models.ForeignKey(
                    on_delete=django.db.models.deletion.CASCADE, related_name="holds", to="databases.snapshot"
                )),
            ],
            options={
                "indexes": [
                    models.Index(fields=["query_id", "snapshot"], name="queryhold_query"),
                    models.Index(fields=["service", "snapshot"], name="queryhold_service"),
                ],
            },
        ),
    ]
