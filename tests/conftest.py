"""Strictness for the whole suite.

- warnings are errors (pyproject: filterwarnings = error)
- every test has a timeout (pyproject: timeout)
- an asyncio test that leaves a task running fails
- a test that leaves a non-daemon thread running fails
- dry runs use the virtual clock: tests call ``tests.helpers.run_virtual_strict``
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while True:
        leaked = [
            t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"test leaked threads: {[t.name for t in leaked]}"


@pytest.fixture(autouse=True)
async def _no_leaked_tasks(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    yield
    if not inspect.iscoroutinefunction(getattr(request, "function", None)):
        return
    current = asyncio.current_task()
    # give tasks that are finishing one turn of the loop
    await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for t in leaked:
        t.cancel()
    assert not leaked, f"test leaked tasks: {[t.get_name() for t in leaked]}"
