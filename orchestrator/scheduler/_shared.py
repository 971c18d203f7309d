"""Instruments several positions share, opened once for all the runs using them.

A potentiostat behind a multiplexer (two positions with ``impedance: eis/0``) is one
instrument on one line: a serial port takes one opener, and a second connection to the
same unit resets the first (a PalmSens answers the newest host only). The scheduler
therefore opens such an instrument once, in turn (one open at a time per instrument),
hands the same channels to every run on it (the :class:`~._booking.Booker` makes them take
turns), and closes it when the last of those runs has ended.

Each shared instrument is held open by a task of the scheduler's TaskGroup: drivers that
own tasks (block supervisors) are entered and left in one task, whichever run came first
or leaves last. A failed open is that run's error only; the next run tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from ..instruments import InstrumentUse, Opened, Source
from ..station import StationConfig

__all__ = ["SharedInstruments", "Spawn", "shared_instrument_names"]

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None], str], object]
"""``spawn(coro, name)``: start a task the scheduler's TaskGroup owns."""


def shared_instrument_names(station: StationConfig) -> frozenset[str]:
    """Instruments whose channel more than one position references (a multiplexer)."""
    seen: dict[str, str] = {}
    shared: set[str] = set()
    for position in station.positions:
        for _, _, ref in position.refs():
            owner = seen.setdefault(ref, position.name)
            if owner != position.name:
                shared.add(station.resolve(ref)[0])
    return frozenset(shared)


@dataclass(eq=False)
class _Held:
    """One shared instrument while some run uses it."""

    users: int = 0
    opened: Opened | None = None
    error: BaseException | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class SharedInstruments:
    """Opens the station's shared instruments once; see the module docstring.

    ``spawn`` starts a task in the owner's TaskGroup (the scheduler's).
    """

    def __init__(self, station: StationConfig, spawn: Spawn) -> None:
        self.names = shared_instrument_names(station)
        self._spawn = spawn
        self._held: dict[str, _Held] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.opens = 0  # how many times a shared instrument was opened (tests, bench)

    def source(self, inner: Source) -> Source:
        """``inner`` with the shared instruments taken from here."""
        if not self.names:
            return inner
        return _PooledSource(self, inner)

    async def enter(self, stack: contextlib.AsyncExitStack, use: InstrumentUse,
                    inner: Source) -> Opened:  # fmt: skip
        """The shared instrument ``use`` names, opened if no run has it open; it stays
        open until ``stack`` (the run's) closes and no other run uses it."""
        lock = self._locks.setdefault(use.name, asyncio.Lock())
        async with lock:  # in turn: one open of this instrument at a time
            held = self._held.get(use.name)
            if held is None or held.done.is_set():
                held = _Held()
                self._held[use.name] = held
                self.opens += 1
                self._spawn(self._hold(held, use, inner), f"labrig shared {use.name}")
                try:
                    await held.ready.wait()
                except asyncio.CancelledError:
                    if held.users == 0:  # nobody else came for it: let it close
                        self._held.pop(use.name, None)
                        held.release.set()
                    raise
            if held.error is not None or held.opened is None:
                err = held.error
                self._held.pop(use.name, None)
                await held.done.wait()
                raise err if err is not None else RuntimeError(f"{use.name}: not opened")
            held.users += 1
        stack.push_async_callback(self._leave, use.name, held)
        return held.opened

    async def _leave(self, name: str, held: _Held) -> None:
        held.users -= 1
        if held.users > 0:
            return
        if self._held.get(name) is held:
            del self._held[name]
        held.release.set()
        await held.done.wait()

    async def _hold(self, held: _Held, use: InstrumentUse, inner: Source) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    held.opened = await inner.open(stack, use)
                except Exception as exc:  # the opening run's error, not the scheduler's
                    held.error = exc
                    return
                finally:
                    held.ready.set()
                await held.release.wait()
        except Exception as exc:  # closing failed: log it; the runs are over
            log.error("closing shared %s failed: %s", use.name, exc)
        finally:
            held.ready.set()
            held.done.set()


class _PooledSource:
    def __init__(self, pool: SharedInstruments, inner: Source) -> None:
        self._pool = pool
        self._inner = inner

    async def open(self, stack: contextlib.AsyncExitStack, use: InstrumentUse) -> Opened:
        if use.name in self._pool.names:
            return await self._pool.enter(stack, use, self._inner)
        return await self._inner.open(stack, use)
