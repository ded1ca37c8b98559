"""The report's small charts, drawn on the server so the PDF and the email carry them.

One layout (bar geometry computed once by `layout`), two renderings: SVG for the page and the
PDF (vector, a few hundred bytes, WeasyPrint draws it natively) and PNG for the email (mail
clients do not show SVG), drawn with Pillow, which WeasyPrint already brings. A plotting
library would add numpy and ~50 ms per chart; a report of 1 000 services draws 1 000 charts.

Each day has two bars: last week (grey) and this week (blue); the full bar is the day's peak,
its darker lower part the day's p95. A dashed line marks the limit (pool max, usable
connections) and, for databases, a dotted one the 80 % line.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from html import escape

WIDTH, HEIGHT = 280, 110
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 28, 6, 8, 16
DAY_LABELS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
COLOURS = {
    "prev_peak": "#cfd4da", "prev_p95": "#9aa3ad", "cur_peak": "#9cc3ec", "cur_p95": "#1f6fbf",
    "limit": "#c0392b", "warn": "#d68910", "axis": "#6b7480", "text": "#39414a",
}


@dataclass
class Rect:
    x: float
    y: float
    w: float
    h: float
    colour: str


@dataclass
class Layout:
    rects: list[Rect] = field(default_factory=list)
    lines: list[tuple[float, str, str]] = field(default_factory=list)  # (y, colour, dash)
    labels: list[tuple[float, float, str, str]] = field(default_factory=list)  # (x, y, text, anchor)
    empty: bool = False


def _top(values: list[float | None], limits: list[float | None]) -> float:
    present = [v for v in values + limits if v is not None]
    top = max(present, default=0) * 1.1
    return top if top > 0 else 1.0


def layout(cur_peak, cur_p95, prev_peak, prev_p95, limit=None, warn=None) -> Layout:
    """Bars for 7 days of this week against last week, scaled to the largest value or limit."""
    out = Layout()
    values = [*cur_peak, *cur_p95, *prev_peak, *prev_p95]
    if all(v is None for v in values):
        out.empty = True
        out.labels.append((WIDTH / 2, HEIGHT / 2, "no data this week", "middle"))
        return out
    top = _top(values, [limit, warn])
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    base = PAD_TOP + plot_h

    def y(v: float) -> float:
        return base - plot_h * v / top

    slot = plot_w / 7
    bar = slot * 0.36
    for i in range(7):
        x0 = PAD_LEFT + i * slot + slot * 0.12
        for j, (peak, p95, kind) in enumerate(((prev_peak[i], prev_p95[i], "prev"), (cur_peak[i], cur_p95[i], "cur"))):
            x = x0 + j * bar
            if peak is not None:
                out.rects.append(Rect(x, y(peak), bar - 1, base - y(peak), COLOURS[f"{kind}_peak"]))
            if p95 is not None:
                p = min(p95, peak) if peak is not None else p95
                out.rects.append(Rect(x, y(p), bar - 1, base - y(p), COLOURS[f"{kind}_p95"]))
        out.labels.append((PAD_LEFT + i * slot + slot / 2, HEIGHT - 4, DAY_LABELS[i], "middle"))
    if limit is not None:
        out.lines.append((y(limit), COLOURS["limit"], "4 3"))
    if warn is not None:
        out.lines.append((y(warn), COLOURS["warn"], "2 2"))
    out.labels.append((PAD_LEFT - 4, PAD_TOP + 8, _fmt(top / 1.1), "end"))
    out.labels.append((PAD_LEFT - 4, base, "0", "end"))
    return out


def _fmt(v: float) -> str:
    return f"{v:.0f}" if v >= 10 or float(v).is_integer() else f"{v:.1f}"


def svg(chart: Layout, title: str = "") -> str:
    """The chart as an inline <svg> (presentation attributes only: the CSP forbids style="")."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="report-chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for r in chart.rects:
        parts.append(f'<rect x="{r.x:.1f}" y="{r.y:.1f}" width="{r.w:.1f}" height="{max(r.h, 0):.1f}" fill="{r.colour}"/>')
    if not chart.empty:
        base = HEIGHT - PAD_BOTTOM
        parts.append(f'<line x1="{PAD_LEFT}" y1="{base}" x2="{WIDTH - PAD_RIGHT}" y2="{base}" stroke="{COLOURS["axis"]}"/>')
    for y, colour, dash in chart.lines:
        parts.append(f'<line x1="{PAD_LEFT}" y1="{y:.1f}" x2="{WIDTH - PAD_RIGHT}" y2="{y:.1f}" stroke="{colour}" '
                     f'stroke-dasharray="{dash}"/>')
    for x, y, text, anchor in chart.labels:
        parts.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="9" font-family="sans-serif" fill="{COLOURS["text"]}" '
                     f'text-anchor="{anchor}">{escape(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def png(chart: Layout, scale: int = 2) -> bytes:
    """The same chart as PNG (twice the size: sharp on high-density screens)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (WIDTH * scale, HEIGHT * scale), "white")
    draw = ImageDraw.Draw(img)
    for r in chart.rects:
        if r.h > 0:
            draw.rectangle([r.x * scale, r.y * scale, (r.x + r.w) * scale, (r.y + r.h) * scale], fill=r.colour)
    if not chart.empty:
        base = (HEIGHT - PAD_BOTTOM) * scale
        draw.line([PAD_LEFT * scale, base, (WIDTH - PAD_RIGHT) * scale, base], fill=COLOURS["axis"], width=1)
    for y, colour, dash in chart.lines:
        on, off = (float(n) * scale for n in dash.split())
        x = PAD_LEFT * scale
        while x < (WIDTH - PAD_RIGHT) * scale:
            draw.line([x, y * scale, min(x + on, (WIDTH - PAD_RIGHT) * scale), y * scale], fill=colour, width=scale)
            x += on + off
    try:
        font = ImageFont.load_default(size=9 * scale)
    except TypeError:  # Pillow < 10.1 has no sized default font
        font = ImageFont.load_default()
    anchors = {"middle": "ms", "end": "rs", "start": "ls"}
    for x, y, text, anchor in chart.labels:
        draw.text((x * scale, y * scale), text, fill=COLOURS["text"], font=font, anchor=anchors[anchor])
    buf = io.BytesIO()
    img.save(buf, format="PNG")  # optimize=True halves the size and costs 10× the time
    return buf.getvalue()


def service_chart(row: dict) -> Layout:
    f, p = row["figures"], row["previous"]
    return layout(f["daily_peak"], f["daily_p95"], p["daily_peak"], p["daily_p95"], limit=f["max"])


def database_chart(row: dict) -> Layout:
    return layout(row["daily_peak"], [None] * 7, row["previous_daily_peak"], [None] * 7,
                  limit=row["usable"], warn=row["warn_line"])
