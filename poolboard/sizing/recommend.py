"""Every pool of the fleet sized against its server's budget: the glue between the stored
data and poolboard.lib.sizing.

`fleet_sizing(now)` is what the Sizing page, its CSV, /api/v1/sizing/, the service page and
the weekly report show (the page panels through `recent_fleet_sizing(now)`: see its note). A fixed number of SQL queries whatever the fleet size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings

from poolboard.databases.models import MonitoredServer, Snapshot, standby_errors
from poolboard.diagnosis.models import Finding
from poolboard.fleet.models import Pool, Service
from poolboard.lib import sizing as sz

from . import queries

WINDOW_S = 7 * 86400
# Where a service's sessions were seen, to learn its server when none is configured.
LEARN_WINDOW = timedelta(hours=1)
UNPLACED = "(no known server)"


def policy() -> sz.Policy:
    return sz.Policy(
        headroom=float(getattr(settings, "SIZING_HEADROOM", sz.HEADROOM)),
        admin_reserve_fraction=float(getattr(settings, "SIZING_ADMIN_RESERVE", sz.ADMIN_RESERVE_FRACTION)),
        deploy_surge=float(getattr(settings, "SIZING_DEPLOY_SURGE", sz.DEPLOY_SURGE)),
        min_history_s=float(getattr(settings, "SIZING_MIN_HISTORY", sz.MIN_HISTORY_S)),
        monitor_cap=int(getattr(settings, "MAX_MONITOR_CONNECTIONS", 3)),
    )


def window_s() -> int:
    return int(getattr(settings, "SIZING_WINDOW", WINDOW_S))


@dataclass
class ServerSizing:
    server: MonitoredServer | None  # None: the services no snapshot placed on a server
    sizing: sz.Sizing
    services: dict[str, Service] = field(default_factory=dict)  # by name, for links
    datnames: dict[str, str] = field(default_factory=dict)  # service name -> database
    learned: set[str] = field(default_factory=set)  # service names placed by the snapshots, not configured
    inputs: list[sz.PoolInput] = field(default_factory=list)
    snapshot_at: datetime | None = None
    # A hot standby whose max_connections is below its primary's: recovery stops (an error).
    standby_error: str | None = None

    @property
    def name(self) -> str:
        return self.server.name if self.server else UNPLACED


@dataclass
class FleetSizing:
    now: datetime
    window_s: int
    policy: sz.Policy
    servers: list[ServerSizing]

    @property
    def by_service(self) -> dict[str, list[tuple[ServerSizing, sz.Recommendation]]]:
        out: dict[str, list] = {}
        for ss in self.servers:
            for rec in ss.sizing.recommendations:
                out.setdefault(rec.pool.service, []).append((ss, rec))
        return out

    def server(self, name: str) -> ServerSizing | None:
        return next((ss for ss in self.servers if ss.name == name), None)


def _slow_share(finding: Finding) -> float | None:
    shares = [fp.get("share") for fp in (finding.detail or {}).get("fingerprints", []) if isinstance(fp, dict)]
    present = [float(s) for s in shares if isinstance(s, int | float)]
    return min(sum(present), 1.0) if present else None


def _pool_limits(now: datetime) -> tuple[dict[queries.PoolKey, dict], dict[int, queries.PoolKey]]:
    """Per (service, pool name): the largest max/min its instances report and the most instances
    alive at once in the last 24 h; and each pool id's key. One query.

    An instance counts as alive from when it was first seen (or 24 h ago) to its newest sample:
    a rolling deploy's old and new instances overlap, pods replaced days apart do not.
    The max/min are those of the instances sampled in the last 24 h: a pool's rows are never
    deleted, and each deploy on Kubernetes brings new instance names, so a size lowered by a
    deploy would otherwise count at its old value forever. With no recent instance, the last
    known values.
    """
    since = now - timedelta(hours=24)
    limits: dict[queries.PoolKey, dict] = {}
    recent: dict[queries.PoolKey, dict] = {}
    keys: dict[int, queries.PoolKey] = {}
    spans: dict[queries.PoolKey, list[tuple[datetime, datetime]]] = {}
    for pk, service_id, name, mx, mn, first_seen, sampled_at in Pool.objects.values_list(
        "pk", "service_id", "name", "max", "min", "first_seen_at", "sampled_at"
    ):
        key = keys[pk] = (service_id, name)
        alive = sampled_at is not None and sampled_at >= since
        for into in (limits, recent) if alive else (limits,):
            lim = into.setdefault(key, {"max": None, "min": None})
            if mx is not None and (lim["max"] is None or mx > lim["max"]):
                lim["max"] = mx
            if mn is not None and (lim["min"] is None or mn > lim["min"]):
                lim["min"] = mn
        if alive:
            spans.setdefault(key, []).append((min(max(first_seen, since), sampled_at), sampled_at))
    for key, lim in limits.items():
        now_lim = recent.get(key, {})
        if now_lim.get("max") is not None:
            lim["max"] = now_lim["max"]
            lim["min"] = now_lim["min"]
        lim["instances"] = sz.most_at_once(spans.get(key, []))
    return limits, keys


def pool_inputs(now: datetime) -> tuple[list[Service], dict[int, list[sz.PoolInput]]]:
    """The services and {service id: one PoolInput per pool name} (four queries)."""
    services = list(Service.objects.all())
    limits, keys = _pool_limits(now)
    demand = queries.demand_by_pool(now - timedelta(seconds=window_s()), now, keys)
    findings = Finding.objects.open_by_service()
    by_service: dict[int, list[sz.PoolInput]] = {}
    names_by_service: dict[int, list[str]] = {}
    for service_id, name in sorted(limits):
        names_by_service.setdefault(service_id, []).append(name)
    for svc in services:
        open_findings = findings.get(svc.pk, [])
        leak = any(f.kind == "leak" for f in open_findings)
        slow = next((_slow_share(f) for f in open_findings if f.kind == "slow_queries"), None)
        pooler = None
        if svc.pooler:
            pooler = sz.Pooler(svc.pooler, svc.pooler_pool_size or sz.PGBOUNCER_DEFAULT_POOL_SIZE,
                               svc.pooler_max_db_connections or 0, svc.pooler_instances or 1)
        names = names_by_service.get(svc.pk, [])
        for name in names:
            key = (svc.pk, name)
            lim = limits[key]
            by_service.setdefault(svc.pk, []).append(sz.PoolInput(
                service=svc.name, pool=name if len(names) > 1 else "",
                max=lim["max"], min=lim["min"], overflow=svc.pool_overflow,
                instances_seen=lim["instances"],
                replicas=svc.replicas, replicas_max=svc.replicas_max, workers=svc.workers_per_instance,
                pooler=pooler, demand=demand.get(key), leak=leak, slow_share=slow,
            ))
    return services, by_service


def fleet_sizing(now: datetime) -> FleetSizing:
    """Every server's ledger and its pools' recommendations, fitted to its 80 % line.

    A service's server is the one configured on it, else the one where the snapshots of
    the last hour saw most of its sessions; services on none are listed apart, unfitted.
    """
    pol = policy()
    servers = list(MonitoredServer.objects.enabled())
    newest = (
        Snapshot.objects.filter(server__in=servers).order_by("server_id", "-slot").distinct("server_id")
        .only("server_id", "taken_at", "total", "max_connections", "superuser_reserved_connections",
              "reserved_connections")
    )
    snapshots = {s.server_id: s for s in newest}
    services, by_service = pool_inputs(now)
    learned = queries.learned_servers(now - LEARN_WINDOW)
    groups: dict[int | None, ServerSizing] = {}
    known = {s.pk: s for s in servers}
    for svc in services:
        pools = by_service.get(svc.pk)
        if not pools:
            continue
        server_id, datname, was_learned = svc.server_id, svc.datname, False
        if server_id is None and svc.pk in learned:
            server_id, seen_datname = learned[svc.pk]
            datname, was_learned = datname or seen_datname, True
        if server_id not in known:
            server_id = None
        group = groups.get(server_id)
        if group is None:
            group = groups[server_id] = ServerSizing(known.get(server_id), sizing=None)  # type: ignore[arg-type]
        group.services[svc.name] = svc
        group.datnames[svc.name] = datname
        if was_learned:
            group.learned.add(svc.name)
        group.inputs.extend(pools)
    out = []
    for server_id in sorted(groups, key=lambda k: (k is None, known[k].name if k in known else "")):
        group = groups[server_id]
        snap = snapshots.get(server_id)
        if snap is not None:
            limits = sz.Server(group.name, snap.max_connections, snap.superuser_reserved_connections,
                               snap.reserved_connections or 0, open_now=snap.total)
            group.snapshot_at = snap.taken_at
        else:
            limits = sz.Server(group.name)
        group.sizing = sz.size_server(limits, group.inputs, pol)
        out.append(group)
    # Servers with no service on them still show their budget (empty ledger).
    for server in servers:
        if server.pk not in groups:
            snap = snapshots.get(server.pk)
            limits = (sz.Server(server.name, snap.max_connections, snap.superuser_reserved_connections,
                                snap.reserved_connections or 0, open_now=snap.total) if snap else sz.Server(server.name))
            out.append(ServerSizing(server, sz.size_server(limits, [], pol), snapshot_at=snap.taken_at if snap else None))
    errors = standby_errors([s for s in servers if s.in_recovery],
                            {pk: snap.max_connections for pk, snap in snapshots.items()})
    for ss in out:
        if ss.server is not None:
            ss.standby_error = errors.get(ss.server.pk)
    out.sort(key=lambda ss: (ss.server is None, ss.name))
    return FleetSizing(now, window_s(), pol, out)


def what_if(ss: ServerSizing, label: str, max_size: int | None, replicas: int | None, pol: sz.Policy) -> sz.Sizing:
    return sz.what_if(ss.sizing.ledger.server, ss.inputs, label, max_size=max_size, replicas=replicas, policy=pol)


# -- This process's copy, for the panels every service and server page loads ------------------
#
# fleet_sizing() reads a week of hourly rollups for every pool (~0.3 s at 400 services, ~0.5 s at
# 1 000): too much for a panel that 50 viewers' service pages load, each holding one of the web
# server's few workers. The panels (a service's recommendation, a server's what-if) reuse one
# computation for up to SIZING_PANEL_CACHE_S seconds while nothing a verdict rests on changed:
# the services' sizing settings, the servers monitored and the open findings (a leak turns
# "grow" into "fix the leak"). The rollups move hourly, the pools' max once a tick: the age limit
# covers those. The Sizing page, its CSV, the API and the weekly report compute afresh.

SERVICE_SIZING_FIELDS = (
    "pk", "name", "server_id", "datname", "pool_overflow", "replicas", "replicas_max", "workers_per_instance",
    "pooler", "pooler_pool_size", "pooler_max_db_connections", "pooler_instances",
)


@dataclass
class _Cached:
    version: tuple
    valid_until: datetime
    fleet: FleetSizing


_cached: _Cached | None = None


def sizing_version() -> tuple:
    """What the verdicts rest on, besides the rollups and the clock (three small queries)."""
    services = hash(tuple(Service.objects.order_by("pk").values_list(*SERVICE_SIZING_FIELDS)))
    servers = tuple(MonitoredServer.objects.order_by("pk").values_list("pk", "enabled", "primary_id"))
    open_findings = tuple(Finding.objects.filter(closed_at=None).order_by("pk").values_list("pk", "kind"))
    return services, servers, hash(open_findings)


def recent_fleet_sizing(now: datetime) -> FleetSizing:
    """fleet_sizing(now), or this process's copy of it while still valid (see above).

    The copy is shared between requests: read it, never change it.
    """
    global _cached
    version = sizing_version()
    cached = _cached
    if cached is not None and cached.version == version and cached.fleet.now <= now < cached.valid_until:
        return cached.fleet
    fleet = fleet_sizing(now)
    _cached = _Cached(version, now + timedelta(seconds=getattr(settings, "SIZING_PANEL_CACHE_S", 60)), fleet)
    return fleet


def forget_fleet_sizing() -> None:
    """Drop this process's copy: the next call computes afresh (tests, benchmarks)."""
    global _cached
    _cached = None
