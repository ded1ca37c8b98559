"""Load: 50 logged-in viewers on the real web server while the real worker and beat collect.

1. A throwaway database (poolboard_bench_load); a synthetic fleet of 2 000 pool series
   (400 services × 5 instances, bench/synthetic_fleet.py) scraped every 5 s by a real
   Prometheus, as `make demo` scrapes its fleet; one monitored database (this very
   PostgreSQL server, so its pg_stat_activity is whatever the machine runs).
2. gunicorn, one Celery worker and one beat, started with the commands of
   poolboard/processes.py (as `make demo` starts them) on a free loopback port, with
   COLLECT_INTERVAL=15 and DATABASE_SNAPSHOT_INTERVAL=30, and a Redis database of
   their own (BENCH_REDIS_URL, default redis://127.0.0.1:6379/12).
3. 50 viewers, each a user with a session of its own (made by Django's login machinery,
   Client.force_login, in the session table the web server reads: the benchmark
   measures the pages, not 50 password hashes), keep three tabs open: the overview,
   one service page and the database page. Each tab behaves as
   htmx does: a full page load, then the elements with hx-trigger="load" are fetched,
   then every element with hx-trigger="every Ns" is fetched again N s after its last
   answer, with the HX-Request/HX-Target/HX-Trigger headers htmx sends, at the URL its
   hx-get names (read from the pages, so template changes are followed). About once a
   minute a viewer reloads one of its tabs (a full page load; static files are left
   out, as a browser has them cached). For DURATION seconds.
4. A collection tick is missed when a 15 s slot lying wholly inside the load window has
   no successful CollectionRun, or its run finished after the next slot began.

Prints:
  load_p95_ms, load_p99_ms   over every request (full pages and partials), client-side
                             wall time including the TCP connect; target p95 < 300
  load_errors                non-200 answers, answers without the element asked for,
                             timeouts and connection errors; target 0
  load_collect_ticks_missed  target 0
and, to read them: requests per second; p95 per kind of request, client-side and the
server's own (gunicorn's access log: the difference is time spent queueing for one of
the two sync workers); CPU used by the web, worker and beat process groups and by the
whole machine (the benchmark shares 2 cores with whatever else runs); each collection
run's duration and how many seconds into its slot it started; snapshots stored.

Everything listens on and talks to 127.0.0.1 only; every process is stopped and the
database dropped at the end, whatever happens.
"""

from __future__ import annotations

import heapq
import html
import http.client
import math
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urljoin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throwaway_db import run_then_drop, use_throwaway_database  # noqa: E402

BENCH_DB = "poolboard_bench_load"
VIEWERS = int(os.environ.get("BENCH_LOAD_VIEWERS", "50"))
DURATION = float(os.environ.get("BENCH_LOAD_SECONDS", "60"))
SERVICES, INSTANCES = 400, 5
COLLECT_INTERVAL, SNAPSHOT_INTERVAL = 15, 30
# A viewer reloads one of its tabs about once a minute.
RELOADS_PER_SECOND = 1 / 60
REQUEST_TIMEOUT = 30

use_throwaway_database(BENCH_DB)
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))  # the web server must share it (sessions)
os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
os.environ["COLLECT_INTERVAL"] = str(COLLECT_INTERVAL)
os.environ["DATABASE_SNAPSHOT_INTERVAL"] = str(SNAPSHOT_INTERVAL)
os.environ.setdefault("PROMETHEUS_MAX_SERIES", "20000")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from poolboard.databases.models import MonitoredServer  # noqa: E402
from poolboard.databases.snapshots import snapshot_server  # noqa: E402
from poolboard.fleet.collection import collect_source  # noqa: E402
from poolboard.fleet.models import CollectionRun, PrometheusSource, Service  # noqa: E402
from poolboard.fleet.partitions import ensure_partitions  # noqa: E402
from poolboard.processes import PROCESS_KIND, expand  # noqa: E402
from synthetic_fleet import SyntheticFleet  # noqa: E402
from tests.prom import free_port  # noqa: E402

call_command("migrate", verbosity=0)

# An element htmx requests by itself: <… id="x" hx-get="url" hx-trigger="every 10s …" …>
TAG_RE = re.compile(r"<[a-zA-Z][^>]*\bhx-trigger=\"[^\"]*\"[^>]*>")
ATTR_RE = re.compile(r'\b(id|hx-get|hx-trigger)="([^"]*)"')
EVERY_RE = re.compile(r"^every (\d+(?:\.\d+)?)(ms|s)\b")


@dataclass
class Trigger:
    target: str
    url: str
    every: float | None  # seconds between polls; None for hx-trigger="load"


def triggers_in(page_url: str, body: str) -> list[Trigger]:
    """The self-requesting elements of an answer: polled ones and hx-trigger="load" ones."""
    found = []
    for tag in TAG_RE.findall(body):
        attrs = {k: html.unescape(v) for k, v in ATTR_RE.findall(tag)}
        if "hx-get" not in attrs or "id" not in attrs:
            continue
        trigger = attrs["hx-trigger"].strip()
        every = EVERY_RE.match(trigger)
        if every:
            seconds = float(every.group(1)) / (1000 if every.group(2) == "ms" else 1)
            found.append(Trigger(attrs["id"], urljoin(page_url, attrs["hx-get"]), seconds))
        elif trigger == "load":
            found.append(Trigger(attrs["id"], urljoin(page_url, attrs["hx-get"]), None))
    return found


@dataclass
class Sample:
    kind: str
    started: float
    ms: float
    error: str = ""


@dataclass
class Recorder:
    samples: list[Sample] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sample: Sample) -> None:
        with self.lock:
            self.samples.append(sample)


class Viewer:
    """One logged-in person with three tabs open, each tab behaving as htmx does."""

    def __init__(self, port: int, cookie: str, tabs: list[str], recorder: Recorder, end: float, seed: int) -> None:
        self.port, self.cookie, self.tabs, self.recorder, self.end = port, cookie, tabs, recorder, end
        self.random = random.Random(seed)
        self.generation = {tab: 0 for tab in tabs}  # a reload cancels the old page's polls

    def get(self, kind: str, url: str, target: str | None) -> str | None:
        headers = {"Cookie": self.cookie, "Accept": "text/html"}
        if target:
            headers.update({"HX-Request": "true", "HX-Target": target, "HX-Trigger": target})
        started = time.time()
        t0 = time.perf_counter()
        error, body = "", None
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request("GET", url, headers=headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
            if response.status != 200:
                error = f"HTTP {response.status}"
            elif target and f'id="{target}"' not in text:
                error = f"answer without #{target}"
            else:
                body = text
        except (OSError, http.client.HTTPException) as exc:
            error = f"{exc.__class__.__name__}: {exc}"
        finally:
            conn.close()
        self.recorder.add(Sample(kind, started, (time.perf_counter() - t0) * 1000, f"{url} {error}" if error else ""))
        return body

    def open_tab(self, tab: str, queue: list) -> None:
        """Full page load, then hx-trigger="load" elements; schedule every polled element."""
        self.generation[tab] += 1
        body = self.get(f"page {kind_of(tab)}", tab, None)
        if body is None:
            return
        pending = triggers_in(tab, body)
        while pending:
            trigger = pending.pop(0)
            if trigger.every is None:
                answer = self.get(f"load {trigger.target}", trigger.url, trigger.target)
                if answer is not None:
                    pending.extend(t for t in triggers_in(trigger.url, answer) if t.target == trigger.target)
            else:
                heapq.heappush(queue, (time.time() + trigger.every, self.random.random(), tab, self.generation[tab], trigger))

    def run(self) -> None:
        queue: list = []
        # People open their tabs at different moments, not all in the same second.
        time.sleep(self.random.uniform(0, 10))
        for tab in self.tabs:
            self.open_tab(tab, queue)
        next_reload = time.time() + self.random.expovariate(RELOADS_PER_SECOND)
        for _ in range(10_000):  # bounded, whatever the clock does
            now = time.time()
            if now >= self.end:
                return
            if now >= next_reload:
                self.open_tab(self.random.choice(self.tabs), queue)
                next_reload = time.time() + self.random.expovariate(RELOADS_PER_SECOND)
                continue
            if not queue:
                time.sleep(min(self.end, next_reload) - now)
                continue
            due, _, tab, generation, trigger = queue[0]
            if due > now:
                time.sleep(max(0.0, min(due, next_reload, self.end) - now))
                continue
            heapq.heappop(queue)
            if generation != self.generation[tab]:
                continue  # that page was reloaded; its new elements poll instead
            answer = self.get(f"poll {trigger.target}", trigger.url, trigger.target)
            # outerHTML swap: the new element carries the next hx-get; the timer restarts after the swap.
            fresh = [t for t in triggers_in(trigger.url, answer) if t.target == trigger.target] if answer else []
            nxt = fresh[0] if fresh else trigger
            heapq.heappush(queue, (time.time() + (nxt.every or trigger.every), self.random.random(), tab, generation, nxt))


def kind_of(url: str) -> str:
    if url.startswith("/services/"):
        return "service"
    if url.startswith("/databases/"):
        return "database"
    return "overview"


class Processes:
    """The deployment's long-running processes, each leading its own process group."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.children: dict[str, subprocess.Popen] = {}

    def start(self, name: str, placeholders: dict[str, str]) -> None:
        env = dict(os.environ, POOLBOARD_PROCESS=PROCESS_KIND[name], LOG_LEVEL="WARNING")
        # Same command; only the access log's line format, so the server's own time per
        # request (microseconds) can be told apart from the time spent queueing for a worker.
        env["GUNICORN_CMD_ARGS"] = f"--access-logformat '{ACCESS_LOG_FORMAT}'"
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        log = open(self.work / f"{name}.log", "ab")
        self.children[name] = subprocess.Popen(
            expand(name, placeholders), env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each process group has used so far, its forked children included."""
        groups = {proc.pid: name for name, proc in self.children.items()}
        used = dict.fromkeys(self.children, 0.0)
        ticks = os.sysconf("SC_CLK_TCK")
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process ended meanwhile
            # After the command: state ppid pgrp ... utime (12th) stime (13th).
            if int(fields[2]) in groups:
                used[groups[int(fields[2])]] += (int(fields[11]) + int(fields[12])) / ticks
        return used

    def dead(self) -> list[str]:
        return [name for name, proc in self.children.items() if proc.poll() is not None]

    def stop_all(self, timeout: float = 20) -> None:
        for proc in self.children.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.children.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its group (forked workers)
            except ProcessLookupError:
                pass
            proc.wait()


ACCESS_LOG_FORMAT = "access %(U)s %({hx-target}i)s %(s)s %(D)s"
ACCESS_LINE_RE = re.compile(r"^access (\S+) (\S+) (\d+) (\d+)$", re.M)


def server_times(web_log: str) -> dict[str, list[float]]:
    """Milliseconds the web server spent on each kind of the viewers' requests, from its access log."""
    times: dict[str, list[float]] = {}
    for path, target, _status, micros in ACCESS_LINE_RE.findall(web_log):
        if path.startswith("/login/"):
            continue  # the start-up probe
        kind = f"poll {target}" if target != "-" else f"page {kind_of(path)}"
        times.setdefault(kind, []).append(int(micros) / 1000)
    return times


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every core, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


def wait_http(port: int, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", path)
            if conn.getresponse().status < 500:
                return
        except OSError:
            time.sleep(0.3)
        finally:
            conn.close()
    raise RuntimeError(f"the web server did not answer {path} on port {port} within {timeout:g} s")


def wait_for_beat_tick(source: PrometheusSource, after: float, timeout: float) -> None:
    """The worker and beat are up once a beat-driven collection run has finished."""
    deadline = time.monotonic() + timeout
    since = datetime.fromtimestamp(after, tz=timezone.utc)
    while time.monotonic() < deadline:
        if CollectionRun.objects.filter(source=source, started__gte=since, status=CollectionRun.OK).exists():
            return
        time.sleep(0.5)
    raise RuntimeError(f"no collection run from the worker within {timeout:g} s (see the worker/beat logs)")


def missed_ticks(source: PrometheusSource, start: float, end: float) -> tuple[int, int]:
    """(slots wholly inside [start, end], those without a run that finished in time)."""
    first, last = math.ceil(start / COLLECT_INTERVAL), math.floor(end / COLLECT_INTERVAL) - 1
    runs = {r.slot: r for r in CollectionRun.objects.filter(source=source, slot__gte=first, slot__lte=last)}
    missed = 0
    for slot in range(first, last + 1):
        run = runs.get(slot)
        slot_end = datetime.fromtimestamp((slot + 1) * COLLECT_INTERVAL, tz=timezone.utc)
        if run is None or run.status != CollectionRun.OK or run.finished is None or run.finished > slot_end:
            missed += 1
            print(f"# missed slot {slot}: {'no run' if run is None else f'{run.status}, finished {run.finished}'}")
    return last - first + 1, missed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def make_sessions(count: int) -> list[str]:
    user_model = get_user_model()
    cookies = []
    for i in range(count):
        user = user_model.objects.create_user(f"viewer{i:02d}", f"viewer{i:02d}@example.org", secrets.token_urlsafe(16))
        client = Client()
        client.force_login(user)
        cookies.append(f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}")
    return cookies


def main() -> None:
    broker = redis.Redis.from_url(os.environ["REDIS_URL"])
    broker.flushdb()  # our own Redis database: no task left over from an interrupted run
    work = Path(tempfile.mkdtemp(prefix="pb-bench-load-"))
    processes = Processes(work)
    try:
        with SyntheticFleet(SERVICES, INSTANCES, scrape_interval="5s", rate_window="1m") as fleet:
            source = PrometheusSource.objects.create(name="fleet", url=fleet.url, presets=["db_pool"], rate_window="1m")
            ensure_partitions(datetime.now(timezone.utc))
            first = collect_source(source, 1)  # creates the 400 services and 2 000 pools
            assert first.status == "ok" and first.samples == SERVICES * INSTANCES, (first.status, first.error)
            db = MonitoredServer.objects.create(
                name="main", host="127.0.0.1", port=connection.settings_dict["PORT"] or 5432, dbname=BENCH_DB,
                user=connection.settings_dict["USER"] or "root", sslmode="disable",
            )
            snapshot_server(db)
            cookies = make_sessions(VIEWERS)
            service_ids = list(Service.objects.values_list("pk", flat=True))
            connection.close()  # the bench holds no session during the run

            port = free_port()
            placeholders = {"POOLBOARD_BIND": f"127.0.0.1:{port}", "POOLBOARD_VAR": str(work)}
            for name in ("web", "worker", "beat"):
                processes.start(name, placeholders)
            wait_http(port, "/login/", 60)
            beat_started = time.time()
            wait_for_beat_tick(source, beat_started, 3 * COLLECT_INTERVAL + 30)

            recorder = Recorder()
            load_before = os.getloadavg()[0]
            cpu_before, machine_before = processes.cpu_seconds(), machine_cpu_seconds()
            start = time.time()
            end = start + DURATION
            rng = random.Random(7)
            viewers = [
                Viewer(port, cookies[i], ["/", f"/services/{rng.choice(service_ids)}/", f"/servers/{db.name}/"],
                       recorder, end, seed=i)
                for i in range(VIEWERS)
            ]
            with ThreadPoolExecutor(max_workers=VIEWERS) as pool:
                for future in [pool.submit(v.run) for v in viewers]:
                    future.result(timeout=DURATION + 120)
            finished = time.time()
            cpu_after, machine_after = processes.cpu_seconds(), machine_cpu_seconds()
            dead = processes.dead()
            slots, missed = missed_ticks(source, start, end)
            window = (datetime.fromtimestamp(start, tz=timezone.utc), datetime.fromtimestamp(end, tz=timezone.utc))
            runs = list(
                CollectionRun.objects.filter(source=source, started__range=window, duration_s__isnull=False)
                .order_by("slot").values_list("slot", "started", "duration_s")
            )
            snapshots = db.snapshots.filter(taken_at__range=window).count()
    finally:
        processes.stop_all()
        broker.flushdb()
        broker.close()
        logs = {p.stem: p.read_text(errors="replace") for p in work.glob("*.log")}
        shutil.rmtree(work, ignore_errors=True)

    samples = recorder.samples
    times = [s.ms for s in samples]
    errors = [s for s in samples if s.error]
    print(f"load_viewers: {VIEWERS}")
    print(f"load_seconds: {finished - start:.0f}")
    print(f"load_requests: {len(samples)}")
    print(f"load_requests_per_second: {len(samples) / (finished - start):.1f}")
    for kind in sorted({s.kind for s in samples}):
        kind_ms = [s.ms for s in samples if s.kind == kind]
        label = re.sub(r"[^a-z0-9]+", "_", kind.lower()).strip("_")
        print(f"load_p95_ms_{label}: {percentile(kind_ms, 0.95):.0f}  (n={len(kind_ms)}, median {statistics.median(kind_ms):.0f})")
    served = server_times(logs.get("web", ""))
    for kind in sorted(served):
        label = re.sub(r"[^a-z0-9]+", "_", kind.lower()).strip("_")
        print(f"load_server_p95_ms_{label}: {percentile(served[kind], 0.95):.0f}  (median {statistics.median(served[kind]):.0f})")
    every = [ms for kind_ms in served.values() for ms in kind_ms]
    if every:
        print(f"load_server_p95_ms: {percentile(every, 0.95):.0f}  (the server's own time; the rest of load_p95_ms is queueing)")
    print(f"load_machine_loadavg_1m: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores shared with other work)")
    elapsed = finished - start
    for name in cpu_after:
        print(f"load_cpu_share_{name}: {(cpu_after[name] - cpu_before[name]) / elapsed:.2f} cores")
    web_cpu = cpu_after["web"] - cpu_before["web"]
    print(f"load_web_cpu_ms_per_request: {web_cpu * 1000 / max(1, len(samples)):.0f}")
    busy = (machine_after[0] - machine_before[0]) / elapsed
    ours = sum(cpu_after[n] - cpu_before[n] for n in cpu_after) / elapsed
    print(f"load_machine_busy: {busy:.2f} of {os.cpu_count()} cores ({ours:.2f} of them poolboard's processes;"
          " the rest: this bench, Prometheus, the exporters, PostgreSQL and other work)")
    print(f"load_collect_run_seconds: {', '.join(f'{d:.2f}' for _, _, d in runs)}")
    # Seconds into its slot each run started: near 0 when beat fires as each slot begins.
    offsets = ", ".join(f"{started.timestamp() - slot * COLLECT_INTERVAL:.2f}" for slot, started, _ in runs)
    print(f"load_collect_run_start_in_slot_seconds: {offsets}")
    print(f"load_snapshots_stored: {snapshots}")
    print(f"load_collect_slots: {slots}")
    for sample in errors[:10]:
        print(f"# error: {sample.kind}: {sample.error}")
    if dead:
        print(f"# these processes died during the run: {', '.join(dead)}")
        for name in dead:
            print(f"# {name}.log (end):\n{logs.get(name, '')[-2000:]}")
    print(f"load_p95_ms: {percentile(times, 0.95):.0f}")
    print(f"load_p99_ms: {percentile(times, 0.99):.0f}")
    print(f"load_errors: {len(errors)}")
    print(f"load_collect_ticks_missed: {missed}", flush=True)


if __name__ == "__main__":
    run_then_drop(main, BENCH_DB)
