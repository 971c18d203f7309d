"""Serve a simulated Keithley 2450 on loopback TCP (its raw SCPI socket).

``async with serve_k2450(engine) as srv: srv.url`` gives
``visa://TCPIP::127.0.0.1::<port>::SOCKET`` for pyvisa-py. Program lines end ``\\n``;
every line with queries gets one reply line. Replies pass the fault manipulators
(:mod:`simulators.faults`, direction ``"tx"``); an infinite delay stalls the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

from labrig.simulators.engine import ChannelEngine
from labrig.simulators.maccor.serve import scaled_clock

from .smu import Smu2450

__all__ = ["ScpiServer", "serve_k2450"]

SCPI_PORT = 5025


class ScpiServer:
    """One SMU behind a TCP listener; connections are served one line at a time."""

    def __init__(self, smu: Smu2450, manipulators: Sequence[Any] = ()) -> None:
        self.smu = smu
        self.manipulators = list(manipulators)
        self.url = ""
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"visa://TCPIP::{host}::{self.port}::SOCKET"

    def _pieces(self, data: bytes) -> list[tuple[float, bytes | None]]:
        pieces: list[tuple[float, bytes | None]] = [(0.0, data)]
        for m in self.manipulators:
            nxt: list[tuple[float, bytes | None]] = []
            for delay, chunk in pieces:
                if chunk is None:
                    nxt.append((delay, None))
                    continue
                more = list(m.transform("tx", chunk))
                if more:
                    more[0] = (more[0][0] + delay, more[0][1])
                nxt.extend(more)
            pieces = nxt
        return pieces

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        stalled = False
        try:
            while raw := await reader.readline():
                line = raw.decode("ascii", "replace").strip()
                if not line:
                    continue
                reply = await self.smu.execute(line)
                if reply is None or stalled:
                    continue
                for delay, chunk in self._pieces(reply.encode("ascii") + b"\n"):
                    if math.isinf(delay):
                        stalled = True
                        break
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if chunk is None:
                        return
                    writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        await self.smu.aclose()


@contextlib.asynccontextmanager
async def serve_k2450(
    engine: ChannelEngine | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    manipulators: Sequence[Any] = (),
    speed: float = 1.0,
    cell: Any = None,
    noise: float = 1.0,
    seed: int = 0,
) -> AsyncIterator[ScpiServer]:
    """A simulated 2450 sourcing into ``engine``'s cell (a new cell when None)."""
    now = scaled_clock(speed)
    if engine is None:
        engine = ChannelEngine(cell, seed=seed, noise=noise, now=now())
    srv = ScpiServer(Smu2450(engine, now=now, speed=speed), manipulators)
    try:
        await srv.start(host, port)
        yield srv
    finally:
        await srv.aclose()
