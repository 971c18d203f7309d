"""How the scheduler adapts a run's instruments without changing ``execute_run``.

``orchestrator.runner.execute_run`` opens a run's instruments through the module-level
``orchestrator.runner.bind_instruments``. The scheduler needs to add two things to those
bindings: its booking of shared instruments (``RunBindings.booking``) and the stale-data
watchdog around the cycler channel. Until ``execute_run`` takes such a hook as a
parameter, :func:`installed` replaces ``runner.bind_instruments`` with a wrapper that
looks up the adapter of the *current task* in a context variable, so runs of different
schedulers (or runs not started by a scheduler) never see each other's adapters. With no
adapter set, the wrapper is exactly the original.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from .. import runner
from ..executor import RunBindings
from ..station import Position, StationConfig

__all__ = ["BindingsAdapter", "adapting", "installed"]

BindingsAdapter = Callable[[RunBindings, Position], RunBindings]
"""Turns the bindings of one run (at ``position``) into the ones the run will use."""

_ADAPTER: contextvars.ContextVar[BindingsAdapter | None] = contextvars.ContextVar(
    "labrig_bindings_adapter", default=None
)
_original: Any = None
_users = 0


@contextlib.asynccontextmanager
async def _adapted_bind_instruments(
    station: StationConfig, position: Position, cell: Any, *, sim: bool, seed: int
) -> AsyncIterator[RunBindings]:
    adapter = _ADAPTER.get()
    async with _original(station, position, cell, sim=sim, seed=seed) as bindings:
        yield bindings if adapter is None else adapter(bindings, position)


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """Keep the adapting wrapper in place while any scheduler is open (reference-counted)."""
    global _original, _users
    if _users == 0:
        _original = runner.bind_instruments
        runner.bind_instruments = _adapted_bind_instruments
    _users += 1
    try:
        yield
    finally:
        _users -= 1
        if _users == 0:
            runner.bind_instruments = _original
            _original = None


@contextlib.contextmanager
def adapting(adapter: BindingsAdapter) -> Iterator[None]:
    """Use ``adapter`` for runs started from the current task (and tasks it creates)."""
    token = _ADAPTER.set(adapter)
    try:
        yield
    finally:
        _ADAPTER.reset(token)
