"""The long-running processes of a poolboard deployment, named once.

`make demo` (scripts/demo.py) and docker-compose.yml run exactly these commands; a
test checks that the two agree.
"""

from __future__ import annotations

WEB_WORKERS = 2
# Threads per worker: a page mostly waits on PostgreSQL, so with 50 viewers polling on a busy
# 2-core host 4 threads raised throughput from 17 to 22.6 requests/s and cut p95 from 2.7 s to
# 0.9 s (bench_load). At most WEB_WORKERS × WEB_THREADS connections to poolboard's database.
WEB_THREADS = 4

COMMANDS: dict[str, list[str]] = {
    "web": [
        "gunicorn", "poolboard.wsgi:application",
        "--bind", "${POOLBOARD_BIND}",
        "--workers", str(WEB_WORKERS),
        "--threads", str(WEB_THREADS),
        "--timeout", "30",
        "--access-logfile", "-",
    ],
    "worker": ["celery", "-A", "poolboard", "worker", "--loglevel", "INFO", "--concurrency", "2"],
    # Exactly one beat: a second scheduler would publish every tick twice (the
    # (source, slot) uniqueness would still collect once).
    "beat": ["celery", "-A", "poolboard", "beat", "--loglevel", "INFO", "--schedule", "${POOLBOARD_VAR}/celerybeat-schedule"],
    "fleet": ["python", "-m", "poolboard.demo", "--base-port", "${DEMO_BASE_PORT}"],
}

# Which POOLBOARD_PROCESS (and so which application_name) each process runs as.
PROCESS_KIND = {"web": "web", "worker": "worker", "beat": "beat", "fleet": "demo"}


def expand(name: str, env: dict[str, str]) -> list[str]:
    """The command with ${VAR} placeholders filled from `env`."""
    out = []
    for part in COMMANDS[name]:
        for key, value in env.items():
            part = part.replace("${" + key + "}", value)
        out.append(part)
    return out
