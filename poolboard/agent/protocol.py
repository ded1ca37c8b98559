"""What the agent sends to poolboard: the path and the bounds both sides enforce.

Imported by the agent and by poolboard's receiving view (this module needs nothing but Python),
so the two cannot disagree: a batch within these bounds is never refused for its size.

    POST {endpoint}/api/v1/agent/reports
    Authorization: Bearer <poolboard API token>
    {"service": "billing", "instance": "host:pid", "sent_at": "2026-12-01T22:00:00.000+00:00",
     "reports": [{"fingerprint": "<sha1 hex>", "function": "billing.exports.leaky_invoice_export",
                  "stack": "  File ...", "count": 2, "oldest_hold_s": 74.2}]}

A batch is the whole truth for its (service, instance): a stack it no longer lists holds nothing
now. The agent sends a batch whenever connections are held past the threshold, and one empty batch
after the last of them is returned.
"""

from __future__ import annotations

REPORTS_PATH = "/api/v1/agent/reports"
# Stack groups per batch: the pool sizes poolboard watches stay far below this.
MAX_GROUPS = 50
# 8 frames of traceback text are under 2 000 characters; the rest is room for long paths.
MAX_STACK_CHARS = 8000
MAX_FUNCTION_CHARS = 300
MAX_NAME_CHARS = 200  # service and instance
FINGERPRINT_CHARS = 40  # sha1 hex
