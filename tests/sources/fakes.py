"""Small local HTTP servers that answer like a broken Prometheus (they are not Prometheus).

Used only for malformed answers a real Prometheus never gives (garbage JSON, status
error with HTTP 200, 50 000 series from a 2.42 that ignores `limit=`), and for
servers that refuse or hang.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from tests.prom import free_port

# (query) -> (status, content type, body)
Answer = Callable[[str], tuple[int, str, bytes]]


def json_answer(body: object, status: int = 200) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(body).encode()


def vector(n: int, value: str = "1", name: str = "db_pool_in_use_connections") -> dict:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"job": f"svc-{i}", "instance": "10.0.0.1:9100", "pool_name": "main"}, "value": [1700000000.0, value]}
                for i in range(n)
            ],
        },
    }


class FakePrometheus:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query).get("query", [""])[0]
                fake.requests.append(query)
                status, content_type, body = fake.answer(query)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        # shutdown() waits up to one poll interval (0.5 s by default) for the loop to notice.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class HangingServer:
    """Accepts TCP connections and never answers."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self._held.append(conn)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self._held:
            conn.close()
        self._sock.close()
