"""docker-compose.yml runs the same processes as `make demo` (Docker is not on our machines)."""

from __future__ import annotations

from pathlib import Path

import yaml

from poolboard.processes import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())

# Values the compose network uses where make demo uses loopback and local paths.
COMPOSE_VALUES = {"POOLBOARD_BIND": "0.0.0.0:8000", "POOLBOARD_VAR": "/tmp", "DEMO_BASE_PORT": "9201"}


def compose_value(part: str) -> str:
    for key, value in COMPOSE_VALUES.items():
        part = part.replace("${" + key + "}", value)
    return part


def test_compose_has_the_whole_stack() -> None:
    assert {"postgres", "redis", "prometheus", "web", "worker", "beat", "fleet"} <= set(COMPOSE["services"])


def test_compose_commands_match_what_make_demo_runs() -> None:
    for name, argv in COMMANDS.items():
        assert COMPOSE["services"][name]["command"] == [compose_value(p) for p in argv], name


def test_compose_points_every_poolboard_process_at_the_stack() -> None:
    for name in ("web", "worker", "beat", "fleet"):
        env = COMPOSE["services"][name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["PROMETHEUS_URL"] == "http://prometheus:9090"


def test_make_demo_starts_every_process_compose_defines() -> None:
    script = (ROOT / "scripts" / "demo.py").read_text()
    assert 'for name in ("fleet", "worker", "beat", "web")' in script
    assert set(COMMANDS) == {"fleet", "worker", "beat", "web"}
