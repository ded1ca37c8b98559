from __future__ import annotations

from celery import shared_task
from django.db import connection, transaction

# pg_try_advisory_lock key space: (LOCK_CLASS, 0). "alrt" in ASCII.
LOCK_CLASS = 0x616C7274


@shared_task(name="poolboard.alerts.evaluate_rules")
def evaluate_rules(**kwargs) -> dict:
    """Evaluate every enabled rule at the database's now().

    Queued by collect_pools after each tick (whatever its outcome: a failing source must be
    counted, error is not no data). Overlapping passes skip: the compare-and-set makes a
    concurrent pass harmless, but it would only repeat the work.
    """
    from .evaluate import evaluate_rules as evaluate

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, 0)", [LOCK_CLASS])
            if not cursor.fetchone()[0]:
                return {"skipped": "another evaluation is running"}
        result = evaluate()
    return {"now": result.now.isoformat(), "rules": result.rules, "transitions": result.transitions,
            "lost_races": result.lost_races, "errors": result.errors}
