"""One status poll per tester for all of its channels that wait on a block.

Each run talks to its channel over a connection of its own, so a station of 8 testers x
128 channels would ask "is my block done?" 1024 times a poll period with (4,7). The
tester answers that question for a range of channels in one (4,1) call: a
:class:`StatusBoard` (one per tester address and event loop, on a connection of its
own) asks it once a period for every channel with a waiter, and wakes a waiter as soon
as its channel's Stat says the block is no longer running. The channel then reads its
full (4,7) status once, as it would after a poll of its own.

The board starts no task of its own: one of the waiting channels polls for all of them
inside its own ``wait_done`` call, and when its block ends (or it is cancelled) another
waiter takes over on the same schedule. The poll therefore lives exactly as long as
somebody waits, and is ended by whoever owns the waiting task.

A board that cannot reach the tester fails every waiter with the error it got, and
each channel handles that as it handles a lost link (safe state, clear error).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import weakref
from typing import Any, ClassVar

from labrig.drivers.capabilities import InstrumentError, InstrumentProtocolError
from labrig.drivers.transport import TransportClosed, transport_from_url

from .client import MacNetClient
from .codec import decode_statuses

__all__ = ["StatusBoard"]


class StatusBoard:
    """Shared (4,1) poller of one tester (see the module docstring).

    ``options`` are the link settings of :class:`~.client.MacNetClient` (``timeout_s``,
    ``retries``, ``reconnect_s``) for the board's own connection.
    """

    _boards: ClassVar[
        weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, StatusBoard]]
    ] = weakref.WeakKeyDictionary()

    def __init__(self, url: str, running: frozenset[int], options: dict[str, Any]) -> None:
        self.url = url
        self.running = running  # Stat codes that mean "the block is still going"
        self.options = options
        self.polls = 0
        self._waiters: dict[int, tuple[asyncio.Future[None], float]] = {}
        self._poller: int | None = None  # the channel whose waiter polls now
        self._vacancy: asyncio.Future[None] | None = None  # done when that poller leaves
        self._client: MacNetClient | None = None
        self._next_poll = -math.inf

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

    @property
    def poller(self) -> int | None:
        """The channel whose waiter polls for all of them now (None: nobody waits)."""
        return self._poller

    async def wait_done(self, chan: int, period_s: float) -> None:
        """Return once the tester says ``chan`` is not running a block any more."""
        if chan in self._waiters:
            raise InstrumentError(f"{self.url}: channel {chan} is already waited on")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[chan] = (fut, period_s)
        try:
            while not fut.done():
                if self._poller is None:
                    await self._poll_until(chan, fut)
                else:
                    assert self._vacancy is not None
                    await asyncio.wait((fut, self._vacancy), return_when=asyncio.FIRST_COMPLETED)
            fut.result()
        finally:
            self._waiters.pop(chan, None)
            if fut.done() and not fut.cancelled():
                fut.exception()  # seen: a cancelled waiter's failure is not "never retrieved"
            fut.cancel()
            if not self._waiters:
                self._next_poll = -math.inf  # the next waiter polls at once
                await self._disconnect()

    async def _poll_until(self, chan: int, fut: asyncio.Future[None]) -> None:
        """Poll for every waiter, on the board's schedule, until ``fut`` is settled."""
        loop = asyncio.get_running_loop()
        self._poller = chan
        self._vacancy = loop.create_future()
        finished = False
        try:
            while not fut.done():
                await asyncio.sleep(max(0.0, self._next_poll - loop.time()))
                t0 = loop.time()
                await self._poll_once()
                period = min((p for _, p in self._waiters.values()), default=0.0)
                self._next_poll = t0 + period
            finished = True
        finally:
            if not finished:
                # cancelled mid-call: the link may hold half a reply; start the next
                # poller on a fresh one
                client, self._client = self._client, None
                if client is not None:
                    with contextlib.suppress(InstrumentError, OSError):
                        await client.close()
            self._poller = None
            vacancy, self._vacancy = self._vacancy, None
            if vacancy is not None and not vacancy.done():
                vacancy.set_result(None)

    async def _poll_once(self) -> None:
        chans = sorted(self._waiters)
        try:
            if self._client is None:
                client = MacNetClient(transport_from_url(self.url), **self.options)
                # every waiter fails if the board cannot connect: a busy tester or
                # host gets ``reconnect_s`` to answer
                await client.open(retry=True)
                self._client = client
            result = await self._client.call(4, 1, chans[0], {"Len": chans[-1] - chans[0] + 1})
            rows = decode_statuses(result, b"(4,1)")
        except InstrumentError as exc:
            self._fail(exc)
        except OSError as exc:
            self._fail(TransportClosed(f"{self.url}: status poll failed: {exc}"))
        else:
            self.polls += 1
            self._settle(rows)
            return
        await self._disconnect()

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

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
