"""Prometheus adapter: prometheus-api-client with explicit timeouts and clear errors.

No Django here. Every call is bounded by an HTTP timeout; retries are limited to one
quick retry on gateway errors (the client's default of 3 retries with backoff turns
one slow query into ~4x its time).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from poolboard.lib.pools import parse_sample_value
from poolboard.lib.redact import redact_url


class PrometheusError(Exception):
    """A Prometheus call that gave no usable answer. `kind` says which way it failed."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # unreachable | timeout | rejected | bad_answer | too_many_series
        self.message = message


@dataclass(frozen=True)
class InstantSeries:
    labels: dict[str, str]
    ts: float
    value: float | None  # None for NaN/±Inf/unparsable


@dataclass(frozen=True)
class RangeSeries:
    labels: dict[str, str]
    points: list[tuple[float, float | None]]


# Prometheus' own error message (errorType: error) is kept, cut to this length; anything
# else a server or a proxy in front of it sends back is never copied into a message.
REASON_CHARS = 300


def _api_error(body: object) -> str | None:
    """'errorType: error' from a Prometheus API error answer, else None."""
    if isinstance(body, dict) and body.get("error"):
        return f"{body.get('errorType', 'error')}: {body['error']}"[:REASON_CHARS]
    return None


def _rejection_message(exc: PrometheusApiClientException) -> str:
    """Turn the client's 'HTTP Status Code 422 (b'{...}')' into Prometheus's own words."""
    text = str(exc)
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        try:
            error = _api_error(json.loads(text[start : end + 1].encode().decode("unicode_escape")))
            if error:
                return error
        except (ValueError, UnicodeDecodeError):
            pass
    status = re.search(r"HTTP Status Code (\d+)", text)
    return f"HTTP {status.group(1)}" if status else "no reason given"


class PrometheusClient:
    """One Prometheus, one requests.Session (prometheus-api-client underneath).

    Failure handling, each with its own message (`PrometheusError.kind`):
    - refused / DNS: `unreachable` after one quick connect retry;
    - no answer within `timeout` seconds: `timeout`; a read timeout is never retried
      (the client's default would turn one hang into 4x the wait);
    - 502/504 from a proxy: retried once, then `unreachable` (urllib3's RetryError,
      which is *not* a PrometheusApiClientException);
    - 400/422/503 from Prometheus: `rejected`, with Prometheus' own message;
    - HTTP 200 that is not JSON, or JSON without `data.result`, or `status: error`:
      `bad_answer`;
    - more than `max_series` series: `too_many_series`. Prometheus < 3.2 ignores the
      `limit` parameter, so the bound is checked here, before anything is stored.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        max_series: int = 20000,
    ) -> None:
        self.url = url.rstrip("/")
        # What messages say: a URL with user:password@ or ?token= never reaches a stored error.
        self.display_url = redact_url(self.url)
        self.timeout = timeout
        self.max_series = max_series
        self._last_response: requests.Response | None = None
        self._connect = PrometheusConnect(
            url=self.url,
            headers=dict(headers or {}),
            retry=Retry(
                total=1,
                connect=1,
                read=False,
                status=1,
                backoff_factor=0.2,
                status_forcelist=[502, 504],
                allowed_methods=["GET"],
            ),
            timeout=timeout,
        )
        # prometheus-api-client keeps only data.result; remember the response so a
        # malformed answer can be described (status: error with HTTP 200, HTML, ...).
        self._connect._session.hooks["response"].append(self._remember)

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last_response = response

    def close(self) -> None:
        self._connect.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _describe_bad_answer(self) -> str:
        response = self._last_response
        if response is None:
            return f"Prometheus at {self.display_url} sent an answer that is not a query result"
        try:
            body = response.json()
        except ValueError:
            kind = response.headers.get("Content-Type", "no content type")
            return f"Prometheus at {self.display_url} sent an answer that is not JSON (HTTP {response.status_code}, {kind})"
        if isinstance(body, dict) and body.get("status") == "error":
            return f"Prometheus at {self.display_url} answered with an error: {_api_error(body) or 'no reason given'}"
        return f"Prometheus at {self.display_url} sent JSON that is not a query result (no data.result)"

    def _rejection(self, exc: PrometheusApiClientException) -> str:
        """Prometheus' own errorType and message, from the response body when we have it."""
        response = self._last_response
        if response is not None:
            try:
                body = response.json()
            except ValueError:
                body = None
            return _api_error(body) or f"HTTP {response.status_code} {response.reason or ''}".rstrip()
        return _rejection_message(exc)

    def _call(self, fn, *args: Any, **kwargs: Any) -> Any:
        self._last_response = None
        try:
            result = fn(*args, **kwargs)
        except PrometheusApiClientException as exc:
            raise PrometheusError("rejected", f"Prometheus rejected the query: {self._rejection(exc)}") from None
        except requests.exceptions.JSONDecodeError:
            # A RequestException too, so it must be caught before the generic one.
            raise PrometheusError("bad_answer", self._describe_bad_answer()) from None
        except requests.exceptions.Timeout:
            raise PrometheusError("timeout", f"Prometheus at {self.display_url} did not answer within {self.timeout:g}s") from None
        except requests.exceptions.RetryError:
            raise PrometheusError(
                "unreachable", f"Prometheus at {self.display_url} kept answering with a gateway error (502/504), tried twice"
            ) from None
        except requests.exceptions.ConnectionError:
            raise PrometheusError("unreachable", f"cannot connect to Prometheus at {self.display_url}") from None
        except requests.exceptions.RequestException as exc:
            raise PrometheusError("unreachable", f"request to Prometheus at {self.display_url} failed: {exc.__class__.__name__}") from None
        except (ValueError, KeyError, TypeError):
            # requests' JSONDecodeError is a ValueError; a 200 without data.result is a KeyError.
            raise PrometheusError("bad_answer", self._describe_bad_answer()) from None
        if not isinstance(result, list):
            raise PrometheusError("bad_answer", f"Prometheus at {self.display_url} sent a {type(result).__name__}, not a list of series")
        if len(result) > self.max_series:
            raise PrometheusError(
                "too_many_series",
                f"answer has more than {self.max_series} series (got {len(result)}); narrow the preset's selector",
            )
        return result

    def instant(self, query: str, *, at: float | None = None) -> list[InstantSeries]:
        """Evaluate an instant query. Each series' value is None for NaN/Inf."""
        # `timeout` makes Prometheus itself give up, not just us.
        params: dict[str, Any] = {"limit": self.max_series + 1, "timeout": f"{self.timeout:g}s"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        raw = self._call(self._connect.custom_query, query=query, params=params)
        series: list[InstantSeries] = []
        for item in raw:
            try:
                labels = {str(k): str(v) for k, v in item["metric"].items()}
                ts, value = item["value"]
                series.append(InstantSeries(labels=labels, ts=float(ts), value=parse_sample_value(value)))
            except (KeyError, TypeError, ValueError):
                raise PrometheusError("bad_answer", f"Prometheus at {self.display_url} sent a series without metric/value") from None
        return series

    def range(self, query: str, *, start: float, end: float, step: float) -> list[RangeSeries]:
        """Evaluate a range query. Prometheus refuses more than 11 000 points per series."""
        raw = self._call(
            self._connect.custom_query_range,
            query=query,
            start_time=datetime.fromtimestamp(start, tz=timezone.utc),
            end_time=datetime.fromtimestamp(end, tz=timezone.utc),
            step=f"{step:g}s",
            params={"limit": self.max_series + 1, "timeout": f"{self.timeout:g}s"},
        )
        out: list[RangeSeries] = []
        for item in raw:
            try:
                labels = {str(k): str(v) for k, v in item["metric"].items()}
                points = [(float(ts), parse_sample_value(v)) for ts, v in item["values"]]
            except (KeyError, TypeError, ValueError):
                raise PrometheusError("bad_answer", "Prometheus sent a range series without values") from None
            out.append(RangeSeries(labels=labels, points=points))
        return out
