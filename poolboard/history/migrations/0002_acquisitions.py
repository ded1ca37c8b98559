from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("history", "0001_initial")]

    operations = [
        migrations.AddField(model_name="poolrollup1h", name="acquisitions", field=models.FloatField(null=True)),
        migrations.AddField(model_name="poolrollup5m", name="acquisitions", field=models.FloatField(null=True)),
    ]
