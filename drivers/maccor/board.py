"""One status poll per tester for all of its channels that wait on a block.

Each run talks to its channel over a connection of its own, so a station of 8 testers x
128 channels would ask "is my block done?" 1024 times a poll period with (4,7). The
tester answers that question for a range of channels in one (4,1) call: a
:class:`StatusBoard` (one per tester address and event loop, on a connection of its
own) asks it once a period for every channel with a waiter, and wakes a waiter as soon
as its channel's Stat says the block is no longer running. The channel then reads its
full (4,7) status once, as it would after a poll of its own.

A board that cannot reach the tester fails every waiter with the error it got, and
each channel handles that as it handles a lost link (safe state, clear error).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import Any, ClassVar

from labrig.drivers.capabilities import InstrumentError, InstrumentProtocolError
from labrig.drivers.transport import TransportClosed

__all__ = ["StatusBoard"]


class StatusBoard:
    """Shared (4,1) poller of one tester (see the module docstring)."""

    _boards: ClassVar[
        weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, StatusBoard]]
    ] = weakref.WeakKeyDictionary()

    def __init__(self, url: str, running: frozenset[int], options: dict[str, Any]) -> None:
        self.url = url
        self.running = running  # Stat codes that mean "the block is still going"
        self.options = options
        self.polls = 0
        self._waiters: dict[int, tuple[asyncio.Future[None], float]] = {}
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_tester(cls, url: str, running: frozenset[int], options: dict[str, Any]) -> StatusBoard:
        """The board of the tester at ``url`` in the running event loop."""
        loop = asyncio.get_running_loop()
        boards = cls._boards.setdefault(loop, {})
        board = boards.get(url)
        if board is None:
            board = boards[url] = cls(url, running, options)
        return board

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def wait_done(self, chan: int, period_s: float) -> None:
        """Return once the tester says ``chan`` is not running a block any more."""
        if chan in self._waiters:
            raise InstrumentError(f"{self.url}: channel {chan} is already waited on")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[chan] = (fut, period_s)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"maccor-board {self.url}")
        try:
            await fut
        finally:
            self._waiters.pop(chan, None)
            if not self._waiters and self._task is not None:
                task, self._task = self._task, None
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self) -> None:
        from .cycler import MaccorCycler

        loop = asyncio.get_running_loop()
        try:
            async with MaccorCycler.from_url(self.url, channels=1, **self.options) as cyc:
                while self._waiters:
                    t0 = loop.time()
                    chans = sorted(self._waiters)
                    rows = await cyc.statuses(chans[0], chans[-1] - chans[0] + 1)
                    self.polls += 1
                    self._settle(rows)
                    if not self._waiters:
                        break
                    period = min(p for _, p in self._waiters.values())
                    await asyncio.sleep(max(0.0, period - (loop.time() - t0)))
        except InstrumentError as exc:
            self._fail(exc)
        except OSError as exc:
            self._fail(TransportClosed(f"{self.url}: status poll failed: {exc}"))

    def _settle(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            chan, stat = row.get("Chan"), row.get("Stat")
            if not isinstance(chan, int) or not isinstance(stat, int):
                self._fail(
                    InstrumentProtocolError(
                        f"{self.url}: (4,1) row without integer Chan and Stat",
                        command=b"(4,1)",
                        reply=repr(row)[:300],
                    )
                )
                return
            waiter = self._waiters.get(chan)
            if waiter is not None and stat not in self.running and not waiter[0].done():
                waiter[0].set_result(None)

    def _fail(self, exc: InstrumentError) -> None:
        for fut, _ in self._waiters.values():
            if not fut.done():
                fut.set_exception(exc)
