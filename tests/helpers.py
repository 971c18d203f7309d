"""Helpers shared by tests."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from labrig.orchestrator.clock import new_virtual_loop

T = TypeVar("T")


def run_virtual_strict(coro: Coroutine[Any, Any, T], *, grace_s: float = 0.0) -> T:
    """Run ``coro`` on a virtual-time loop; fail if it leaves tasks behind."""

    async def wrapper() -> T:
        result = await coro
        await asyncio.sleep(0)
        me = asyncio.current_task()
        leaked = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        for t in leaked:
            t.cancel()
        assert not leaked, f"leaked tasks: {[(t.get_name(), t.get_coro()) for t in leaked]}"
        return result

    with asyncio.Runner(loop_factory=lambda: new_virtual_loop(grace_s)) as runner:
        return runner.run(wrapper())
