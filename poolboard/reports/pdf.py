"""The whole report as a PDF, laid out by WeasyPrint from templates/reports/pdf.html.

WeasyPrint (HTML + CSS to PDF, no browser) lays out the page's sections; the charts go in as
PNG (the email's drawing), which it places far faster than it draws SVG. Its stylesheet is
static/css/report-pdf.css (a file: the templates carry no inline style). It needs Debian's
pango (`make system-pdf`), so it is imported only when a PDF is asked for.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.template.loader import render_to_string

from .present import PDF_CHARTS, report_context

# Its per-step progress is logged at INFO: noise in the worker log for every report.
logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)

CSS_PATH = settings.BASE_DIR / "static" / "css" / "report-pdf.css"


class PdfUnavailable(Exception):
    """WeasyPrint cannot run here (Debian's pango is missing); the message says what to install."""


def render_pdf(report, numbers: dict | None = None) -> bytes:
    """`numbers`: a subscriber's share of the report (default: all of it)."""
    try:
        from weasyprint import CSS, HTML
    except (ImportError, OSError) as exc:  # OSError: cffi could not load libpango
        raise PdfUnavailable(
            "PDFs need WeasyPrint's system libraries: apt-get install libpango-1.0-0 libpangoft2-1.0-0 "
            f"(make system-pdf does it). {type(exc).__name__}: {exc}"
        ) from None

    context = report_context(report, numbers, charts_as="png", chart_limit=PDF_CHARTS)
    html = render_to_string("reports/pdf.html", context)
    return HTML(string=html, base_url=str(settings.BASE_DIR)).write_pdf(stylesheets=[CSS(filename=str(CSS_PATH))])


def filename(report) -> str:
    return f"poolboard-report-{report.week}-v{report.version}.pdf"
