"""Serve a simulated Keithley 2450 on loopback TCP (its raw SCPI socket).

``async with serve_k2450(engine) as srv: srv.url`` gives
``visa://TCPIP::127.0.0.1::<port>::SOCKET`` for pyvisa-py. Program lines end ``\\n``;
every line with queries gets one reply line, lines of one connection run in order.
Serving, the fault manipulators (:mod:`simulators.faults`, ``"tx"`` on replies; an
infinite delay stalls the socket) and the tasks are the shared shell's
(:mod:`simulators._serving`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from labrig.simulators._serving import Link, SimServer
from labrig.simulators.clock import scaled_clock
from labrig.simulators.engine import ChannelEngine

from .smu import Smu2450

__all__ = ["ScpiServer", "serve_k2450"]

SCPI_PORT = 5025
#: a program line longer than this is not a host talking: the line is dropped
MAX_LINE = 1 << 16


class _ScpiSession:
    """One connection: lines in, run one after another, one reply line per query line."""

    def __init__(self, smu: Smu2450, link: Link) -> None:
        self._smu = smu
        self._link = link
        self._buf = bytearray()
        self._lines: asyncio.Queue[str] = asyncio.Queue()
        link.start(self._run(), name=f"k2450-sim-connection-{link.number}")

    def received(self, data: bytes) -> None:
        self._buf += data
        while (i := self._buf.find(b"\n")) >= 0:
            line = bytes(self._buf[:i]).decode("ascii", "replace").strip()
            del self._buf[: i + 1]
            if line:
                self._lines.put_nowait(line)
        if len(self._buf) > MAX_LINE:
            self._buf.clear()

    async def _run(self) -> None:
        while True:
            reply = await self._smu.execute(await self._lines.get())
            if reply is not None:
                self._link.send(reply.encode("ascii") + b"\n")

    def closed(self) -> None:
        pass


class _ScpiDevice:
    def __init__(self, smu: Smu2450) -> None:
        self.smu = smu

    def open_session(self, link: Link) -> _ScpiSession:
        return _ScpiSession(self.smu, link)


class ScpiServer:
    """One SMU behind a TCP listener (the shell); ``url`` is its VISA resource."""

    def __init__(self, smu: Smu2450, manipulators: Sequence[Any] = ()) -> None:
        self.smu = smu
        self.server = SimServer(_ScpiDevice(smu), manipulators=manipulators)
        smu.spawn = self.server.start  # the SMU's trigger model runs under the shell

    @property
    def port(self) -> int:
        return self.server.port or 0

    @property
    def url(self) -> str:
        return f"visa://TCPIP::{self.server.host}::{self.port}::SOCKET"

    @property
    def manipulators(self) -> list[Any]:
        return self.server.manipulators


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
    async with srv.server:
        await srv.server.listen_tcp(host, port)
        try:
            yield srv
        finally:
            await srv.smu.aclose()
