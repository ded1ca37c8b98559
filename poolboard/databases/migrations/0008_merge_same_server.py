from django.db import migrations


def merge_same_server(apps, schema_editor) -> None:
    """Merge the monitored rows that point at the same server (same host and port).

    Before, two monitored databases on one server each recorded every session of the
    server. The oldest row (by created, then id) is kept; from each of the others:
    1. snapshots move to it, except those whose slot it already has (the same instant,
       recorded twice), which are dropped with their counts;
    2. episodes move to it, except those it already has (same kind, pid, backend_start,
       started: the same episode recorded twice), which are dropped after lending the
       kept one their later last_seen and larger peak age;
    3. attribution rules and cancel/terminate audit rows move to it;
    4. the database each row connected to is listed as a database of the server;
    5. the row is deleted.
    Every monitored row also gets its own connect-to database listed.
    """
    Server = apps.get_model("databases", "MonitoredServer")  # noqa: N806 (a model class)
    Snapshot = apps.get_model("databases", "Snapshot")
    Episode = apps.get_model("databases", "Episode")
    ServerDatabase = apps.get_model("databases", "ServerDatabase")
    snapshot, episode = Snapshot._meta.db_table, Episode._meta.db_table
    rules = apps.get_model("databases", "AttributionRule")._meta.db_table
    actions = apps.get_model("databases", "BackendAction")._meta.db_table
    counts = apps.get_model("databases", "SessionCount")._meta.db_table
    groups: dict[tuple[str, int], list] = {}
    for server in Server.objects.order_by("created", "id"):
        groups.setdefault((server.host.strip().lower(), server.port), []).append(server)
    with schema_editor.connection.cursor() as cur:
        for members in groups.values():
            keep, others = members[0], members[1:]
            for server in members:
                seen = server.last_snapshot_at or server.created
                listed, created = ServerDatabase.objects.get_or_create(
                    server_id=keep.pk, datname=server.dbname,
                    defaults={"first_seen": server.created, "last_seen": seen},
                )
                if not created:
                    listed.first_seen = min(listed.first_seen, server.created)
                    listed.last_seen = max(listed.last_seen, seen)
                    listed.save(update_fields=["first_seen", "last_seen"])
            for other in others:
                dup = f"FROM {snapshot} AS k WHERE k.server_id = %s AND k.slot = s.slot"
                cur.execute(
                    f"""DELETE FROM {counts} WHERE snapshot_id IN (
                            SELECT s.id FROM {snapshot} AS s WHERE s.server_id = %s AND EXISTS (SELECT 1 {dup}))""",
                    [other.pk, keep.pk],
                )
                cur.execute(
                    f"DELETE FROM {snapshot} AS s WHERE s.server_id = %s AND EXISTS (SELECT 1 {dup})",
                    [other.pk, keep.pk],
                )
                cur.execute(f"UPDATE {snapshot} SET server_id = %s WHERE server_id = %s", [keep.pk, other.pk])
                same = """k.server_id = %s AND k.kind = e.kind AND k.pid = e.pid
                          AND k.backend_start IS NOT DISTINCT FROM e.backend_start AND k.started = e.started"""
                cur.execute(
                    f"""UPDATE {episode} AS k
                        SET last_seen = GREATEST(k.last_seen, e.last_seen), peak_age_s = GREATEST(k.peak_age_s, e.peak_age_s)
                        FROM {episode} AS e WHERE e.server_id = %s AND {same}""",
                    [other.pk, keep.pk],
                )
                cur.execute(
                    f"DELETE FROM {episode} AS e WHERE e.server_id = %s AND EXISTS (SELECT 1 FROM {episode} AS k WHERE {same})",
                    [other.pk, keep.pk],
                )
                for table in (episode, rules, actions):
                    cur.execute(f"UPDATE {table} SET server_id = %s WHERE server_id = %s", [keep.pk, other.pk])
                if other.last_snapshot_at and (keep.last_snapshot_at is None or other.last_snapshot_at > keep.last_snapshot_at):
                    # The newest live session list is the one pages show.
                    keep.last_snapshot_at, keep.last_sessions = other.last_snapshot_at, other.last_sessions
                    keep.save(update_fields=["last_snapshot_at", "last_sessions"])
                other.delete()


class Migration(migrations.Migration):
    dependencies = [
        ("databases", "0007_monitored_server"),
    ]

    operations = [
        migrations.RunPython(merge_same_server, migrations.RunPython.noop),
    ]
