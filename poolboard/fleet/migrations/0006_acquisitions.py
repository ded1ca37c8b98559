from django.db import migrations, models

# fleet_poolsample is unmanaged (partitioned, made by RunSQL in 0002): the column is
# added by SQL (added to the parent, it is added to every partition) and to the model
# state by AddField.
ADD_SAMPLE_COLUMN = "ALTER TABLE fleet_poolsample ADD COLUMN acquisitions double precision;"
DROP_SAMPLE_COLUMN = "ALTER TABLE fleet_poolsample DROP COLUMN acquisitions;"


class Migration(migrations.Migration):
    dependencies = [("fleet", "0005_rename_created_closed_to_conns")]

    operations = [
        migrations.AddField(
            model_name="pool",
            name="acquisitions",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="custompreset",
            name="acquisitions_query",
            field=models.TextField(blank=True, verbose_name="acquisitions"),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(ADD_SAMPLE_COLUMN, DROP_SAMPLE_COLUMN)],
            state_operations=[
                migrations.AddField(
                    model_name="poolsample",
                    name="acquisitions",
                    field=models.FloatField(null=True),
                ),
            ],
        ),
    ]
