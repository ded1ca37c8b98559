"""The `make demo` the end-to-end tests share (tests/demo/running_demo.py): started in the
background once the session's tests are known, so the minutes it needs pass while the rest of the
suite runs; stopped by the last of those tests, and in any case when the session ends."""

from __future__ import annotations

import pytest

from tests.demo import running_demo as demo_process


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if any("running_demo" in getattr(item, "fixturenames", ()) for item in session.items):
        demo_process.start_once()


def pytest_sessionfinish(session: pytest.Session) -> None:
    demo_process.close()


@pytest.fixture(scope="module")
def running_demo():
    demo = demo_process.start_once()
    demo.wait_ready()
    yield demo
    demo_process.close()
