"""A stored report's numbers as the strings every rendering shows.

The page, the PDF, the email's HTML and text parts, and the CSV files all take their figures
from here, formatted once, so they cannot disagree (a test reads them all back).
"""

from __future__ import annotations

import base64
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from django.conf import settings
from django.urls import reverse

from poolboard.lib.episodes import IDLE_IN_TRANSACTION, LONG_QUERY

from . import charts

DASH = "—"
INSUFFICIENT = "insufficient data"
SORTS = {
    "name": (lambda r: r["name"], False),
    "peak": (lambda r: r["figures"]["peak_util"], True),
    "p95": (lambda r: r["figures"]["p95_util"], True),
    "p99": (lambda r: r["figures"]["p99_util"], True),
    "saturation": (lambda r: r["figures"]["saturation_minutes"], True),
    "timeouts": (lambda r: r["figures"]["timeouts_per_1k"], True),
    "acquire": (lambda r: r["figures"]["acquire_p95_s"], True),
}
DEFAULT_SORT = "p95"
# The email carries this many rows per table and links to the page for the rest.
EMAIL_ROWS = 20
EMAIL_CHARTS = 6
# The page and the PDF draw a chart for this many services (in the table's order, most
# utilized first); every service is in the tables.
PAGE_CHARTS = 60
PDF_CHARTS = 100


def pct(v: float | None) -> str:
    return DASH if v is None else f"{100 * v:.0f} %"


def num(v: float | None, digits: int = 0) -> str:
    if v is None:
        return DASH
    return f"{v:,.{digits}f}"


def seconds(v: float | None) -> str:
    if v is None:
        return DASH
    if v < 1:
        return f"{1000 * v:.0f} ms"
    if v < 120:
        return f"{v:.1f} s"
    return f"{v / 60:.0f} min"


def minutes(v: float | None) -> str:
    return DASH if v is None else f"{v:,.0f} min"


def change_text(ch: dict, kind: str, fmt=None) -> str:
    """'↑ +12 pts', '↓ −30 %', '→', 'new', ''. `fmt`: how the figure is shown; a change too small
    to show in it (0.2 saturated minutes after none) is no change to the reader."""
    direction = ch["direction"]
    if fmt is not None and direction in ("up", "down", "new") and fmt(ch["current"]) == fmt(ch["previous"]):
        return "→"
    if direction in ("none", "flat"):
        return "→" if direction == "flat" else ""
    if direction == "new":
        return "new"
    arrow = "↑" if direction == "up" else "↓"
    if kind == "util":
        return f"{arrow} {100 * ch['delta']:+.0f} pts".replace("-", "−")
    return f"{arrow} {ch['pct']:+.0f} %".replace("-", "−")


def local(iso: str | None, tz: str) -> str:
    if not iso:
        return DASH
    return datetime.fromisoformat(iso).astimezone(ZoneInfo(tz)).strftime("%a %d %b %H:%M")


def filtered(numbers: dict, services: list[str] | None = None, databases: list[str] | None = None) -> dict:
    """A subscriber's share: only their services and databases (empty lists: all)."""
    if not services and not databases:
        return numbers
    out = dict(numbers)
    if services:
        out["services"] = [s for s in numbers["services"] if s["name"] in services]
    if databases:
        out["databases"] = [d for d in numbers["databases"] if d["name"] in databases]
    keep = {s["name"] for s in out["services"]} | {d["name"] for d in out["databases"]}
    if services:
        ch = numbers["changes"]
        out["changes"] = {
            **ch,
            "new_services": [n for n in ch["new_services"] if n in services],
            "vanished_services": [n for n in ch["vanished_services"] if n in services],
            "max_changes": [c for c in ch["max_changes"] if c["service"] in services],
            "preset_changes": [c for c in ch["preset_changes"] if c["service"] in services],
        }
    headline = dict(numbers["headline"])
    headline["actions"] = [a for a in headline["actions"] if a["subject"] in keep]
    out["headline"] = headline
    return out


def service_row(row: dict, tz: str, chart: str | None) -> dict:
    f, ch = row["figures"], row["changes"]
    enough = row["enough_data"]

    def cell(text: str) -> str:
        return text if enough else INSUFFICIENT

    findings = [
        {"kind": x["kind"].replace("_", " "), "severity": x["severity"], "summary": x["summary"],
         "state": "open" if x["open"] else f"closed {local(x['closed_at'], tz)}",
         "first_seen": local(x["opened_at"], tz)}
        for x in row["findings"]
    ]
    episodes = []
    for kind, label in ((IDLE_IN_TRANSACTION, "idle in transaction"), (LONG_QUERY, "long queries")):
        e = row["episodes"].get(kind)
        if e:
            episodes.append({"label": label, "count": num(e["count"]), "longest": seconds(e["longest_s"]),
                             "top": [{"fingerprint": t["fingerprint"], "text": t["text"], "count": num(t["count"])}
                                     for t in e["top"]]})
    sizing = row.get("sizing")
    texts = {
        "saturation_minutes": change_text(ch["saturation_minutes"], "count", minutes),
        "timeouts_per_1k": change_text(ch["timeouts_per_1k"], "count", lambda v: num(v, 2)),
        "acquire_p95_s": change_text(ch["acquire_p95_s"], "count", seconds),
    }
    return {
        "name": row["name"],
        "id": row["id"],
        "pools": row["pools"],
        "coverage": pct(f["coverage"]),
        "enough_data": enough,
        "max": num(f["max"]),
        "peak": cell(pct(f["peak_util"])),
        "p95": cell(pct(f["p95_util"])),
        "p99": cell(pct(f["p99_util"])),
        "peak_in_use": cell(num(f["peak_in_use"])),
        "saturation": cell(minutes(f["saturation_minutes"])),
        "timeouts_per_1k": cell(num(f["timeouts_per_1k"], 2)),
        "acquire_p95": cell(seconds(f["acquire_p95_s"])),
        "peak_change": change_text(ch["peak_util"], "util") if enough else "",
        "p95_change": change_text(ch["p95_util"], "util") if enough else "",
        "p99_change": change_text(ch["p99_util"], "util") if enough else "",
        "saturation_change": texts["saturation_minutes"] if enough else "",
        "timeouts_change": texts["timeouts_per_1k"] if enough else "",
        "acquire_change": texts["acquire_p95_s"] if enough else "",
        # For the arrows' colour: what the text says (a change too small to show is flat).
        "directions": {k: "flat" if texts.get(k) == "→" else v["direction"] for k, v in ch.items()},
        "findings": findings,
        "episodes": episodes,
        "sizing": sizing["text"] if sizing else "",
        "chart": chart,
        "figures": f,
    }


def database_row(row: dict, chart: str | None) -> dict:
    fc = row["forecast"]
    sizing = row.get("sizing")
    return {
        "name": row["name"],
        "peak": num(row["peak"]),
        "p95": num(row["p95"], 1) if row["p95"] is not None else DASH,
        "usable": num(row["usable"]),
        "warn_line": num(row["warn_line"]),
        "peak_pct": DASH if row["peak_pct"] is None else f"{row['peak_pct']:.0f} %",
        "over_warn": row["peak_pct"] is not None and row["peak_pct"] >= 80,
        "change": change_text(row["change"], "count"),
        "forecast": fc["label"],
        "forecast_status": fc["status"],
        "slope": DASH if fc["slope_per_day"] is None else f"{fc['slope_per_day']:+.2f}/day",
        # The sizing's usable also keeps back poolboard's monitor and an admin reserve: say of what.
        "committed": (f"{num(sizing['committed'])} of {num(sizing['usable'])}" if sizing and sizing.get("usable") is not None
                      else num(sizing["committed"]) if sizing else DASH),
        "sizing_verdict": sizing["verdict"] if sizing else "",
        "chart": chart,
    }


def sort_services(rows: list[dict], sort: str, direction: str) -> list[dict]:
    key, _ = SORTS.get(sort, SORTS[DEFAULT_SORT])
    present = [r for r in rows if key(r) is not None]
    absent = [r for r in rows if key(r) is None]
    present.sort(key=key, reverse=direction == "desc")
    return present + sorted(absent, key=lambda r: r["name"])


def saturation_definition(report) -> str:
    """What the report's "Saturated" column counted: its own figures' definition, not today's
    (a stored report is never recomputed; build.FIGURES_VERSION 2 narrowed it)."""
    if (report.inputs or {}).get("figures_version", 1) < 2:
        return "minutes with callers waiting or every connection in use"
    return "minutes with callers waiting for a connection (waiting > 0); — where the exporter has no waiting count"


def report_context(report, numbers: dict | None = None, charts_as: str | None = "svg", sort: str = DEFAULT_SORT,
                   direction: str = "desc", chart_limit: int | None = PAGE_CHARTS, row_limit: int | None = None) -> dict:
    """Everything templates/reports/*.html and *.txt show.

    charts_as: "svg" (page), "png" (PDF: data URIs), "cid" (email: <img src="cid:…">, the PNGs in `inline_images`)
    or None. chart_limit: services that get a chart (None: all). row_limit: rows per table.
    """
    numbers = numbers if numbers is not None else report.numbers
    tz = numbers["period"]["time_zone"]
    if sort not in SORTS:
        sort = DEFAULT_SORT
    if direction not in ("asc", "desc"):
        direction = "desc"
    raw_services = sort_services(numbers["services"], sort, direction)
    total_services = len(raw_services)
    if row_limit is not None:
        raw_services = raw_services[:row_limit]
    inline_images = []

    def chart_for(kind: str, i: int, layout: charts.Layout, title: str) -> str | None:
        if charts_as == "svg":
            return charts.svg(layout, title)
        if charts_as == "png":
            # The PDF: WeasyPrint lays a PNG out ~20× faster than it draws the same SVG.
            data = base64.b64encode(charts.png(layout)).decode()
            return (f'<img class="report-chart" src="data:image/png;base64,{data}" width="{charts.WIDTH}" '
                    f'height="{charts.HEIGHT}" alt="{escape(title)}">')
        if charts_as == "cid":
            cid = f"{kind}-{i}@poolboard"
            inline_images.append({"cid": cid, "filename": f"{kind}-{i}.png", "layout": layout, "title": title})
            return cid
        return None

    services = []
    for i, row in enumerate(raw_services):
        wants_chart = chart_limit is None or i < chart_limit
        chart = chart_for("service", i, charts.service_chart(row), f"{row['name']}: daily peak and p95 in use") \
            if wants_chart else None
        services.append(service_row(row, tz, chart))
    databases = [
        database_row(row, chart_for("database", i, charts.database_chart(row), f"{row['name']}: daily peak connections"))
        for i, row in enumerate(numbers["databases"])
    ]
    period = numbers["period"]
    start = datetime.fromisoformat(period["start"]).astimezone(ZoneInfo(tz))
    end = datetime.fromisoformat(period["end"]).astimezone(ZoneInfo(tz))
    page_path = reverse("dashboard:report", args=[report.week])
    return {
        "report": report,
        "numbers": numbers,
        "week": period["week"],
        "period_label": f"{start:%a %d %b %Y} – {end:%a %d %b %Y} 00:00 ({tz})",
        "real_hours": f"{period['real_hours']:.0f}",
        "headline": numbers["headline"],
        "actions": numbers["headline"]["actions"],
        "services": services,
        "total_services": total_services,
        "more_services": total_services - len(services),
        "databases": databases,
        "changes": numbers["changes"],
        "notes": numbers["notes"],
        "sort": sort,
        "dir": direction,
        "page_url": settings.PUBLIC_URL + page_path,
        "inline_images": inline_images,
        "chart_limit": chart_limit,
        "more_charts": chart_limit is not None and len(services) > chart_limit,
        "day_labels": charts.DAY_LABELS,
        "saturation_definition": saturation_definition(report),
    }
