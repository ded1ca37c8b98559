"""Sends the overdue connections to poolboard from a daemon thread, never from the application's.

A down, slow or rejecting poolboard costs the application nothing: every attempt is bounded by a
short socket timeout, every exception is swallowed and counted, and failures back off (doubling
the pause up to `MAX_BACKOFF_S`) so a dead endpoint is not hammered.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone

from poolboard.agent.protocol import MAX_FUNCTION_CHARS, MAX_GROUPS, MAX_STACK_CHARS
from poolboard.agent.stacks import fingerprint, format_stack, function_name
from poolboard.agent.tracker import Held

log = logging.getLogger("poolboard.agent")

MAX_BACKOFF_S = 300.0
# At most one log line per this many seconds about failing reports: the app's log is not ours.
LOG_EVERY_S = 300.0
# The response body is not needed; reading a bounded amount keeps a misbehaving server harmless.
MAX_RESPONSE_BYTES = 64 * 1024


def group_by_stack(held: list[Held], max_groups: int = MAX_GROUPS) -> list[dict]:
    """One report per stack fingerprint: how many connections it holds and the oldest hold.

    The most connections first, then the oldest, so the batch bound drops the least important.
    """
    groups: dict[str, dict] = {}
    for connection in held:
        key = fingerprint(connection.stack)
        group = groups.get(key)
        if group is None:
            group = groups[key] = {
                "fingerprint": key,
                "function": function_name(connection.stack)[:MAX_FUNCTION_CHARS],
                # Keep the innermost end if ever too long: that is where the checkout happened.
                "stack": format_stack(connection.stack)[-MAX_STACK_CHARS:],
                "count": 0,
                "oldest_hold_s": 0.0,
            }
        group["count"] += 1
        group["oldest_hold_s"] = max(group["oldest_hold_s"], round(connection.hold_s, 3))
    ordered = sorted(groups.values(), key=lambda g: (-g["count"], -g["oldest_hold_s"]))
    return ordered[:max_groups]


class Reporter:
    """Every `interval_s`, asks `build_batch` for a batch and POSTs it when it says something:
    connections held now, or (once) that the ones reported last time are back."""

    def __init__(
        self,
        url: str,
        token: str,
        build_batch: Callable[[], dict],
        *,
        interval_s: float,
        timeout_s: float,
        on_failure: Callable[[], None] = lambda: None,
    ):
        self.url = url
        self.token = token
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._build_batch = build_batch
        self._on_failure = on_failure
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_logged = float("-inf")
        # The last delivered batch listed held connections, so poolboard must hear when they are gone.
        self._owes_all_clear = False
        # Read by tests and by anyone debugging the agent in a shell.
        self.sent = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.last_error = ""
        self.last_attempt_s = 0.0

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="poolboard-agent-reporter", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def forget_thread(self) -> None:
        """After a fork the parent's thread does not exist in the child."""
        self._thread = None

    def send_once(self) -> bool:
        """One attempt; True when the batch was delivered or there was nothing to send."""
        started = time.monotonic()
        try:
            batch = self._build_batch()
            if not batch["reports"] and not self._owes_all_clear:
                return True
            self._post(batch)
            self._owes_all_clear = bool(batch["reports"])
        except Exception as exc:  # anything at all: the application must never see it
            self.failures += 1
            self.consecutive_failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            try:
                self._on_failure()
            except Exception:
                pass
            self._log_failure()
            return False
        finally:
            self.last_attempt_s = time.monotonic() - started
        self.sent += 1
        self.consecutive_failures = 0
        return True

    def next_pause(self) -> float:
        """The interval, doubled per consecutive failure up to MAX_BACKOFF_S, with 10 % jitter."""
        pause = min(self.interval_s * 2 ** min(self.consecutive_failures, 16), max(MAX_BACKOFF_S, self.interval_s))
        return pause * random.uniform(0.9, 1.1)

    def _run(self) -> None:
        while not self._stop.wait(self.next_pause()):
            self.send_once()

    def _post(self, batch: dict) -> None:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(batch).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.token}",
                "User-Agent": "poolboard-agent/1",
            },
        )
        # The timeout bounds the connect and every read; HTTPError (4xx/5xx) is an exception too.
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            response.read(MAX_RESPONSE_BYTES)

    def _log_failure(self) -> None:
        now = time.monotonic()
        if now - self._last_logged >= LOG_EVERY_S:
            self._last_logged = now
            log.warning(
                "poolboard agent: report to %s failed (%d so far, retrying with backoff): %s",
                self.url, self.failures, self.last_error,
            )


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
