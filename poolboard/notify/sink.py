"""A webhook receiver for the demo and for trying a channel: `python -m poolboard.notify.sink --port 9095`.

It answers 200 to every POST and appends one JSON line per request to --log (default stdout):
the Idempotency-Key, how many times that key has been seen, the payload's status, receiver
and alert names. A key seen twice is a re-send after a dispatcher lost its lease; the log
shows that every notification arrived, and arrived once or twice, never zero times.
No Django: it runs beside poolboard, not inside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TextIO


def summary(body: dict) -> dict:
    alerts = body.get("alerts") if isinstance(body, dict) else None
    if isinstance(alerts, list):
        names = [a.get("labels", {}).get("alertname", "?") for a in alerts if isinstance(a, dict)]
        return {"status": body.get("status"), "receiver": body.get("receiver"), "alerts": names}
    return {"kind": body.get("kind") if isinstance(body, dict) else None}


def make_server(port: int, out: TextIO, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            raw = self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 10_000_000))
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = None
            key = self.headers.get("Idempotency-Key") or ""
            with lock:
                seen[key] += 1
                line = {"key": key, "times_seen": seen[key], "path": self.path, **summary(body)}
                out.write(json.dumps(line) + "\n")
                out.flush()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9095)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--log", help="file to append JSON lines to (default: stdout)")
    args = parser.parse_args(argv)
    out = open(args.log, "a") if args.log else sys.stdout  # open for the life of the process
    server = make_server(args.port, out, args.host)
    print(f"poolboard notification sink on http://{args.host}:{server.server_port}/", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
