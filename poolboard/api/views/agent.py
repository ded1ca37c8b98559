"""POST /api/v1/agent/reports: poolboard.agent's held-connection reports (poolboard.agent.protocol).

Strict: a batch is stored whole or refused whole with a 400 that says what is wrong, so a broken
agent never leaves half a batch behind and never causes a 500.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime

from django.core.exceptions import RequestDataTooBig
from django.utils import timezone

from poolboard.agent.protocol import FINGERPRINT_CHARS, MAX_FUNCTION_CHARS, MAX_GROUPS, MAX_NAME_CHARS, MAX_STACK_CHARS
from poolboard.api.auth import json_response, token_post_view
from poolboard.diagnosis.models import AgentReport

BATCH_FIELDS = ("service", "instance", "sent_at", "reports")
REPORT_FIELDS = ("fingerprint", "function", "stack", "count", "oldest_hold_s")
FINGERPRINT_RE = re.compile(rf"^[0-9a-f]{{{FINGERPRINT_CHARS}}}$")
# A hold longer than this is a clock or unit error on the agent's side (ten years).
MAX_HOLD_S = 10 * 365 * 86400.0


class BadBatch(ValueError):
    """The reason a batch is refused, worded for the agent's author."""


@token_post_view
def reports(request):
    try:
        body = request.body
    except RequestDataTooBig:
        return json_response({"error": "request body too large"}, status=400)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return json_response({"error": f"request body is not valid JSON: {exc}"}, status=400)
    except RecursionError:
        return json_response({"error": "request body is not valid JSON: nested too deeply"}, status=400)
    try:
        batch = validated_batch(data)
    except BadBatch as exc:
        return json_response({"error": str(exc)}, status=400)
    stored = AgentReport.objects.ingest(batch, received_at=timezone.now())
    return json_response({"stored": stored})


def validated_batch(data) -> dict:
    """The batch with its types checked and `sent_at` parsed, or BadBatch naming the first problem."""
    if not isinstance(data, dict):
        raise BadBatch("the body must be a JSON object with service, instance, sent_at and reports")
    missing = [name for name in BATCH_FIELDS if name not in data]
    if missing:
        raise BadBatch(f"missing field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    batch = {
        "service": _text(data, "service", MAX_NAME_CHARS, required=True),
        "instance": _text(data, "instance", MAX_NAME_CHARS, required=True),
        "sent_at": _timestamp(data["sent_at"]),
    }
    reports = data["reports"]
    if not isinstance(reports, list):
        raise BadBatch("reports must be a list")
    if len(reports) > MAX_GROUPS:
        raise BadBatch(f"too many reports: {len(reports)} (at most {MAX_GROUPS} per batch)")
    batch["reports"] = [_report(report, f"reports[{n}]") for n, report in enumerate(reports)]
    seen: dict[str, int] = {}
    for n, report in enumerate(batch["reports"]):
        if report["fingerprint"] in seen:
            raise BadBatch(f"reports[{n}].fingerprint repeats reports[{seen[report['fingerprint']]}]: send one report per stack")
        seen[report["fingerprint"]] = n
    return batch


def _report(report, where: str) -> dict:
    if not isinstance(report, dict):
        raise BadBatch(f"{where} must be an object")
    missing = [name for name in REPORT_FIELDS if name not in report]
    if missing:
        raise BadBatch(f"{where}: missing field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    fingerprint = report["fingerprint"]
    if not isinstance(fingerprint, str) or not FINGERPRINT_RE.match(fingerprint):
        raise BadBatch(f"{where}.fingerprint must be {FINGERPRINT_CHARS} lowercase hex digits (a sha1)")
    count = report["count"]
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 2**31 - 1:
        raise BadBatch(f"{where}.count must be a whole number of connections, at least 1")
    hold = report["oldest_hold_s"]
    if isinstance(hold, bool) or not isinstance(hold, int | float) or not math.isfinite(hold) or not 0 <= hold <= MAX_HOLD_S:
        raise BadBatch(f"{where}.oldest_hold_s must be a number of seconds, 0 or more")
    return {
        "fingerprint": fingerprint,
        "function": _text(report, "function", MAX_FUNCTION_CHARS, where=where),
        "stack": _text(report, "stack", MAX_STACK_CHARS, where=where),
        "count": count,
        "oldest_hold_s": float(hold),
    }


def _text(data: dict, name: str, limit: int, *, where: str = "", required: bool = False) -> str:
    label = f"{where}.{name}" if where else name
    value = data[name]
    if not isinstance(value, str):
        raise BadBatch(f"{label} must be a string")
    if required and not value.strip():
        raise BadBatch(f"{label} must not be empty")
    if len(value) > limit:
        raise BadBatch(f"{label} is too long: {len(value)} characters (at most {limit})")
    if "\x00" in value:
        raise BadBatch(f"{label} contains a NUL character")
    return value


def _timestamp(value) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            # In UTC, as stored; a year at either end of the calendar would overflow there.
            if parsed.tzinfo is not None and 2000 <= parsed.astimezone(UTC).year <= 9000:
                return parsed
        except (ValueError, OverflowError):
            pass
    raise BadBatch("sent_at must be an ISO 8601 time with its UTC offset, e.g. 2026-12-01T22:00:00+00:00")
