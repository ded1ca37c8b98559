from django.db import migrations, models


class Migration(migrations.Migration):
    """One row per server, now that 0008 merged the rows that shared one."""

    dependencies = [
        ("databases", "0008_merge_same_server"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="monitoredserver",
            constraint=models.UniqueConstraint(fields=("host", "port"), name="monitoredserver_host_port"),
        ),
    ]
