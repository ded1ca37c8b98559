"""A local webhook receiver for the notify tests: http.server in a thread on port 0.

It answers from a script (one entry per request, the last one repeated): a status code, "hang"
(waits until the test ends, up to 60 s), or ("redirect", location). Every request is kept:
path, headers and the JSON body.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, script=(200,)):
        self.script = list(script)
        self.requests: list[dict] = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body or b"null")})
                    step = receiver.script[min(len(receiver.requests), len(receiver.script)) - 1]
                if step == "hang":
                    receiver.release.wait(60)
                    step = 200
                if isinstance(step, tuple):
                    self.send_response(302)
                    self.send_header("Location", step[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                answer = b'{"status":"ok"}' if step < 300 else b'{"error":"scripted failure"}'
                self.send_response(step)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def keys(self) -> list[str]:
        return [r["headers"].get("Idempotency-Key") for r in self.requests]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
