from django.db import migrations


class Migration(migrations.Migration):
    """Room on every page of the episode table for the next version of its rows.

    Every snapshot updates each open episode (last_seen, peak_age_s); with full pages
    (fillfactor 100) each update goes to another page and writes an entry in all five
    of the table's indexes. With 30 % free, PostgreSQL updates in place (HOT): no
    index entry, as none of the updated columns is indexed. Rows written before this
    migration move to such pages as they are updated or vacuumed.
    """

    dependencies = [
        ("databases", "0005_snapshot_taken_at"),
    ]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE databases_episode SET (fillfactor = 70)",
            reverse_sql="ALTER TABLE databases_episode RESET (fillfactor)",
        ),
    ]
