from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods
from django.views.decorators.vary import vary_on_headers

from poolboard.databases.models import (
    BackendAction,
    Episode,
    MonitoredServer,
    QueryFingerprint,
    SecretError,
    SignalRefused,
    Snapshot,
    query_text_mode,
)
from poolboard.fleet.models import Service
from poolboard.lib.episodes import IDLE_IN_TX_STATES
from poolboard.sources import pgactivity

SESSION_SORTS = ("age", "pid", "application_name", "usename", "state")


def _partial(request, template: str, name: str) -> str:
    if request.htmx and not request.htmx.history_restore_request:
        return f"{template}#{name}"
    return template


def _banner_context() -> dict:
    return {"raw_query_text": query_text_mode() == "raw"}


@require_GET
@vary_on_headers("HX-Request")
def database_list(request):
    """Each monitored server with its databases (and their connections in the newest snapshot)."""
    now = timezone.now()
    dbs = list(MonitoredServer.objects.prefetch_related("databases"))
    latest = Snapshot.objects.newest_per_server(dbs)
    open_counts = Episode.objects.open_problems_by_server()
    rows = []
    for db in dbs:
        snap = latest.get(db.pk)
        budget = snap.budget() if snap else None
        rows.append({"db": db, "snapshot": snap, "budget": budget, "open": open_counts.get(db.pk, 0),
                     "stale_since": db.stale_since(now), "databases": _databases(db, snap)})
    context = {"rows": rows, "now": now, **_banner_context()}
    return render(request, _partial(request, "databases/list.html", "databases-table"), context)


def _databases(server: MonitoredServer, snap: Snapshot | None) -> list[dict]:
    """[{"datname", "connections"}]: the server's databases with their sessions in its
    newest snapshot, busiest first."""
    connections = server.database_connections(snap)
    return [{"datname": name, "connections": n}
            for name, n in sorted(connections.items(), key=lambda kv: (-kv[1], kv[0]))]


def _filter_sessions(
    sessions: list[dict], state: str, app: str, user: str, datname: str, sort: str, descending: bool
) -> list[dict]:
    rows = [
        s for s in sessions
        if (not state or s["state"] == state)
        and (not app or s["application_name"] == app)
        and (not user or s["usename"] == user)
        and (not datname or s.get("datname", "") == datname)
    ]
    if sort == "age":
        key = lambda s: s.get("age_s") if s.get("age_s") is not None else -1.0  # noqa: E731
    else:
        key = lambda s: s.get(sort) or ""  # noqa: E731
    rows.sort(key=key, reverse=descending)
    return rows


@require_GET
@vary_on_headers("HX-Request")
def server_detail(request, name: str):
    """One server: its budget (server-wide: one max_connections), its databases, live sessions
    and open problems; ?database= narrows the sessions and problems to one database."""
    now = timezone.now()
    db = get_object_or_404(MonitoredServer.objects.select_related("primary").prefetch_related("databases"), name=name)
    snap = db.latest_snapshot()
    budget = snap.budget() if snap else None
    sessions = db.last_sessions or []
    state = request.GET.get("state", "")
    app = request.GET.get("app", "")
    user = request.GET.get("user", "")
    datname = request.GET.get("database", "")
    databases = _databases(db, snap)
    sort = request.GET.get("sort", "age")
    if sort not in SESSION_SORTS:
        sort = "age"
    descending = request.GET.get("dir", "desc") != "asc"
    rows = _filter_sessions(sessions, state, app, user, datname, sort, descending)[:200]
    in_database = [s for s in sessions if not datname or s.get("datname", "") == datname]
    for r in rows:
        r["idle_in_tx"] = r["state"] in IDLE_IN_TX_STATES
    episodes = Episode.objects.filter(server=db).select_related("service", "query")
    if datname:
        episodes = episodes.filter(datname=datname)
    open_problems = _problems(episodes.filter(ended=None).order_by("started")[:150])[:50]
    recent = list(episodes.exclude(ended=None).order_by("-ended")[:20])
    context = {
        "db": db,
        "snapshot": snap,
        "budget": budget,
        "sessions": rows,
        "session_total": len(sessions),
        # The other filters offer what the chosen database has.
        "states": sorted({s["state"] for s in in_database}),
        "apps": sorted({s["application_name"] for s in in_database}),
        "users": sorted({s["usename"] for s in in_database}),
        "databases": databases,
        "datnames": sorted({d["datname"] for d in databases} | {s.get("datname", "") for s in sessions} - {""}),
        "f": {"state": state, "app": app, "user": user, "database": datname, "sort": sort,
              "dir": "desc" if descending else "asc"},
        "open_problems": open_problems,
        "recent_episodes": recent,
        "stale_since": db.stale_since(now),
        "standby_error": db.standby_error(),
        "signals": db.signals_enabled() and request.user.has_perm("databases.signal_backend"),
        "now": now,
        **_banner_context(),
    }
    return render(request, _partial(request, "databases/server.html", "db-live"), context)


def _problems(episodes) -> list[dict]:
    """Episodes grouped into problems: one session's one transaction is one problem, however
    many of its episodes are open (idle in transaction, long transaction, a long query in it).
    [{"episode": the first with a query (shown for the problem), "episodes", "kinds", "age_s":
    the longest}], in the order the episodes come."""
    problems: dict[tuple, dict] = {}
    for e in episodes:
        key = (e.pid, e.backend_start, e.xact_start or e.started)
        p = problems.get(key)
        if p is None:
            p = problems[key] = {"episode": e, "episodes": [], "kinds": [], "age_s": 0.0}
        p["episodes"].append(e)
        p["age_s"] = max(p["age_s"], e.peak_age_s)
        if p["episode"].query_id is None and e.query_id is not None:
            p["episode"] = e
    for p in problems.values():
        p["kinds"] = [label for kind, label in Episode.KIND_CHOICES if any(e.kind == kind for e in p["episodes"])]
    return list(problems.values())


@require_GET
def database_redirect(request, name: str):
    """/databases/<name>/ from before a monitored target was a server: the server page."""
    query = request.META.get("QUERY_STRING", "")
    return redirect(reverse("dashboard:server", args=[name]) + (f"?{query}" if query else ""), permanent=True)


@require_GET
@vary_on_headers("HX-Request")
def query_detail(request, fingerprint: str):
    query = get_object_or_404(QueryFingerprint, fingerprint=fingerprint)
    kind = request.GET.get("kind", "")
    episodes = query.episodes.select_related("server", "service").order_by("-first_seen")
    if kind in dict(Episode.KIND_CHOICES):
        episodes = episodes.filter(kind=kind)
    context = {"query": query, "episodes": list(episodes[:200]), "kind": kind, "kinds": Episode.KIND_CHOICES,
               "now": timezone.now(), **_banner_context()}
    return render(request, _partial(request, "databases/query.html", "query-episodes"), context)


@require_GET
def service_panel(request, pk: int):
    service = get_object_or_404(Service, pk=pk)
    context = {"service": service, "side": Snapshot.objects.service_side(service), "now": timezone.now()}
    return render(request, "databases/_service_panel.html", context)


@require_http_methods(["GET", "POST"])
def signal_session(request, name: str, pid: int):
    """Cancel or terminate one backend.

    1. Refuse unless ALLOW_BACKEND_SIGNALS is set, the database has an admin
       credential, and the user has databases.signal_backend.
    2. GET shows a confirmation page for the session as last seen.
    3. POST signals it with the separate admin credential (only if the pid
       still has the same backend_start) and writes a BackendAction row.
    """

    db = get_object_or_404(MonitoredServer, name=name)
    if not db.signals_enabled():
        raise Http404("cancel/terminate is not enabled for this database")
    if not request.user.has_perm("databases.signal_backend"):
        raise PermissionDenied
    action = request.POST.get("action") or request.GET.get("action", "cancel")
    if action not in ("cancel", "terminate"):
        return HttpResponse("unknown action", status=400)
    backend_start = request.POST.get("backend_start") or request.GET.get("backend_start", "")
    try:
        session, started = db.session_to_signal(pid, backend_start)
    except SignalRefused as exc:
        messages.error(request, str(exc))
        return redirect("dashboard:server", name=db.name)
    if request.method == "GET":
        return render(request, "databases/confirm_signal.html", {"db": db, "s": session, "action": action})

    audit = BackendAction(
        server=db, user=request.user, action=action, pid=pid, backend_start=started,
        application_name=session["application_name"][:200], usename=session["usename"][:200],
        query_text=session.get("query", ""),
    )
    try:
        audit.succeeded = pgactivity.signal_backend(
            db.target(user=db.admin_user), db.admin_password(), pid, audit.backend_start, action, db.limits()
        )
        if not audit.succeeded:
            audit.error = "the backend was gone (or its pid now belongs to another session)"
    except (pgactivity.MonitorError, SecretError) as exc:
        audit.error = str(exc)
    audit.save()
    if audit.succeeded:
        messages.success(request, f"{action.capitalize()} sent to backend {pid} ({session['application_name']}).")
    else:
        messages.error(request, f"{action.capitalize()} of backend {pid} failed: {audit.error}")
    return redirect("dashboard:server", name=db.name)
