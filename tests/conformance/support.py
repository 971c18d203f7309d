"""Running a conformance check on the virtual clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tests.helpers import run_virtual_strict

from .implementations import Impl, Running

T = TypeVar("T")


def run(impl: Impl, body: Callable[[Running], Awaitable[T]]) -> T:
    """Start ``impl``, run ``body`` with it on a virtual-time loop, stop it; fail on
    leaked tasks."""

    async def main() -> T:
        async with impl.start() as running:
            return await body(running)

    return run_virtual_strict(main(), grace_s=impl.grace_s)


def run_connected(impl: Impl, body: Callable[[Any], Awaitable[T]]) -> T:
    """As :func:`run`, with one host connection to the instrument."""

    async def with_connection(running: Running) -> T:
        async with running.connect() as instrument:
            return await body(instrument)

    return run(impl, with_connection)
