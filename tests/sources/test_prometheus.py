"""The Prometheus adapter on bad input: every failure has its own exact message."""

from __future__ import annotations

import time

import pytest

from poolboard.sources.prometheus import PrometheusClient, PrometheusError
from tests.prom import free_port
from tests.sources.fakes import FakePrometheus, HangingServer, json_answer, vector


@pytest.fixture
def fake():
    servers: list[FakePrometheus] = []

    def start(answer) -> FakePrometheus:
        server = FakePrometheus(answer)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def failure(url: str, query: str = "up", **kwargs) -> PrometheusError:
    with PrometheusClient(url, **kwargs) as client:
        with pytest.raises(PrometheusError) as caught:
            client.instant(query)
    return caught.value


def test_a_refused_connection_says_so() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    error = failure(url, timeout=2)
    assert (error.kind, error.message) == ("unreachable", f"cannot connect to Prometheus at {url}")


def test_a_hanging_server_is_abandoned_after_the_timeout_without_retrying() -> None:
    server = HangingServer()
    try:
        started = time.monotonic()
        error = failure(server.url, timeout=1)
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert (error.kind, error.message) == ("timeout", f"Prometheus at {server.url} did not answer within 1s")
    # One read timeout, not the client's default 4 attempts with backoff.
    assert 0.9 <= elapsed < 1.8, elapsed


def test_status_error_with_http_200_shows_prometheus_words(fake) -> None:
    too_many = "query processing would load too many samples into memory in query execution"
    server = fake(lambda q: json_answer({"status": "error", "errorType": "execution", "error": too_many}))
    error = failure(server.url)
    assert error.kind == "bad_answer"
    assert error.message == (
        f"Prometheus at {server.url} answered with an error: execution: "
        "query processing would load too many samples into memory in query execution"
    )


def test_garbage_is_not_taken_for_an_answer(fake) -> None:
    server = fake(lambda q: (200, "text/html; charset=utf-8", b"<html><body>Sign in to continue</body></html>"))
    error = failure(server.url)
    assert (error.kind, error.message) == (
        "bad_answer",
        f"Prometheus at {server.url} sent an answer that is not JSON (HTTP 200, text/html; charset=utf-8)",
    )


def test_truncated_json_is_not_taken_for_an_answer(fake) -> None:
    server = fake(lambda q: (200, "application/json", b'{"status":"success","data":{"resultType":"vector","result":[{"metric"'))
    assert failure(server.url).message == f"Prometheus at {server.url} sent an answer that is not JSON (HTTP 200, application/json)"


def test_json_without_a_result_is_not_taken_for_an_answer(fake) -> None:
    server = fake(lambda q: json_answer({"status": "success"}))
    assert failure(server.url).message == f"Prometheus at {server.url} sent JSON that is not a query result (no data.result)"


def test_a_series_without_a_value_is_refused(fake) -> None:
    server = fake(lambda q: json_answer({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}}))
    assert failure(server.url).message == f"Prometheus at {server.url} sent a series without metric/value"


def test_fifty_thousand_series_are_refused_whatever_limit_the_server_ignored(fake) -> None:
    server = fake(lambda q: json_answer(vector(50_000)))
    error = failure(server.url, max_series=20_000)
    assert (error.kind, error.message) == (
        "too_many_series",
        "answer has more than 20000 series (got 50000); narrow the preset's selector",
    )
    assert len(server.requests) == 1


def test_a_422_is_rejected_at_once_with_prometheus_message(fake) -> None:
    body = {"status": "error", "errorType": "execution", "error": "vector cannot contain metrics with the same labelset"}
    server = fake(lambda q: json_answer(body, status=422))
    error = failure(server.url)
    assert (error.kind, error.message) == (
        "rejected",
        "Prometheus rejected the query: execution: vector cannot contain metrics with the same labelset",
    )
    assert len(server.requests) == 1


def test_a_503_query_timeout_is_not_retried(fake) -> None:
    server = fake(lambda q: json_answer({"status": "error", "errorType": "timeout", "error": "query timed out in expression evaluation"}, status=503))
    error = failure(server.url)
    assert error.message == "Prometheus rejected the query: timeout: query timed out in expression evaluation"
    assert len(server.requests) == 1


def test_a_gateway_error_is_retried_once_then_reported(fake) -> None:
    server = fake(lambda q: (502, "text/html", b"<html>Bad Gateway</html>"))
    error = failure(server.url)
    # urllib3 raises RetryError here, not PrometheusApiClientException.
    assert (error.kind, error.message) == (
        "unreachable",
        f"Prometheus at {server.url} kept answering with a gateway error (502/504), tried twice",
    )
    assert len(server.requests) == 2


def test_a_proxy_error_page_is_not_quoted_only_its_status(fake) -> None:
    # A proxy's page may echo tokens or session ids; stored errors keep the status line only.
    server = fake(lambda q: (401, "text/plain", b"Unauthorized: bearer token abc123 is not valid"))
    assert failure(server.url).message == "Prometheus rejected the query: HTTP 401 Unauthorized"


def test_nan_and_infinities_are_no_sample(fake) -> None:
    answer = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"job": "a"}, "value": [1.0, "NaN"]},
        {"metric": {"job": "b"}, "value": [1.0, "+Inf"]},
        {"metric": {"job": "c"}, "value": [1.0, "-Inf"]},
        {"metric": {"job": "d"}, "value": [1.0, "2.5"]},
    ]}}
    server = fake(lambda q: json_answer(answer))
    with PrometheusClient(server.url) as client:
        series = client.instant("up")
    assert [(s.labels["job"], s.value) for s in series] == [("a", None), ("b", None), ("c", None), ("d", 2.5)]


def test_queries_carry_the_server_side_timeout_and_limit(fake) -> None:
    seen = []

    def answer(query):
        return json_answer(vector(1))

    server = fake(answer)
    with PrometheusClient(server.url, timeout=3, max_series=10) as client:
        client._connect._session.hooks["response"].append(lambda r, *a, **k: seen.append(r.request.url))
        client.instant("up", at=1700000000)
    assert "timeout=3s" in seen[0] and "limit=11" in seen[0] and "time=1700000000.000" in seen[0]
