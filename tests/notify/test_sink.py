from __future__ import annotations

import io
import json
import threading

import pytest

from poolboard.notify.dispatch import dispatch_due
from poolboard.notify.outbox import enqueue
from poolboard.notify.sink import make_server
from tests.notify.factories import T0, alert, channel


@pytest.mark.django_db
def test_the_sink_logs_each_key_with_how_often_it_was_seen():
    out = io.StringIO()
    server = make_server(0, out)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ch = channel(url=f"http://127.0.0.1:{server.server_port}/")
        enqueue(ch, "0123456789abcdef:1", "alert", alert(), T0)
        dispatch_due(now=T0)
    finally:
        server.shutdown()
        server.server_close()
    (line,) = [json.loads(x) for x in out.getvalue().splitlines()]
    assert line == {"key": "0123456789abcdef:1", "times_seen": 1, "path": "/", "status": "firing", "receiver": "hook",
                    "alerts": ["PoolSaturated"]}
