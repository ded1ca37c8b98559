"""`make demo`: poolboard, its demo fleet and a real Prometheus, supervised.

1. Create and migrate poolboard's database (on the machine's server); make sure a superuser exists.
2. Start the demo fleet's own PostgreSQL cluster (initdb under var/demo/pg the first time,
   pg_stat_statements preloaded, port DEMO_PG_PORT, default 5439) unless DEMO_DATABASE_URL names
   another database; it is the demo's monitored server.
3. Write a Prometheus config scraping the demo fleet and start Prometheus.
4. Start the demo fleet, one Celery worker, one beat and the web server.
5. Print the URL and login; on Ctrl-C or SIGTERM (or when any child dies) stop every
   child's whole process group, so no stray process keeps a port, then the demo's cluster.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from poolboard import dburl  # noqa: E402
from poolboard.demo.database import DEMO_DBNAME, fleet_cluster  # noqa: E402
from poolboard.pgcluster import ClusterError  # noqa: E402
from poolboard.processes import PROCESS_KIND, expand  # noqa: E402

PORT = os.environ.get("POOLBOARD_PORT", "8000")
PROM_PORT = os.environ.get("PROMETHEUS_PORT", "9090")
DEMO_BASE_PORT = os.environ.get("DEMO_BASE_PORT", "9201")
WEBHOOK_PORT = os.environ.get("DEMO_WEBHOOK_PORT", "9095")
VAR = Path(os.environ.get("POOLBOARD_VAR", ROOT / "var" / "demo"))
SCRAPE_INTERVAL = "5s"


def log(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def manage(*args: str, env: dict[str, str], capture: bool = False) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return result.stdout or ""


def ensure_superuser(env: dict[str, str]) -> tuple[str, str | None]:
    """Django's DJANGO_SUPERUSER_* variables win; otherwise admin with a generated password."""
    result = json.loads(manage("ensuresuperuser", env=env, capture=True).strip().splitlines()[-1])
    return result["username"], result["password"]


class Supervisor:
    def __init__(self) -> None:
        self.children: dict[str, subprocess.Popen] = {}
        self.stopping = False

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log_file = open(VAR / f"{name}.log", "ab")
        # Each child leads its own process group, so stopping it also stops its
        # children (gunicorn and Celery workers fork).
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        self.children[name] = proc
        log(f"started {name} (pid {proc.pid}), log: {VAR / (name + '.log')}")

    def stop_all(self, timeout: float = 15) -> None:
        self.stopping = True
        for proc in reversed(list(self.children.values())):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, proc in self.children.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop in {timeout:g}s; killing it")
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its group
            except ProcessLookupError:
                pass
            proc.wait()
        log("every process stopped")

    def first_dead(self) -> str | None:
        for name, proc in self.children.items():
            if proc.poll() is not None:
                return name
        return None


def wait_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:
            time.sleep(0.3)
    return False


def main() -> int:
    VAR.mkdir(parents=True, exist_ok=True)
    prometheus_bin = shutil.which("prometheus")
    if not prometheus_bin:
        log("prometheus is not installed (make demo installs it with apt-get when run as root)")
        return 1
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", "postgresql://root@127.0.0.1:5432/poolboard")
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    env.setdefault("PROMETHEUS_URL", f"http://127.0.0.1:{PROM_PORT}")
    env.setdefault("COLLECT_INTERVAL", "10")
    # The sizing page recommends after 15 minutes of pool history instead of an hour.
    env.setdefault("SIZING_MIN_HISTORY", "900")
    # pg_stat_statements read every minute (default 5), so the slow-queries page has figures soon.
    env.setdefault("STATEMENTS_INTERVAL", "60")
    # Notifications stay on this machine: mail as files in var/demo/mail/, webhooks to the demo's
    # receiver on loopback (refused by default, so allowed here).
    env.setdefault("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
    env.setdefault("EMAIL_FILE_PATH", str(VAR / "mail"))
    env.setdefault("NOTIFY_ALLOW_NETWORKS", "127.0.0.1/32")
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    if not env.get("SECRET_KEY") and not env.get("SECRET_KEY_FILE"):
        # A key of the demo's own, kept across runs so logins survive a restart.
        key_file = VAR / "secret_key"
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(50))
            key_file.chmod(0o600)
        env["SECRET_KEY_FILE"] = str(key_file)
    placeholders = {"POOLBOARD_BIND": f"127.0.0.1:{PORT}", "POOLBOARD_VAR": str(VAR), "DEMO_BASE_PORT": DEMO_BASE_PORT}

    log("preparing the database")
    subprocess.run([sys.executable, "-m", "poolboard.bootstrap"], env=env, cwd=ROOT, check=True)
    manage("migrate", "--noinput", "-v", "0", env=env)
    username, password = ensure_superuser(env)
    # The demo's billing and checkout report held connections with poolboard.agent; one token,
    # replaced on every start. Without it the agent would only export metrics.
    agent_token = manage(
        "createapitoken", username, "--name", "demo agent", "--replace", env=env, capture=True
    ).strip().splitlines()[-1]
    agent_env = {"POOLBOARD_AGENT_ENDPOINT": f"http://127.0.0.1:{PORT}", "POOLBOARD_AGENT_TOKEN": agent_token}
    manage(
        "ensuresource", "demo", env["PROMETHEUS_URL"], "--presets", "db_pool,hikaricp,otel", "--rate-window", "1m",
        env=env,
    )

    # The fleet's database lives on a cluster of the demo's own, where pg_stat_statements is
    # preloaded (the machine's server need not be restarted for it); DEMO_DATABASE_URL overrides.
    def on_signal(signum, frame) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cluster = None
    if not env.get("DEMO_DATABASE_URL"):
        log(f"starting the demo's PostgreSQL cluster in {VAR / 'pg'}")
        try:
            cluster = fleet_cluster(VAR / "pg")
        except ClusterError as exc:
            log(f"the demo's PostgreSQL cluster did not start: {exc}")
            log("POOLBOARD_VAR names another folder for it, DEMO_PG_PORT another port (default 5439),"
                " DEMO_DATABASE_URL a database of yours to use instead")
            return 1
        env["DEMO_DATABASE_URL"] = cluster.url(DEMO_DBNAME)
    try:
        return run(env, placeholders, prometheus_bin, agent_env, (username, password))
    except KeyboardInterrupt:
        log("stopping")
        return 0
    finally:
        if cluster is not None:
            cluster.stop()
            log("the demo's PostgreSQL cluster stopped")


def run(
    env: dict[str, str], placeholders: dict[str, str], prometheus_bin: str, agent_env: dict[str, str],
    login: tuple[str, str | None],
) -> int:
    username, password = login
    # Watch the demo fleet's own database from the database side too (trust auth on
    # loopback in the demo, so no password reference is needed).
    demo_db = dburl.parse(env["DEMO_DATABASE_URL"])
    inventory = VAR / "inventory.yaml"
    inventory.write_text(
        "databases:\n"
        f"  - name: demo\n    host: {demo_db.get('host', '127.0.0.1')}\n    port: {demo_db.get('port', 5432)}\n"
        f"    dbname: {demo_db.get('dbname', 'poolboard_demo')}\n    user: {demo_db.get('user', 'root')}\n"
        "    sslmode: disable\n"
    )
    manage("importinventory", str(inventory), env=env)
    # Every default alert rule notifies the demo's webhook receiver (its log counts each
    # Idempotency-Key) and an email channel (files in var/demo/mail/).
    manage("ensurechannel", "demo-webhook", "webhook", "--url", f"http://127.0.0.1:{WEBHOOK_PORT}/", "--every-rule",
           "--group-wait", "10", env=env)
    manage("ensurechannel", "demo-email", "email", "--to", "oncall@example.org", "--every-rule", "--group-wait", "10",
           env=env)
    # DEMO DATA: a few past weeks shaped like the scenarios, so the Reports page has last week's report.
    manage("seeddemohistory", "--base-port", DEMO_BASE_PORT, env=env)

    config = subprocess.run(
        [sys.executable, "-m", "poolboard.demo", "prometheus-config", "--base-port", DEMO_BASE_PORT,
         "--scrape-interval", SCRAPE_INTERVAL],
        env=env, cwd=ROOT, check=True, text=True, stdout=subprocess.PIPE,
    ).stdout
    (VAR / "prometheus.yml").write_text(config)

    supervisor = Supervisor()
    try:
        supervisor.start("prometheus", [
            prometheus_bin, f"--config.file={VAR / 'prometheus.yml'}", f"--storage.tsdb.path={VAR / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{PROM_PORT}", "--storage.tsdb.retention.time=2d",
        ], env)
        supervisor.start("webhook", [
            sys.executable, "-m", "poolboard.notify.sink", "--port", WEBHOOK_PORT, "--log", str(VAR / "webhook.jsonl"),
        ], env)
        for name in ("fleet", "worker", "beat", "web"):
            child_env = dict(env, POOLBOARD_PROCESS=PROCESS_KIND[name], **(agent_env if name == "fleet" else {}))
            supervisor.start(name, expand(name, placeholders), child_env)
        if not wait_http(f"http://127.0.0.1:{PORT}/healthz", 60):
            log(f"the web server did not answer on port {PORT}; see {VAR / 'web.log'}")
        login = f"password {password!r}" if password else "the password set earlier (DJANGO_SUPERUSER_PASSWORD resets it)"
        print(f"\n  poolboard is running at http://127.0.0.1:{PORT}/\n  log in as {username!r} with {login}", flush=True)
        print(f"  Prometheus: http://127.0.0.1:{PROM_PORT}/   logs: {VAR}/", flush=True)
        print(f"  alert notifications: {VAR / 'webhook.jsonl'} (webhook) and {VAR / 'mail'}/ (email)", flush=True)
        print(f"  last week's capacity report (demo data): http://127.0.0.1:{PORT}/reports/, its email to "
              f"capacity-team@example.org in {VAR / 'mail'}/", flush=True)
        print("  Ctrl-C stops everything.\n", flush=True)
        while True:
            dead = supervisor.first_dead()
            if dead:
                log(f"{dead} exited with code {supervisor.children[dead].returncode}; see {VAR / (dead + '.log')}")
                return 1
            time.sleep(1)
    except KeyboardInterrupt:
        log("stopping")
        return 0
    finally:
        supervisor.stop_all()


if __name__ == "__main__":
    sys.exit(main())
