"""Signal loaders: every service's (or database's, or server's) value of each signal at `now`.

One evaluation reads each piece of stored data once, with a fixed number of queries whatever
the fleet size: services with their sources (1), pools' newest values (1), open findings (1),
open episodes (1), servers (1), their databases (1), newest snapshots with counts (2). Every
rule then filters the cached readings of its signal in Python (`Tick.readings`), so adding
rules or services adds no query.

A reading whose data source failed or went stale carries `error` instead of being "no data":
the evaluation leaves that instance as it is (reliability.md R1.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from poolboard.lib import alerting
from poolboard.lib.episodes import IDLE_IN_TRANSACTION, LONG_QUERY
from poolboard.lib.pools import FIELDS


@dataclass
class Reading:
    identity: dict[str, str]  # {"service": name} | {"server": name, "database": datname} | {"server": name}
    value: float | None
    error: str = ""
    service_id: int | None = None
    server_id: int | None = None
    datname: str = ""
    # What service selectors match: service, source, preset (and Service.labels where it exists).
    selector_labels: dict[str, str] = field(default_factory=dict)
    # utilization and available: the pool the value comes from, {"instance": .., "pool": ..}.
    pool: dict[str, str] = field(default_factory=dict)


@dataclass
class ServiceRow:
    id: int
    name: str
    labels: dict[str, str]
    error: str
    # Connections each pool may open above its reported max (Service.pool_overflow).
    overflow: int = 0


def service_labels(service) -> dict[str, str]:
    """What a rule's service selector matches: service, source, preset (and Service.labels where it exists)."""
    labels = {"service": service.name, "source": service.source.name, "preset": service.preset}
    extra = getattr(service, "labels", None)
    if isinstance(extra, dict):
        labels.update({str(k): str(v) for k, v in extra.items()})
    return labels


class Tick:
    """The stored data one evaluation reads, each piece loaded once on first use."""

    def __init__(self, now: datetime):
        self.now = now
        self._cache: dict = {}

    def _once(self, key, load):
        if key not in self._cache:
            self._cache[key] = load()
        return self._cache[key]

    # --- stored data --------------------------------------------------------------

    def services(self) -> list[ServiceRow]:
        def load():
            from poolboard.fleet.models import PrometheusSource, Service

            errors, names = {}, {}
            for source in PrometheusSource.objects.all():
                names[source.pk] = source.name
                stale = source.stale_since(self.now)
                if not source.enabled:
                    errors[source.pk] = f"source {source.name} is disabled"
                elif stale is not None:
                    errors[source.pk] = (
                        f"source {source.name} has had no successful collection since {stale:%Y-%m-%d %H:%M:%S}"
                        + (f": {source.last_error[:200]}" if source.last_error else "")
                    )
            extra = ["labels"] if any(f.name == "labels" for f in Service._meta.get_fields()) else []
            rows = []
            for pk, name, source_id, preset, overflow, *more in Service.objects.order_by("pk").values_list(
                "pk", "name", "source_id", "preset", "pool_overflow", *extra
            ):
                labels = {"service": name, "source": names.get(source_id, ""), "preset": preset}
                if more and isinstance(more[0], dict):
                    labels.update({str(k): str(v) for k, v in more[0].items()})
                rows.append(ServiceRow(pk, name, labels, errors.get(source_id, ""), overflow or 0))
            return rows

        return self._once("services", load)

    def pools(self) -> dict[int, list[tuple[dict, datetime | None, tuple[str, str]]]]:
        """Per service: (values, sampled_at, (instance, pool name)) of each pool, in instance order."""

        def load():
            from poolboard.fleet.models import Pool

            out: dict[int, list] = {}
            rows = Pool.objects.order_by("service_id", "instance", "name").values_list(
                "service_id", "instance", "name", "sampled_at", *FIELDS)
            for service_id, instance, name, sampled_at, *values in rows:
                out.setdefault(service_id, []).append((dict(zip(FIELDS, values)), sampled_at, (instance, name)))
            return out

        return self._once("pools", load)

    def open_findings(self) -> dict[int, set[str]]:
        def load():
            from poolboard.diagnosis.models import Finding

            out: dict[int, set[str]] = {}
            for service_id, kind in Finding.objects.open().values_list("service_id", "kind"):
                out.setdefault(service_id, set()).add(kind)
            return out

        return self._once("findings", load)

    def servers(self) -> list:
        def load():
            from poolboard.databases.models import MonitoredServer

            return list(MonitoredServer.objects.enabled().order_by("pk").only(
                "pk", "name", "enabled", "last_snapshot_at", "last_error_at", "last_error"))

        return self._once("servers", load)

    def server_errors(self) -> dict[int, str]:
        def load():
            out = {}
            for server in self.servers():
                stale = server.stale_since(self.now)
                if stale is not None:
                    out[server.pk] = f"server {server.name} has had no snapshot since {stale:%Y-%m-%d %H:%M:%S}"
            return out

        return self._once("server_errors", load)

    def open_episodes(self) -> list[tuple[str, int, int | None, str, datetime]]:
        """(kind, server_id, service_id, datname, started) of the open idle-in-transaction and long-query episodes."""

        def load():
            from poolboard.databases.models import Episode

            return list(
                Episode.objects.open()
                .filter(kind__in=[IDLE_IN_TRANSACTION, LONG_QUERY], server__enabled=True)
                .values_list("kind", "server_id", "service_id", "datname", "started")
            )

        return self._once("episodes", load)

    def databases(self) -> list[tuple[int, str]]:
        def load():
            from poolboard.databases.models import ServerDatabase

            return list(
                ServerDatabase.objects.filter(server__enabled=True).order_by("server_id", "datname")
                .values_list("server_id", "datname")
            )

        return self._once("databases", load)

    # --- readings per signal --------------------------------------------------------

    def readings(self, signal: str, finding_kind: str = "") -> list[Reading]:
        return self._once(("readings", signal, finding_kind), lambda: self._readings(signal, finding_kind))

    def _readings(self, signal: str, finding_kind: str) -> list[Reading]:
        if signal in alerting.POOL_SIGNALS:
            from poolboard.fleet.models import stale_after

            stale_s = stale_after().total_seconds()
            pools = self.pools()
            out = []
            for s in self.services():
                value, key = alerting.worst_pool(signal, pools.get(s.id, []), self.now, stale_s, overflow=s.overflow)
                reading = self._service_reading(s, value)
                if key is not None:
                    reading.pool = {"instance": key[0], "pool": key[1]}
                out.append(reading)
            return out
        if signal == "finding":
            findings = self.open_findings()
            return [self._service_reading(s, 1.0 if finding_kind in findings.get(s.id, ()) else 0.0) for s in self.services()]
        if signal in ("idle_in_transaction_s", "query_s"):
            return self._service_ages(IDLE_IN_TRANSACTION if signal == "idle_in_transaction_s" else LONG_QUERY)
        if signal in ("db_idle_in_transaction_s", "db_query_s"):
            return self._database_ages(IDLE_IN_TRANSACTION if signal == "db_idle_in_transaction_s" else LONG_QUERY)
        if signal == "budget":
            return self._budgets()
        raise ValueError(f"unknown signal {signal!r}")

    def _service_reading(self, service: ServiceRow, value: float | None, error: str = "", *, from_pools: bool = True) -> Reading:
        """`from_pools`: the value comes from Prometheus (directly or through the diagnosis), so a failing
        source makes it unknown; the server-side ages do not depend on it."""
        return Reading({"service": service.name}, value, error or (service.error if from_pools else ""),
                       service_id=service.id, selector_labels=service.labels)

    def _service_ages(self, kind: str) -> list[Reading]:
        """Per service: the oldest open episode of `kind` on any enabled server (0 when none).

        While any enabled server's snapshots have stopped, every service's value is unknown
        (an error, not 0): any service may have sessions there, and what they do is not seen.
        """
        if not self.servers():
            return [self._service_reading(s, None, from_pools=False) for s in self.services()]
        errors = self.server_errors()
        failing = "; ".join(errors[k] for k in sorted(errors))
        oldest: dict[int, float] = {}
        for ep_kind, _server_id, service_id, _datname, started in self.open_episodes():
            if ep_kind == kind and service_id is not None:
                oldest[service_id] = max(oldest.get(service_id, 0.0), (self.now - started).total_seconds())
        return [self._service_reading(s, oldest.get(s.id, 0.0), failing, from_pools=False) for s in self.services()]

    def _database_ages(self, kind: str) -> list[Reading]:
        servers = {s.pk: s for s in self.servers()}
        errors = self.server_errors()
        oldest: dict[tuple[int, str], float] = {}
        for ep_kind, server_id, _service_id, datname, started in self.open_episodes():
            if ep_kind == kind:
                key = (server_id, datname)
                oldest[key] = max(oldest.get(key, 0.0), (self.now - started).total_seconds())
        keys = sorted(set(self.databases()) | set(oldest))
        out = []
        for server_id, datname in keys:
            server = servers.get(server_id)
            if server is None:
                continue
            out.append(Reading({"server": server.name, "database": datname}, oldest.get((server_id, datname), 0.0),
                               errors.get(server_id, ""), server_id=server_id, datname=datname))
        return out

    def _budgets(self) -> list[Reading]:
        from poolboard.databases.models import Snapshot

        servers = self.servers()
        errors = self.server_errors()
        newest = Snapshot.objects.newest_per_server(servers)
        out = []
        for server in servers:
            snap = newest.get(server.pk)
            value = None
            if snap is not None:
                budget = snap.budget()
                value = 100.0 * budget.total / budget.usable if budget.usable else None
            out.append(Reading({"server": server.name}, value, errors.get(server.pk, ""), server_id=server.pk))
        return out


def selected(rule, readings: list[Reading]) -> list[Reading]:
    """The readings a rule's selector picks: services by glob and labels, databases/servers by glob."""
    info = alerting.SIGNALS[rule.signal]
    if info.scope == alerting.SERVICE:
        want = rule.service_labels or {}
        return [
            r for r in readings
            if alerting.glob_matches(rule.service_glob, r.identity["service"])
            and all(r.selector_labels.get(k) == v for k, v in want.items())
        ]
    key = "database" if info.scope == alerting.DATABASE else "server"
    return [r for r in readings if alerting.glob_matches(rule.database_glob, r.identity[key])]
