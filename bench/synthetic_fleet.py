"""A synthetic fleet for the benchmarks, scraped by a real Prometheus.

`services` services (job `<prefix>svc-0000`, …) × `instances` instances, Go-style db_pool_* metrics (11 series per
pool, one pool per instance), served by one exposition server per instance. The servers
run in a child process (`python bench/synthetic_fleet.py SERVICES INSTANCES`), so writing
tens of thousands of lines a second never holds the benchmark's own GIL.

    with SyntheticFleet(400, 5, scrape_interval="1s") as fleet:
        fleet.url          # Prometheus, once it holds every series and a rate of each
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.prom import PROMETHEUS_BIN, free_port  # noqa: E402

METRICS = (
    ("db_pool_max_open_connections", "gauge"),
    ("db_pool_in_use_connections", "gauge"),
    ("db_pool_idle_connections", "gauge"),
    ("db_pool_pending_requests", "gauge"),
    ("db_pool_exhausted_total", "counter"),
    ("db_pool_wait_total", "counter"),
    ("db_pool_wait_duration_seconds_total", "counter"),
    ("db_connection_hold_duration_seconds_sum", "counter"),
    ("db_connection_hold_duration_seconds_count", "counter"),
    ("db_pool_connections_created_total", "counter"),
    ("db_pool_connections_closed_total", "counter"),
)


def exposition(instance: int, services: int, prefix: str, now: float) -> str:
    """One instance's /metrics for every service: gauges that move, counters that grow."""
    lines = []
    tick = int(now)
    for metric, kind in METRICS:
        lines.append(f"# TYPE {metric} {'untyped' if kind == 'counter' else 'gauge'}")
        for s in range(services):
            labels = f'{{job="{prefix}svc-{s:04d}",instance="10.1.{instance}.{s % 250}:8080",pool_name="main"}}'
            in_use = (s + tick + instance) % 11
            value = {
                "db_pool_max_open_connections": 10,
                "db_pool_in_use_connections": min(in_use, 10),
                "db_pool_idle_connections": 10 - min(in_use, 10),
                "db_pool_pending_requests": max(in_use - 10, 0),
                "db_pool_exhausted_total": tick // 97,
                "db_pool_wait_total": tick * 3,
                "db_pool_wait_duration_seconds_total": tick * 0.006,
                "db_connection_hold_duration_seconds_sum": tick * 2.5,
                "db_connection_hold_duration_seconds_count": tick * 50,
                "db_pool_connections_created_total": tick // 30,
                "db_pool_connections_closed_total": tick // 31,
            }[metric]
            lines.append(f"{metric}{labels} {value}")
    return "\n".join(lines) + "\n"


def serve_exporters(services: int, instances: int, prefix: str) -> None:
    """Child process: one exposition server per instance; prints the ports, serves until stdin closes."""
    servers = []
    for instance in range(instances):

        class Handler(BaseHTTPRequestHandler):
            instance_index = instance

            def do_GET(self) -> None:
                body = exposition(self.instance_index, services, prefix, time.time()).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # Prometheus gave up on this scrape (timeout or shutdown)

            def log_message(self, *args) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    print(json.dumps([s.server_address[1] for s in servers]), flush=True)
    sys.stdin.read()  # the parent closes our stdin (or dies) when it is done


def prom_count(url: str, promql: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}), timeout=5) as r:
            result = json.load(r)["data"]["result"]
    except OSError:
        return 0
    return int(float(result[0]["value"][1])) if result else 0


class SyntheticFleet:
    """The exporters' child process plus a Prometheus scraping them; stops both on exit."""

    def __init__(
        self, services: int, instances: int, scrape_interval: str = "1s", rate_window: str = "10s", prefix: str = ""
    ) -> None:
        self.services, self.instances, self.prefix = services, instances, prefix
        self.scrape_interval, self.rate_window = scrape_interval, rate_window
        self.work = Path(tempfile.mkdtemp(prefix="pb-bench-fleet-"))
        self.exporters: subprocess.Popen | None = None
        self.prometheus: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> SyntheticFleet:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.exporters = subprocess.Popen(
            [sys.executable, __file__, str(self.services), str(self.instances), self.prefix],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        ports = json.loads(self.exporters.stdout.readline())
        config = self.work / "prometheus.yml"
        timeout = min(10, int(self.scrape_interval.rstrip("s")))
        config.write_text(
            f"global:\n  scrape_interval: {self.scrape_interval}\n  scrape_timeout: {timeout}s\nscrape_configs:\n"
            "  - job_name: fleet\n    honor_labels: true\n    static_configs:\n"
            f"      - targets: {json.dumps([f'127.0.0.1:{p}' for p in ports])}\n"
        )
        port = free_port()
        self.prometheus = subprocess.Popen(
            [PROMETHEUS_BIN, f"--config.file={config}", f"--storage.tsdb.path={self.work / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{port}"
        self.wait_for_every_series()

    def wait_for_every_series(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        want = self.services * self.instances
        while time.monotonic() < deadline:
            if (
                prom_count(self.url, "count(db_pool_in_use_connections)") == want
                and prom_count(self.url, f"count(rate(db_pool_wait_total[{self.rate_window}]) > 0)") == want
            ):
                return
            time.sleep(0.5)
        raise RuntimeError(f"Prometheus did not get the whole synthetic fleet ({want} pools) within {timeout:g} s")

    def stop(self) -> None:
        if self.prometheus is not None:
            self.prometheus.terminate()
            self.prometheus.wait(15)
        if self.exporters is not None:
            self.exporters.stdin.close()
            try:
                self.exporters.wait(10)
            except subprocess.TimeoutExpired:
                self.exporters.kill()
                self.exporters.wait()
        shutil.rmtree(self.work, ignore_errors=True)


if __name__ == "__main__":
    serve_exporters(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
