"""poolboard.agent in a service that has neither Django nor Celery, and its stacks across processes."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pg import HOST, PORT, SUPERUSER

ROOT = Path(__file__).resolve().parents[2]

# A service's process: Django and Celery cannot be imported at all, the agent finds a leak.
SERVICE = """
import importlib.abc, json, sys, time

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in ("django", "celery"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NotInstalled())

import sqlalchemy
from prometheus_client import CollectorRegistry
from poolboard.agent import Agent

engine = sqlalchemy.create_engine(sys.argv[1], pool_logging_name="main")
agent = Agent("billing", registry=CollectorRegistry(), threshold_s=0.1)
agent.instrument_sqlalchemy(engine)

def leaky_invoice_export():
    connection = engine.connect()
    connection.exec_driver_sql("SELECT 1")
    return connection

leaked = leaky_invoice_export()
time.sleep(0.2)
[report] = agent.held_reports()
print(json.dumps({
    "report": report,
    "loaded": sorted({m.partition(".")[0] for m in sys.modules} & {"django", "celery"}),
}))
leaked.close()
"""


AGENT_FILES = sorted((ROOT / "poolboard" / "agent").glob("*.py"))
# Imported lazily, inside the function that needs it: the agent runs where they may be missing.
OPTIONAL = ("prometheus_client", "sqlalchemy", "psycopg_pool")


@pytest.mark.parametrize("path", AGENT_FILES, ids=lambda p: p.name)
def test_agent_modules_import_only_the_standard_library_at_the_top(path: Path) -> None:
    tree = ast.parse(path.read_text())
    stdlib = set(sys.stdlib_module_names)
    top_level = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            top_level.append(node.module)
    offenders = [
        name for name in top_level
        if name.partition(".")[0] not in stdlib and name != "__future__" and not name.startswith("poolboard.agent")
    ]
    assert offenders == [], f"{path.name} imports {offenders} at module level"
    everything = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    everything += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    assert all(name.partition(".")[0] in {*stdlib, "__future__", "poolboard", *OPTIONAL} for name in everything), everything
    assert not any(name.startswith("poolboard.") and not name.startswith("poolboard.agent") for name in everything)


def run_service(database: str, hash_seed: str) -> dict:
    url = f"postgresql+psycopg://{SUPERUSER}@{HOST}:{PORT}/{database}"
    done = subprocess.run(
        [sys.executable, "-c", SERVICE, url],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": hash_seed},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow  # fresh Python processes with real pools: 1.5 s
def test_it_works_without_django_or_celery_and_fingerprints_alike_in_every_process(app_database) -> None:
    first, second = run_service(app_database, "1"), run_service(app_database, "2")

    assert first["loaded"] == []
    report = first["report"]
    assert report["function"] == "__main__.leaky_invoice_export"
    assert report["count"] == 1 and report["oldest_hold_s"] >= 0.1
    assert report["stack"].endswith("in leaky_invoice_export\n")
    # Another process (other pid, other hash seed) checking out at the same line: the same stack.
    assert second["report"]["fingerprint"] == report["fingerprint"]
    assert second["report"]["stack"] == report["stack"]


def test_it_refuses_what_it_cannot_follow(make_agent, make_pool) -> None:
    from psycopg_pool import AsyncConnectionPool

    agent = make_agent()
    pool = make_pool("main")
    agent.instrument_psycopg_pool(pool)
    with pytest.raises(ValueError, match="already instrumented"):
        agent.instrument_psycopg_pool(pool)
    with pytest.raises(TypeError, match="AsyncConnectionPool is not supported"):
        agent.instrument_psycopg_pool(AsyncConnectionPool("", open=False), pool_name="async")
    with pytest.raises(ValueError, match="service must be a name"):
        make_agent("")


def test_closing_the_agent_leaves_the_pool_as_it_was(make_agent, make_pool) -> None:
    pool = make_pool("main")
    agent = make_agent()
    agent.instrument_psycopg_pool(pool)
    agent.close()
    assert "getconn" not in vars(pool) and "putconn" not in vars(pool)
    with pool.connection() as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_a_forked_child_starts_clean_under_its_own_pid(make_agent, make_engine) -> None:
    import os

    engine = make_engine("main")
    agent = make_agent(threshold_s=0.01)
    agent.instrument_sqlalchemy(engine)
    connection = engine.connect()
    try:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: the parent's checkout is not its own
            os.write(write, json.dumps([agent.instance, agent.held_reports()]).encode())
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        with os.fdopen(read) as pipe:
            child_instance, child_reports = json.loads(pipe.read())
        assert len(agent.held_reports()) == 1  # still the parent's
    finally:
        connection.close()
    assert child_instance.endswith(f":{pid}") and agent.instance.endswith(f":{os.getpid()}")
    assert child_reports == []
