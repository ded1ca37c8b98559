"""Diagnosis findings (opened and closed per service, with their evidence) and agent reports.

A finding row is one verdict of one kind for one service, from the tick it first held to the
tick it stopped holding: "when did this start" and "did it happen last week" are queries on
this table. The verdicts themselves are computed by `poolboard.lib.diagnosis` (pure).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models, transaction

from poolboard.agent.protocol import FINGERPRINT_CHARS, MAX_FUNCTION_CHARS, MAX_NAME_CHARS
from poolboard.fleet.models import Service
from poolboard.lib.pools import Verdict

KIND_CHOICES = [
    ("leak", "leak suspected"),
    ("stuck", "stuck"),
    ("saturation", "saturated"),
    ("slow_queries", "slow queries"),
    ("churn", "connection churn"),
    ("not_enough_data", "not enough data"),
]
SEVERITY_CHOICES = [("crit", "critical"), ("warn", "warning"), ("info", "info")]
SEVERITY_ORDER = {"crit": 0, "warn": 1, "info": 2, "ok": 3}
# Which verdict a row leads with when several hold: the most actionable first. A leak names
# the code to fix, so it leads even when the pool it emptied is now stuck (the stuck
# finding's critical severity still colours the row); saturation is a capacity decision.
KIND_ORDER = {"leak": 0, "stuck": 1, "slow_queries": 2, "saturation": 3, "churn": 4, "not_enough_data": 5}


class FindingQuerySet(models.QuerySet):
    def open(self):
        return self.filter(closed_at__isnull=True)

    def for_services(self, service_ids):
        return self.filter(service_id__in=list(service_ids))

    def open_by_service(self, service_ids=None) -> dict[int, list[Finding]]:
        """{service_id: [open findings, most actionable first]} in one query."""
        qs = self.open()
        if service_ids is not None:
            qs = qs.for_services(service_ids)
        out: dict[int, list[Finding]] = {}
        for finding in qs:
            out.setdefault(finding.service_id, []).append(finding)
        for findings in out.values():
            findings.sort(key=Finding.rank)
        return out

    def record(self, verdicts: dict[int, list], now: datetime, keep_open=frozenset()) -> dict[str, int]:
        """Store one diagnosis pass: open new findings, refresh ongoing ones, close the rest.

        `verdicts` maps service id → the engine's findings for it ("healthy" ones are not
        stored: a service with no open finding is healthy). Services not in `verdicts` are
        left alone, and so are the open findings of services in `keep_open` (their source is
        failing: what could not be judged is not over). A fixed number of queries whatever the
        number of services: one read of the open rows, one INSERT, one bulk UPDATE, one UPDATE closing.
        """
        with transaction.atomic():
            # select_for_update: two overlapping passes (a redelivered task) must not both
            # open the same (service, kind); the partial unique index is the belt.
            current = {
                (f.service_id, f.kind): f
                for f in self.open().for_services(verdicts).select_for_update()
            }
            to_create, to_update, seen = [], [], set()
            for service_id, findings in verdicts.items():
                for v in findings:
                    if v.kind == "healthy":
                        continue
                    key = (service_id, v.kind)
                    if key in seen:
                        continue
                    seen.add(key)
                    row = current.get(key)
                    fields = Finding.fields_from(v, now)
                    if row is None:
                        to_create.append(Finding(service_id=service_id, kind=v.kind, opened_at=v.since, **fields))
                    else:
                        for name, value in fields.items():
                            setattr(row, name, value)
                        # A worse severity later in the same episode raises the peak.
                        if SEVERITY_ORDER[row.severity] < SEVERITY_ORDER.get(row.peak_severity, 9):
                            row.peak_severity = row.severity
                        to_update.append(row)
            for row in to_create:
                row.peak_severity = row.severity
            self.bulk_create(to_create)
            if to_update:
                self.bulk_update(
                    to_update,
                    ["severity", "peak_severity", "confidence", "last_seen_at", "evidence", "fix",
                     "suspected_leaked", "detail", "summary"],
                )
            closing = [f.pk for key, f in current.items() if key not in seen and key[0] not in keep_open]
            if closing:
                self.filter(pk__in=closing).update(closed_at=now)
        return {"opened": len(to_create), "updated": len(to_update), "closed": len(closing)}


class Finding(models.Model):
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="findings")
    kind = models.CharField(max_length=20, choices=KIND_CHOICES)
    severity = models.CharField(max_length=5, choices=SEVERITY_CHOICES)
    peak_severity = models.CharField(max_length=5, choices=SEVERITY_CHOICES, default="info")
    confidence = models.FloatField(help_text="0–1: how many independent signals agree")
    # opened_at is when the data says it began (e.g. when in use started rising), which can
    # be earlier than the pass that first noticed it.
    opened_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    summary = models.CharField(max_length=300, help_text="one line for the overview")
    # [{"text": ..., "start": iso, "end": iso}, ...]: numbers a human can check, with the
    # chart range each refers to.
    evidence = models.JSONField(default=list)
    fix = models.TextField()
    suspected_leaked = models.FloatField(default=0)
    detail = models.JSONField(default=dict, blank=True)

    objects = FindingQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            # One open finding per (service, kind): record() relies on it.
            models.UniqueConstraint(
                fields=["service", "kind"], condition=models.Q(closed_at__isnull=True), name="diagnosis_one_open_per_kind"
            ),
        ]
        indexes = [
            # The service page's history and /api/v1/findings/?service= read newest first.
            models.Index(fields=["service", "-opened_at"], name="diagnosis_finding_history"),
            # /api/v1/findings/?kind=&open=1 and the leaks page read open findings of a kind.
            models.Index(fields=["kind"], condition=models.Q(closed_at__isnull=True), name="diagnosis_open_by_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.service} {self.kind} since {self.opened_at:%Y-%m-%d %H:%M}"

    @staticmethod
    def fields_from(verdict, now: datetime) -> dict:
        evidence = [{"text": e.text, "start": e.start.isoformat(), "end": e.end.isoformat()} for e in verdict.evidence]
        severity = verdict.severity if verdict.severity in SEVERITY_ORDER and verdict.severity != "ok" else "info"
        return {
            "severity": severity,
            "confidence": round(float(verdict.confidence), 3),
            "last_seen_at": now,
            "evidence": evidence,
            "fix": verdict.fix,
            "suspected_leaked": float(verdict.suspected_leaked or 0),
            "detail": verdict.detail or {},
            "summary": (evidence[0]["text"] if evidence else verdict.fix)[:300],
        }

    def rank(self) -> tuple[int, int, float]:
        return (KIND_ORDER.get(self.kind, 9), SEVERITY_ORDER.get(self.severity, 9), -self.confidence)

    def verdict(self) -> Verdict:
        return Verdict(self.kind, self.get_kind_display(), self.severity, self.opened_at, self.summary)

    @property
    def is_open(self) -> bool:
        return self.closed_at is None



class ServiceThresholds(models.Model):
    """Per-service overrides of lib.diagnosis.Thresholds (empty = the defaults)."""

    service = models.OneToOneField(Service, on_delete=models.CASCADE, related_name="diagnosis_thresholds")
    overrides = models.JSONField(
        default=dict,
        blank=True,
        help_text='e.g. {"leak_s": 120} — names as in poolboard/lib/diagnosis.py Thresholds',
    )

    class Meta:
        verbose_name = "diagnosis thresholds"
        verbose_name_plural = "diagnosis thresholds"

    def __str__(self) -> str:
        return f"thresholds for {self.service}"


IDLE_IN_TX = ("idle in transaction", "idle in transaction (aborted)")


def holder_sessions(services, now: datetime, leak_s: float = 60.0) -> dict[str, list[dict]]:
    """{service name: who holds its idle connections on the server, longest idle first}.

    Two sources in the newest snapshot of each enabled database (three queries whatever
    the fleet size):
    - idle-in-transaction sessions, one by one (pid, last query fingerprint), from the
      live session list;
    - plain idle sessions idle for longer than `leak_s`, by (application, user, client
      address) group with how many and the longest idle age: snapshots count idle
      sessions instead of listing them (a healthy pool's idle connections would swamp
      the list), so there is no pid or query for these.
    """
    from django.utils.dateparse import parse_datetime

    from poolboard.databases.models import MonitoredServer, Snapshot
    from poolboard.lib.session_ages import idle_over

    by_id = {s.id: s.name for s in services}
    names = set(by_id.values())
    out: dict[str, list[dict]] = {}
    if not names:
        return out
    databases = list(MonitoredServer.objects.enabled().only("name", "last_sessions"))
    for db in databases:
        for s in db.last_sessions or []:
            if s.get("service") not in names or s.get("state") not in IDLE_IN_TX:
                continue
            changed = parse_datetime(s["state_change"]) if s.get("state_change") else None
            out.setdefault(s["service"], []).append({
                "database": db.name, "pid": s.get("pid"), "sessions": 1,
                "application_name": s.get("application_name", ""), "client_addr": s.get("client_addr") or "",
                "usename": s.get("usename", ""), "state": s["state"],
                "fingerprint": s.get("fingerprint") or "", "query": s.get("query") or "",
                "idle_s": (now - changed).total_seconds() if changed else None,
            })
    newest = Snapshot.objects.newest_per_server(databases)
    names_by_db = {db.pk: db.name for db in databases}
    for db_id, snap in newest.items():
        lag = (now - snap.taken_at).total_seconds() if snap.taken_at else 0.0
        for count in snap.counts.all():
            name = by_id.get(count.service_id)
            if name is None or count.state != "idle":
                continue
            # Ages were measured when the snapshot was taken: add the time since.
            sessions = idle_over(count.idle_over, leak_s - lag)
            if not sessions or count.longest_idle_s is None:
                continue
            out.setdefault(name, []).append({
                "database": names_by_db[db_id], "pid": None, "sessions": sessions,
                "application_name": count.application_name, "client_addr": count.client_addr,
                "usename": count.usename, "state": "idle", "fingerprint": "", "query": "",
                "idle_s": count.longest_idle_s + lag,
            })
    for rows in out.values():
        rows.sort(key=lambda r: -(r["idle_s"] or 0))
    return out


# Agent reports (poolboard.agent) ------------------------------------------------------------------

# A report describes the present for this long: the agent re-sends every 15 s while connections are
# held, so three minutes covers a few missed or backed-off reports. Same as the engine's
# Thresholds.agent_stale_s.
AGENT_REPORT_CURRENT_FOR = timedelta(minutes=3)
AGENT_REPORT_RETENTION = timedelta(days=7)


class AgentReportQuerySet(models.QuerySet):
    def ingest(self, batch: dict, received_at: datetime) -> int:
        """Store one validated batch (poolboard.agent.protocol) as the truth for its instance.

        One row per (service, instance, stack fingerprint), updated in place: the newest count and
        hold, the first time it was seen kept. Stacks of that instance missing from the batch hold
        nothing any more (count 0, kept for the record). Three queries whatever the batch size.
        """
        service_name, instance = batch["service"], batch["instance"]
        service = Service.objects.filter(name=service_name).only("id").first()
        rows = [
            AgentReport(
                service=service,
                service_name=service_name,
                instance=instance,
                fingerprint=report["fingerprint"],
                function=report["function"],
                stack=report["stack"],
                count=report["count"],
                oldest_hold_s=report["oldest_hold_s"],
                reported_at=batch["sent_at"],
                received_at=received_at,
                first_reported_at=received_at,
            )
            for report in batch["reports"]
        ]
        with transaction.atomic():
            self.bulk_create(
                rows,
                update_conflicts=True,
                unique_fields=["service_name", "instance", "fingerprint"],
                update_fields=["service", "function", "stack", "count", "oldest_hold_s", "reported_at", "received_at"],
            )
            self.filter(service_name=service_name, instance=instance, count__gt=0).exclude(
                fingerprint__in=[report["fingerprint"] for report in batch["reports"]]
            ).update(count=0, received_at=received_at, reported_at=batch["sent_at"])
        return len(rows)

    def current(self, now: datetime):
        """Stacks holding connections as of the newest reports (received in the last few minutes)."""
        return self.filter(received_at__gte=now - AGENT_REPORT_CURRENT_FOR, count__gt=0)

    def current_for(self, services, now: datetime) -> dict[int, list[dict]]:
        """{service id: [held-connection groups, most connections first]} in one query.

        Matched by service name, so reports that arrived before collection first saw the service
        count too. Each dict has the fields of lib.diagnosis.AgentHeld; `reported_at` is when
        poolboard received it (the hold was measured then, on poolboard's clock, not the agent's).
        """
        id_by_name = {service.name: service.id for service in services}
        rows = (
            self.current(now)
            .filter(service_name__in=list(id_by_name))
            .order_by("-count", "-oldest_hold_s", "fingerprint")
            .values_list("service_name", "fingerprint", "stack", "function", "count", "oldest_hold_s", "instance", "received_at")
        )
        out: dict[int, list[dict]] = {}
        for name, fingerprint, stack, function, count, oldest_hold_s, instance, received_at in rows:
            out.setdefault(id_by_name[name], []).append({
                "fingerprint": fingerprint,
                "stack": stack,
                "function": function,
                "count": count,
                "oldest_hold_s": oldest_hold_s,
                "instance": instance,
                "reported_at": received_at,
            })
        return out

    def stacks_by_service(self, services, now: datetime) -> dict[int, list[dict]]:
        """What the leak suspects page and the Diagnosis panel list: the current stacks."""
        return self.current_for(services, now)

    def prune(self, now: datetime) -> int:
        """Delete reports not renewed for AGENT_REPORT_RETENTION; the number deleted."""
        deleted, _ = self.filter(received_at__lt=now - AGENT_REPORT_RETENTION).delete()
        return deleted


class AgentReport(models.Model):
    """The latest word of one agent instance on one stack: how many connections it holds, how long.

    The service is stored by name, as the agent sends it, and linked to the Service when one of
    that name exists at ingest time.
    """

    service = models.ForeignKey(Service, on_delete=models.SET_NULL, null=True, blank=True, related_name="agent_reports")
    service_name = models.CharField(max_length=MAX_NAME_CHARS)
    instance = models.CharField(max_length=MAX_NAME_CHARS)
    fingerprint = models.CharField(max_length=FINGERPRINT_CHARS, help_text="sha1 of the stack's module:function:line frames")
    function = models.CharField(max_length=MAX_FUNCTION_CHARS, help_text="innermost application function")
    stack = models.TextField(help_text="traceback-style, outermost call first")
    count = models.PositiveIntegerField(help_text="connections checked out at this stack and held past the threshold")
    oldest_hold_s = models.FloatField()
    reported_at = models.DateTimeField(help_text="the batch's sent_at, on the agent's clock")
    received_at = models.DateTimeField()
    first_reported_at = models.DateTimeField()

    objects = AgentReportQuerySet.as_manager()

    class Meta:
        constraints = [
            # The conflict target of ingest()'s upsert; its service_name prefix also serves a
            # service's reports.
            models.UniqueConstraint(fields=["service_name", "instance", "fingerprint"], name="agentreport_one_per_stack"),
        ]
        indexes = [
            # current() (diagnosis ticks, leak page, service panel: received in the last minutes)
            # and prune() (received more than 7 days ago).
            models.Index(fields=["received_at"], name="agentreport_received"),
        ]

    def __str__(self) -> str:
        return f"{self.service_name}@{self.instance}: {self.count} held at {self.function}"
