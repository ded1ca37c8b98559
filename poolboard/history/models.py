"""Rollups of raw pool samples: one row per pool per 5-minute or 1-hour bucket.

Rows are written only by `poolboard.history.rollup` (INSERT … SELECT … GROUP BY …
ON CONFLICT DO UPDATE), never through the ORM; the models are here for the schema,
the admin-free reads of the charts and the tests.
"""

from __future__ import annotations

from django.contrib.postgres.indexes import BrinIndex
from django.db import models

from poolboard.fleet.models import Pool


class Rollup(models.Model):
    """Per pool per bucket: min/avg/max/p95 of in-use, waiting and utilization,
    averages of the other gauges and times, timeouts and acquisitions summed, seconds saturated."""

    pk = models.CompositePrimaryKey("pool_id", "bucket")
    pool = models.ForeignKey(Pool, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    bucket = models.DateTimeField(help_text="Start of the bucket (UTC, aligned on the Unix epoch).")
    samples = models.IntegerField(help_text="Raw samples in the bucket.")

    in_use_min = models.FloatField(null=True)
    in_use_avg = models.FloatField(null=True)
    in_use_max = models.FloatField(null=True)
    in_use_p95 = models.FloatField(null=True)
    pending_min = models.FloatField(null=True)
    pending_avg = models.FloatField(null=True)
    pending_max = models.FloatField(null=True)
    pending_p95 = models.FloatField(null=True)
    # in_use / max, only for samples with max > 0.
    util_min = models.FloatField(null=True)
    util_avg = models.FloatField(null=True)
    util_max = models.FloatField(null=True)
    util_p95 = models.FloatField(null=True)

    max_avg = models.FloatField(null=True)
    idle_avg = models.FloatField(null=True)
    acquire_s_avg = models.FloatField(null=True)
    hold_s_avg = models.FloatField(null=True)
    # Sum of the samples' timeouts (each an increase over the source's rate window),
    # and the largest of them.
    timeouts = models.FloatField(null=True)
    timeouts_max = models.FloatField(null=True)
    # Connections checked out in the bucket, counted like timeouts (no double counting
    # of overlapping windows); absent where the preset has no acquisitions.
    acquisitions = models.FloatField(null=True)
    # Seconds with callers waiting or every connection in use, from sample spacing.
    saturated_s = models.FloatField(null=True)
    # Seconds with callers waiting (pending > 0) only, the same way: the weekly report's
    # "saturation minutes". Absent where the exporter gives no waiting count.
    waiting_s = models.FloatField(null=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"pool {self.pool_id} at {self.bucket:%Y-%m-%d %H:%M}"


class PoolRollup5m(Rollup):
    class Meta:
        db_table = "history_rollup_5m"
        indexes = [BrinIndex(fields=["bucket"], name="history_rollup_5m_brin")]


class PoolRollup1h(Rollup):
    class Meta:
        db_table = "history_rollup_1h"
        indexes = [BrinIndex(fields=["bucket"], name="history_rollup_1h_brin")]
