"""The slow-queries pages: statements from pg_stat_statements, attributed to the services whose
pools they hold (QueryHold), with the long-running episodes they caused.

Where no monitored server gives statement statistics, the page says how to enable them and
still shows the episode-based list (what the 10 s snapshots of pg_stat_activity caught).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from poolboard.dashboard.templatetags.pool_extras import num
from poolboard.databases.models import Episode, MonitoredServer, query_text_mode
from poolboard.fleet.models import Service
from poolboard.lib import episodes as ep
from poolboard.statements.models import Statement, StatementsStatus

SORTS = {"total": "total time", "mean": "mean time", "calls": "calls", "held": "connection-time held"}
DEFAULT_SORT = "total"
RANGES = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT_RANGE = "24h"
PAGE_SIZE = 50
EPISODES_SHOWN = 50


@dataclass
class StatementFilters:
    """What the slow-queries page and /api/v1/statements/ were asked for, checked."""

    now: datetime
    range_key: str = DEFAULT_RANGE
    sort: str = DEFAULT_SORT
    server: MonitoredServer | None = None
    datname: str = ""
    service: Service | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def since(self) -> datetime:
        return self.now - RANGES[self.range_key]

    @property
    def database(self) -> str:
        """The database filter as written in the URL: "server/datname", "server" or ""."""
        if self.server is None:
            return ""
        return f"{self.server.name}/{self.datname}" if self.datname else self.server.name

    @property
    def query(self) -> str:
        """The filters as a query string, for the pager's links."""
        params = {"range": self.range_key, "sort": self.sort, "database": self.database,
                  "service": self.service.name if self.service else ""}
        return urlencode({k: v for k, v in params.items() if v})

    def top_kwargs(self) -> dict:
        return {"server": self.server, "datname": self.datname or None, "service": self.service}


def parse_filters(params, now: datetime) -> StatementFilters:
    """Read ?range=&sort=&database=server[/datname]&service=; each bad value is an error message
    (the page shows it and uses the default, the API answers 400 with it)."""
    f = StatementFilters(now=now)
    range_key = params.get("range") or DEFAULT_RANGE
    if range_key in RANGES:
        f.range_key = range_key
    else:
        f.errors.append(f"unknown range {range_key!r}; use one of {', '.join(RANGES)}")
    sort = params.get("sort") or DEFAULT_SORT
    if sort in SORTS:
        f.sort = sort
    else:
        f.errors.append(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
    database = params.get("database") or ""
    if database:
        server_name, _, datname = database.partition("/")
        f.server = MonitoredServer.objects.filter(name=server_name).first()
        if f.server is None:
            f.errors.append(f"no monitored server named {server_name!r} (database is server or server/datname)")
        else:
            f.datname = datname
    service = params.get("service") or ""
    if service:
        f.service = Service.objects.filter(name=service).first()
        if f.service is None:
            f.errors.append(f"no service named {service!r}")
    return f


def _ms_to_s(value):
    return value / 1000 if value is not None else None


def trend_text(change) -> str:
    """trend_vs_last_week (the relative change of the mean time against the same range a week
    earlier: 0.25 = 25 % slower) in words; None = it did not run then."""
    if change is None:
        return "new"
    if abs(change) < 0.005:
        return "same"
    return f"{change * 100:+.0f}%"


def rate_text(per_s: float | None) -> str:
    """Calls per second, minute or hour, whichever reads as a number above 1 ("0.00/s" says nothing)."""
    if per_s is None:
        return "—"
    for factor, unit in ((1, "s"), (60, "min")):
        if per_s * factor >= 1:
            return f"{num(per_s * factor)}/{unit}"
    return f"{num(per_s * 3600)}/h"


def decorate(rows, since: datetime, until: datetime) -> None:
    """Seconds for the templates, the trend in words, the share of each service's pool the
    statement held at peak, and how many long-running episodes its text caused in the range
    (one query)."""
    episodes = Episode.objects.long_query_counts(((r["server_id"], r["query_id"]) for r in rows if r["query_id"]), since, until)
    for r in rows:
        r["mean_s"], r["max_s"], r["total_s"] = _ms_to_s(r["mean_ms"]), _ms_to_s(r["max_ms"]), _ms_to_s(r["total_ms"])
        r["trend"] = trend_text(r["trend_vs_last_week"])
        r["rate"] = rate_text(r["calls_per_s"])
        r["episodes"] = episodes.get((r["server_id"], r["query_id"]), 0)
        for s in r["services"]:
            s["peak_share"] = s["peak_held"] / s["pool_max"] if s["pool_max"] else None


def statements_problems() -> list[StatementsStatus]:
    """The enabled servers whose pg_stat_statements cannot be read in full: why, and how to enable it."""
    statuses = []
    for server in MonitoredServer.objects.enabled().select_related("statements_status").order_by("name"):
        try:
            status = server.statements_status
        except StatementsStatus.DoesNotExist:
            status = StatementsStatus.for_server(server)
        if not status.ok:
            statuses.append(status)
    return statuses


def _partial(request, template: str, name: str) -> str:
    if request.htmx and not request.htmx.history_restore_request:
        return f"{template}#{name}"
    return template


def database_choices() -> list[str]:
    """"server/datname" of every database a statement was seen in, for the filter."""
    pairs = Statement.objects.values_list("server__name", "datname").distinct().order_by("server__name", "datname")
    return [f"{server}/{datname}" for server, datname in pairs]


@require_GET
@vary_on_headers("HX-Request")
def slow_queries(request):
    now = timezone.now()
    f = parse_filters(request.GET, now)
    rows = Statement.objects.top(f.since, now, f.sort, limit=None, **f.top_kwargs())
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    decorate(page.object_list, f.since, now)
    problems = statements_problems()
    fallback = []
    if problems or not rows:
        # What the snapshots of pg_stat_activity caught, as before pg_stat_statements was read.
        fallback = list(
            Episode.objects.slow_queries(f.since, "max", server=f.server, service=f.service, datname=f.datname)[:50]
        )
    context = {
        "f": f,
        "page": page,
        "rows": page.object_list,
        "total": len(rows),
        "sorts": SORTS,
        "ranges": list(RANGES),
        "databases": database_choices(),
        "services": Service.objects.order_by("name").values_list("name", flat=True),
        "problems": problems,
        "fallback": fallback,
        "now": now,
        "raw_query_text": query_text_mode() == "raw",
    }
    return render(request, _partial(request, "statements/slow_queries.html", "statements-table"), context)


@require_GET
@vary_on_headers("HX-Request")
def statement_detail(request, pk: int):
    now = timezone.now()
    statement = get_object_or_404(Statement.objects.select_related("server", "query"), pk=pk)
    range_key = request.GET.get("range") or DEFAULT_RANGE
    if range_key not in RANGES:
        range_key = DEFAULT_RANGE
    since = now - RANGES[range_key]
    history = statement.history(since, now)
    # Its figures over the range and its services: top() restricted to this one statement.
    found = Statement.objects.filter(pk=statement.pk).top(
        since, now, server=statement.server, datname=statement.datname, limit=None
    )
    decorate(found, since, now)
    totals = found[0] if found else None
    episodes = []
    if statement.query_id:
        episodes = list(
            Episode.objects.filter(server=statement.server, query_id=statement.query_id, kind=ep.LONG_QUERY)
            .select_related("service")
            .order_by("-first_seen")[:EPISODES_SHOWN]
        )
    context = {
        "statement": statement,
        "range": range_key,
        "ranges": list(RANGES),
        "history": history,
        "chart_data": chart_data(history),
        "totals": totals,
        "services": totals["services"] if totals else [],
        "episodes": episodes,
        "now": now,
        "raw_query_text": query_text_mode() == "raw",
    }
    return render(request, _partial(request, "statements/statement.html", "statement-history"), context)


def chart_data(history) -> dict:
    """The JSON static/js/charts.js draws: calls per minute and mean time per interval."""
    return {
        "x": [h["end"].timestamp() for h in history],
        "charts": [
            {"id": "calls", "title": "Calls per minute", "unit": "",
             "series": [{"field": "calls", "label": "calls/min",
                         "values": [h["calls_per_s"] * 60 if h["calls_per_s"] is not None else None for h in history]}]},
            {"id": "mean", "title": "Mean time", "unit": "s",
             "series": [{"field": "mean_s", "label": "mean",
                         "values": [h["mean_ms"] / 1000 if h["mean_ms"] is not None else None for h in history]}]},
        ],
        "highlights": [],
    }


PANEL_RANGE = "24h"
PANEL_ROWS = 10


@require_GET
def service_statements(request, pk: int):
    """The service page's "queries holding this pool" panel: its top statements by connection-time held."""
    now = timezone.now()
    service = get_object_or_404(Service, pk=pk)
    since = now - RANGES[PANEL_RANGE]
    rows = Statement.objects.top(since, now, "held", service=service, limit=PANEL_ROWS)
    decorate(rows, since, now)
    for r in rows:
        # With a service filter, a row's services hold that service only.
        r["held"] = r["services"][0] if r["services"] else {}
    context = {"service": service, "rows": rows, "range": PANEL_RANGE}
    return render(request, "statements/_service_panel.html", context)
