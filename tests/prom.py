"""Real Prometheus for tests: a fixed-text exporter and the Prometheus binary scraping it.

No fakes of Prometheus itself: the collection code under test talks to the real
server (`/usr/bin/prometheus`, installed by the Makefile) over HTTP.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.wait import wait_until

PROMETHEUS_BIN = shutil.which("prometheus") or "/usr/bin/prometheus"
EXPOSITIONS = Path(__file__).parent / "fixtures" / "exposition"


def exposition(name: str) -> str:
    """The exposition text of tests/fixtures/exposition/<name>.prom."""
    return (EXPOSITIONS / f"{name}.prom").read_text()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ExpositionServer:
    """Serves exposition text at /metrics; `text` may be changed while running."""

    def __init__(self, text: str = "") -> None:
        self.text = text
        self.port = free_port()
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = server_self.text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        # shutdown() waits up to one poll interval (0.5 s by default) for the loop to notice.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class PrometheusServer:
    """The real Prometheus binary on a free port, scraping `jobs` every `scrape_interval`."""

    def __init__(self, jobs: dict[str, list[str]], scrape_interval: str = "1s") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = Path(tempfile.mkdtemp(prefix="pb-prom-"))
        lines = ["global:", f"  scrape_interval: {scrape_interval}", f"  evaluation_interval: {scrape_interval}", "scrape_configs:"]
        for job, targets in jobs.items():
            lines += [f"  - job_name: {json.dumps(job)}", "    static_configs:", f"      - targets: {json.dumps(targets)}"]
        (self._dir / "prometheus.yml").write_text("\n".join(lines) + "\n")
        self._log = open(self._dir / "prometheus.log", "wb")
        self._proc = subprocess.Popen(
            [
                PROMETHEUS_BIN,
                f"--config.file={self._dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self._dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        def ready() -> bool:
            if self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(self._dir / 'prometheus.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_until(ready, timeout=timeout, interval=0.1, what="Prometheus to be ready")

    def query(self, promql: str) -> list:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)["data"]["result"]

    def wait_for(self, promql: str, count: int = 1, timeout: float = 30) -> list:
        """Wait until `promql` returns at least `count` series with a number."""

        def series() -> list:
            result = [r for r in self.query(promql) if r["value"][1] not in ("NaN",)]
            return result if len(result) >= count else []

        return wait_until(series, timeout=timeout, interval=0.2, what=f"{count} series from {promql!r}")

    def close(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()
        shutil.rmtree(self._dir, ignore_errors=True)


