"""The report email: HTML + plain text, charts as inline PNG images, the PDF attached.

Built as an outbox payload (poolboard.notify, kind="report") so sending is at-least-once like
alerts; the email channel turns it into the message (poolboard.notify.channels.email.report_message:
inline images in a multipart/related part, the PDF attached, the List-Unsubscribe headers).
"""

from __future__ import annotations

import base64
import logging

from django.conf import settings
from django.template.loader import render_to_string
from django.urls import reverse

from . import charts, pdf
from .present import EMAIL_CHARTS, EMAIL_ROWS, filtered, report_context

CHANNEL_NAME = "reports"
log = logging.getLogger(__name__)


def unsubscribe_url(subscription) -> str:
    return settings.PUBLIC_URL + reverse("dashboard:report-unsubscribe", args=[subscription.unsubscribe_token()])


def render_payload(report, subscription=None, to: list[str] | None = None, attach_pdf: bool = True,
                   pdf_cache: dict | None = None) -> dict:
    """The outbox payload of `report` for one subscription (or an ad-hoc address list).

    `pdf_cache`: PDFs already rendered in this run by (services, databases) filter, so the
    subscribers who get the same share (most: all of it) cost one render, not one each.
    """
    numbers = report.numbers
    if subscription is not None:
        numbers = filtered(numbers, subscription.services, subscription.databases)
        to = [subscription.recipient]
    context = report_context(report, numbers, charts_as="cid", chart_limit=EMAIL_CHARTS, row_limit=EMAIL_ROWS)
    context["unsubscribe_url"] = unsubscribe_url(subscription) if subscription is not None else ""
    subject = " ".join(render_to_string("reports/email-subject.txt", context).split())
    text = render_to_string("reports/email.txt", context)
    html = render_to_string("reports/email.html", context)
    payload = {
        "subject": subject, "text": text, "html": html, "to": list(to or []),
        "report": {"week": report.week, "version": report.version},
        "inline_images": [
            {"cid": img["cid"], "filename": img["filename"], "mimetype": "image/png",
             "content_b64": base64.b64encode(charts.png(img["layout"])).decode()}
            for img in context["inline_images"]
        ],
        "attachments": [],
        "headers": {},
    }
    if attach_pdf:
        share = (tuple(subscription.services), tuple(subscription.databases)) if subscription is not None else ((), ())
        cache = pdf_cache if pdf_cache is not None else {}
        if share not in cache:
            try:
                cache[share] = base64.b64encode(pdf.render_pdf(report, numbers)).decode()
            except pdf.PdfUnavailable as exc:
                # The email still goes, with its charts and tables, just without the attachment.
                log.warning("report %s sent without its PDF: %s", report, exc)
                cache[share] = None
        if cache[share] is not None:
            payload["attachments"].append({
                "filename": pdf.filename(report), "mimetype": "application/pdf", "content_b64": cache[share],
            })
    if subscription is not None:
        payload["headers"] = {"List-Unsubscribe": f"<{context['unsubscribe_url']}>",
                              "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    return payload


def report_channel():
    """The email channel report mails go out on (created on first use; recipients come per payload)."""
    from poolboard.notify.models import Channel

    channel, _ = Channel.objects.get_or_create(name=CHANNEL_NAME, defaults={"kind": Channel.EMAIL, "settings": {"to": []}})
    return channel
