"""MacNet JSON-RPC client: one TCP link, one request in flight, retries and reconnects."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from typing import Any

from labrig.drivers.capabilities import InstrumentProtocolError, InstrumentTimeout
from labrig.drivers.retry import NO_WAIT, Retry
from labrig.drivers.transport import Transport, TransportClosed

from .codec import TERMINATOR, MacNetError, decode_reply, encode_request

__all__ = ["MacNetClient"]

_OUT_OF_STEP = (InstrumentTimeout, InstrumentProtocolError, TransportClosed)


class MacNetClient:
    """Sends MacNet requests over a :class:`Transport` and returns checked results.

    A reply that is late, garbled or lost makes the client resynchronise by reconnecting
    (a late reply must never be taken for the answer to the next request). Idempotent
    requests (reads, and writes of a value) are then retried up to ``retries`` times;
    for the others the caller reads the instrument's state back and decides.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        timeout_s: float = 5.0,
        retries: int = 2,
        reconnect_s: float = 60.0,
    ) -> None:
        self.transport = transport
        self.timeout_s = timeout_s
        self.retries = retries
        self.reconnect_s = reconnect_s
        self.round_trips = 0
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    async def open(self, *, retry: bool = False) -> None:
        """Connect. A connect that times out (a tester or host busy with a station's
        worth of connections) is tried again, with the transport's backoff, for up to
        ``reconnect_s``; a refused one fails at once (nothing listens there), unless
        ``retry``: then any failure is tried again, like a lost link."""
        if retry:
            await self.transport.reconnect(self.reconnect_s)
            return
        policy = Retry(
            on=InstrumentTimeout, within_s=self.reconnect_s, backoff=self.transport.backoff
        )
        await policy.call(self.transport.open)

    async def close(self) -> None:
        await self.transport.close()

    async def call(
        self,
        fclass: int,
        fnum: int,
        chan: int,
        params: Mapping[str, Any] | None = None,
        *,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        """One request and its checked ``result`` (see :func:`decode_reply`)."""
        try:  # the first try without a policy: almost every request needs no other
            return await self._resynchronising(fclass, fnum, chan, params)
        except _OUT_OF_STEP:
            # another try only for an idempotent request, on a link that could be made again
            if not (idempotent and self.retries > 0 and self.transport.is_open):
                raise
        policy = Retry(
            on=_OUT_OF_STEP,
            when=lambda _: self.transport.is_open,
            attempts=self.retries,
            backoff=NO_WAIT,
        )
        return await policy.call(lambda: self._resynchronising(fclass, fnum, chan, params))

    async def _resynchronising(
        self, fclass: int, fnum: int, chan: int, params: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        try:
            async with self._lock:
                return await self._once(fclass, fnum, chan, params)
        except _OUT_OF_STEP:
            # the stream is out of step or gone: start again on a fresh link
            async with self._lock:
                await self.transport.reconnect(self.reconnect_s)
            raise

    async def _once(
        self, fclass: int, fnum: int, chan: int, params: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        if not self.transport.is_open:
            await self.transport.reconnect(self.reconnect_s)
        request_id = next(self._ids)
        frame = encode_request(fclass, fnum, chan, request_id, params)
        deadline = self.transport.deadline(self.timeout_s)
        self.round_trips += 1
        await self.transport.write(frame, deadline)
        reply = await self.transport.read_until(TERMINATOR, deadline)
        try:
            return decode_reply(
                reply,
                command=frame,
                fclass=fclass,
                fnum=fnum,
                chan=chan,
                request_id=request_id,
            )
        except MacNetError:
            raise
        except InstrumentProtocolError as exc:
            # keep the caller's view short: the command is the function, not the payload
            exc.command = frame[:300]
            raise
