"""One `make demo` for the session's end-to-end tests (tests/demo/test_make_demo.py).

scripts/demo.py (what `make demo` runs after installing) on free ports with its own database,
Redis database and var/ folder. It is started in the background as soon as the session's tests
are known (tests/demo/conftest.py) because what those tests wait for takes minutes of the
demo's own time (PoolWaiting's `for` is 2 m after search saturates; a report query lasts
35-45 s): the rest of the suite runs meanwhile. As soon as it is up, a thread adds a silence of
SlowQuery on reports (before SlowQuery can fire: a report query is over 30 s after about 35 s)
and reads /api/v1/alerts/ every 10 s until every expected alert has fired, so nothing that
showed in the meantime is missed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.demo.http_session import Browser
from tests.prom import free_port

ROOT = Path(__file__).resolve().parents[2]
BASE_PORT = 9600
DB_NAME = "poolboard_e2e_demo"
LOGIN = ("e2e", "e2e-password")
# Started next to the rest of the suite on a 2-core machine: it came up in 50-110 s there.
START_TIMEOUT_S = 300

SILENCE = """
import json
from datetime import timedelta
from django.utils import timezone
from poolboard.alerts.models import AlertRule
from poolboard.notify.models import Silence
now = timezone.now()
Silence.objects.create(matchers=[{"name": "alertname", "value": "SlowQuery", "isRegex": False, "isEqual": True},
                                 {"name": "service", "value": "reports", "isRegex": False, "isEqual": True}],
                       starts_at=now, ends_at=now + timedelta(hours=2), created_by="e2e", comment="done-when")
waiting = AlertRule.objects.get(name="PoolWaiting")
print(json.dumps({"waiting_pk": waiting.pk, "waiting_channels": sorted(waiting.channels.values_list("name", flat=True))}))
"""

# The alerts the default rules must raise on the demo's scenarios.
EXPECTED_FIRING = [
    ("PoolWaiting", "search"), ("LeakSuspected", "billing"), ("IdleInTransaction", "notifications"), ("SlowQuery", "reports"),
]


@dataclass
class AlertWatch:
    """What /api/v1/alerts/ showed from the demo's start until every expected alert had fired:
    each (rule, service or server) with the states it was seen in, and those seen silenced."""

    seen: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    silenced: set[tuple[str, str]] = field(default_factory=set)
    error: Exception | None = None
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def all_fired(self) -> bool:
        with self.lock:
            return all("firing" in self.seen.get(k, ()) for k in EXPECTED_FIRING)

    def snapshot(self) -> tuple[dict[tuple[str, str], set[str]], set[tuple[str, str]]]:
        with self.lock:
            return {k: set(v) for k, v in self.seen.items()}, set(self.silenced)

    def run(self, browser: Browser, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                alerts = json.loads(browser.get("/api/v1/alerts/"))["alerts"]
                with self.lock:
                    for a in alerts:
                        key = (a["rule"]["name"], a["service"] or a["server"])
                        self.seen.setdefault(key, set()).add(a["state"])
                        if a["silenced_until"]:
                            self.silenced.add(key)
                if self.all_fired():
                    return
                stop.wait(10)
        except Exception as exc:  # the alerts test raises it
            self.error = exc
        finally:
            self.done.set()


@dataclass
class RunningDemo:
    var: Path
    env: dict[str, str]
    web_port: int
    prom_port: int
    pg_port: int
    proc: subprocess.Popen | None = None
    banner: str = ""
    start_error: str | None = None
    started: float = 0.0  # time.monotonic() once up, the silence added and the alerts watched
    up_after_s: float = 0.0
    waiting_pk: int = 0
    waiting_channels: list[str] = field(default_factory=list)
    alerts: AlertWatch = field(default_factory=AlertWatch)
    ready: threading.Event = field(default_factory=threading.Event)
    output: str | None = None  # everything it printed, once stopped by Ctrl-C
    _stop_watching: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def start(cls) -> RunningDemo:
        # Not tmp_path: the demo's cluster runs as the postgres user, who cannot enter pytest's 0700 folders.
        var = Path(tempfile.mkdtemp(prefix="poolboard-e2e-demo-"))
        var.chmod(0o755)
        web_port, prom_port, pg_port = free_port(), free_port(), free_port()
        env = dict(
            os.environ,
            POOLBOARD_PORT=str(web_port), PROMETHEUS_PORT=str(prom_port), DEMO_BASE_PORT=str(BASE_PORT),
            DEMO_PG_PORT=str(pg_port), DEMO_WEBHOOK_PORT=str(free_port()), POOLBOARD_VAR=str(var),
            DATABASE_URL=f"postgresql://root@127.0.0.1:5432/{DB_NAME}", REDIS_URL="redis://127.0.0.1:6379/7",
            DJANGO_SUPERUSER_USERNAME=LOGIN[0], DJANGO_SUPERUSER_PASSWORD=LOGIN[1],
            # pg_stat_statements read every 15 s (the demo: every minute) and pg_stat_activity every
            # 5 s, so that a 35-45 s report query has finished between two readings within two minutes.
            STATEMENTS_INTERVAL="15", DATABASE_SNAPSHOT_INTERVAL="5",
        )
        env.pop("DJANGO_SETTINGS_MODULE", None)
        env.pop("DEMO_DATABASE_URL", None)
        demo = cls(var, env, web_port, prom_port, pg_port)
        demo.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "demo.py")],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        demo._thread = threading.Thread(target=demo._come_up_then_watch, name="make-demo", daemon=True)
        demo._thread.start()
        return demo

    def _come_up_then_watch(self) -> None:
        launched = time.monotonic()
        try:
            deadline = launched + START_TIMEOUT_S
            while "Ctrl-C stops everything" not in self.banner and time.monotonic() < deadline:
                line = self.proc.stdout.readline()
                if not line:
                    break
                self.banner += line
            if "poolboard is running" not in self.banner:
                self.start_error = f"the demo did not come up:\n{self.banner}"
                return
            setup = subprocess.run([sys.executable, "manage.py", "shell", "-c", SILENCE],
                                   env=dict(self.env, DJANGO_SETTINGS_MODULE="poolboard.settings"), cwd=ROOT,
                                   capture_output=True, text=True)
            if setup.returncode != 0:
                self.start_error = f"adding the silence failed:\n{setup.stdout}{setup.stderr}"
                return
            found = json.loads(setup.stdout.strip().splitlines()[-1])
            self.waiting_pk, self.waiting_channels = found["waiting_pk"], found["waiting_channels"]
            browser = Browser(self.base, timeout=60)
            browser.login(*LOGIN)
        except Exception as exc:
            self.start_error = f"{exc!r} after:\n{self.banner}"
            return
        finally:
            self.started = time.monotonic()
            self.up_after_s = self.started - launched
            self.ready.set()
        self.alerts.run(browser, self._stop_watching)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def wait_ready(self) -> None:
        """Until it is up and watched (or failed to be); the first test to need it waits here."""
        self.ready.wait(START_TIMEOUT_S + 120)
        assert self.ready.is_set(), f"the demo is still starting after {START_TIMEOUT_S + 120}s:\n{self.banner}"
        assert self.start_error is None, self.start_error

    def left(self, seconds: float) -> float:
        """What remains of `seconds` counted from the demo's start: each test waits for the demo
        at most as long as when it started a demo of its own."""
        return max(1.0, self.started + seconds - time.monotonic())

    def stop(self, timeout: float) -> str:
        """Ctrl-C, and everything it printed."""
        if self.output is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.output, _ = self.proc.communicate(timeout=timeout)
        return self.output

    def close(self) -> None:
        """Stop it if no test did, and remove its folder and database."""
        self._stop_watching.set()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.communicate()
        if self._thread is not None:
            self._thread.join(timeout=70)
        shutil.rmtree(self.var, ignore_errors=True)
        with psycopg.connect("postgresql://root@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


_current: list[RunningDemo] = []


def start_once() -> RunningDemo:
    if not _current:
        _current.append(RunningDemo.start())
    return _current[0]


def close() -> None:
    while _current:
        _current.pop().close()
