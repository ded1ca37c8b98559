"""Real pools against a throwaway PostgreSQL database, and agents that are closed after each test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import sqlalchemy
from prometheus_client import CollectorRegistry
from psycopg_pool import ConnectionPool
from sqlalchemy.pool import QueuePool

from poolboard.agent import Agent
from tests.pg import HOST, PORT, SUPERUSER, throwaway_database

APP_DATABASE = f"pb_agent_app_{os.getpid()}"


@pytest.fixture(scope="module")
def app_database() -> Iterator[str]:
    """The database the instrumented "application" pools connect to."""
    with throwaway_database(APP_DATABASE) as name:
        yield name


@pytest.fixture
def make_engine(app_database):
    """make_engine(name) -> a SQLAlchemy engine with a QueuePool of 3, disposed after the test."""
    engines: list[sqlalchemy.Engine] = []

    def make(name: str = "main") -> sqlalchemy.Engine:
        url = sqlalchemy.URL.create("postgresql+psycopg", username=SUPERUSER, host=HOST, port=PORT, database=app_database)
        engine = sqlalchemy.create_engine(url, poolclass=QueuePool, pool_size=3, max_overflow=0, pool_timeout=5, pool_logging_name=name)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def make_pool(app_database):
    """make_pool(name) -> an open psycopg_pool ConnectionPool of 3, closed after the test."""
    pools: list[ConnectionPool] = []

    def make(name: str = "main") -> ConnectionPool:
        pool = ConnectionPool(
            f"host={HOST} port={PORT} user={SUPERUSER} dbname={app_database}", min_size=1, max_size=3, timeout=5, name=name, open=True
        )
        pool.wait(timeout=10)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close(timeout=2)


@pytest.fixture
def make_agent():
    """make_agent(service, **options) -> an Agent with its own registry, closed after the test."""
    agents: list[Agent] = []

    def make(service: str = "billing", **options) -> Agent:
        options.setdefault("registry", CollectorRegistry())
        options.setdefault("endpoint", "")
        options.setdefault("token", "")
        agent = Agent(service, **options)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()
