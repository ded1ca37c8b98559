"""Email through Django's mail (HTML + text): an alert batch is one message, a report is one message
(with its own headers, inline images and attachments: see report_message).

The idempotency key is in an `Idempotency-Key` header and the footer. SMTP 4xx answers and
connection errors are retried; 5xx answers (a refused recipient, say) are not.
"""

from __future__ import annotations

import base64
import smtplib
from email.mime.image import MIMEImage
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from poolboard.notify.channels.webhook import am_alert, test_alert
from poolboard.notify.models import Notification
from poolboard.sources.http import Outcome

if TYPE_CHECKING:
    from poolboard.notify.dispatch import Claim


def alert_message(found: Claim) -> tuple[str, str, str]:
    if found.kind == Notification.TEST:
        alerts = [am_alert(test_alert(found), found.batch_key)]
    else:
        alerts = [am_alert(row.payload, row.idempotency_key) for row in found.rows]
    firing = sum(1 for a in alerts if a["status"] == "firing")
    titles = sorted({a["annotations"].get("summary") or a["labels"].get("alertname", "") for a in alerts})
    context = {
        "alerts": alerts, "firing": firing, "status": "firing" if firing else "resolved", "channel": found.channel.name,
        "key": found.batch_key, "group_title": titles[0] if len(titles) == 1 else f"{len(alerts)} alerts: {', '.join(titles[:3])}",
    }
    subject = " ".join(render_to_string("emails/alert-subject.txt", context).split())
    return subject, render_to_string("emails/alert-body.txt", context), render_to_string("emails/alert-body.html", context)


def report_message(payload: dict, to: list[str], key: str) -> EmailMultiAlternatives:
    """A report payload as one message: text + HTML, extra headers, inline images (by cid) and attachments.

    payload: {"subject", "text", "html", "headers": {name: value}, "inline_images": [{"cid", "filename",
    "mimetype", "content_b64"}], "attachments": [{"filename", "mimetype", "content_b64"}]}; all but subject optional.
    """
    headers = {**(payload.get("headers") or {}), "Idempotency-Key": key}
    mail = EmailMultiAlternatives(payload.get("subject") or "poolboard report", payload.get("text", ""),
                                  settings.DEFAULT_FROM_EMAIL, to, headers=headers)
    if payload.get("html"):
        mail.attach_alternative(payload["html"], "text/html")
    if payload.get("inline_images"):
        mail.mixed_subtype = "related"  # the HTML and the images it shows by cid: travel together
        for image in payload["inline_images"]:
            subtype = str(image.get("mimetype") or "image/png").partition("/")[2] or "png"
            part = MIMEImage(base64.b64decode(image["content_b64"]), _subtype=subtype)
            part.add_header("Content-ID", f"<{image['cid']}>")
            part.add_header("Content-Disposition", "inline", filename=image.get("filename") or image["cid"])
            mail.attach(part)
    for attachment in payload.get("attachments") or []:
        mail.attach(attachment["filename"], base64.b64decode(attachment["content_b64"]), attachment.get("mimetype"))
    return mail


def send(found: Claim) -> Outcome:
    to = list(found.channel.settings.get("to") or [])
    if found.kind == Notification.REPORT:
        payload = found.rows[0].payload
        to = list(payload.get("to") or to)
        mail = report_message(payload, to, found.batch_key)
    else:
        subject, text, html = alert_message(found)
        mail = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, to, headers={"Idempotency-Key": found.batch_key})
        mail.attach_alternative(html, "text/html")
    if not to:
        return Outcome(delivered=False, retryable=False, error="no recipients: set {\"to\": [...]} on the channel")
    try:
        mail.send(fail_silently=False)
    except smtplib.SMTPResponseException as exc:
        return Outcome(delivered=False, retryable=exc.smtp_code < 500, status=exc.smtp_code,
                       error=f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:300])
    except smtplib.SMTPRecipientsRefused as exc:
        return Outcome(delivered=False, retryable=False, error=f"recipients refused: {', '.join(exc.recipients)}")
    except (OSError, smtplib.SMTPException) as exc:
        return Outcome(delivered=False, retryable=True, error=f"mail not sent: {type(exc).__name__}: {exc}"[:300])
    return Outcome(delivered=True, retryable=False)
