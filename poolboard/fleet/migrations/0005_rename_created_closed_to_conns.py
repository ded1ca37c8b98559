from django.db import migrations, models

# Connections opened / closed per rate window were called `created` / `closed`, which
# read like row timestamps. Renamed in place: the data is kept.
# fleet_poolsample is unmanaged (a partitioned table made by RunSQL in 0002), so its
# columns are renamed by SQL (a rename on the parent renames every partition's column)
# and only the model state by RenameField.
RENAME_SAMPLE_COLUMNS = """
ALTER TABLE fleet_poolsample RENAME COLUMN created TO conns_opened;
ALTER TABLE fleet_poolsample RENAME COLUMN closed TO conns_closed;
"""
UNRENAME_SAMPLE_COLUMNS = """
ALTER TABLE fleet_poolsample RENAME COLUMN conns_opened TO created;
ALTER TABLE fleet_poolsample RENAME COLUMN conns_closed TO closed;
"""


class Migration(migrations.Migration):
    dependencies = [("fleet", "0004_source_url_single_label_hosts")]

    operations = [
        migrations.RenameField(model_name="pool", old_name="created", new_name="conns_opened"),
        migrations.RenameField(model_name="pool", old_name="closed", new_name="conns_closed"),
        migrations.RenameField(model_name="custompreset", old_name="created_query", new_name="conns_opened_query"),
        migrations.RenameField(model_name="custompreset", old_name="closed_query", new_name="conns_closed_query"),
        migrations.AlterField(
            model_name="custompreset",
            name="conns_opened_query",
            field=models.TextField(blank=True, verbose_name="connections opened"),
        ),
        migrations.AlterField(
            model_name="custompreset",
            name="conns_closed_query",
            field=models.TextField(blank=True, verbose_name="connections closed"),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(RENAME_SAMPLE_COLUMNS, UNRENAME_SAMPLE_COLUMNS)],
            state_operations=[
                migrations.RenameField(model_name="poolsample", old_name="created", new_name="conns_opened"),
                migrations.RenameField(model_name="poolsample", old_name="closed", new_name="conns_closed"),
            ],
        ),
    ]
