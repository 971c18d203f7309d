"""Serve a simulated EmStat on a pseudo-terminal (like its USB serial port) or loopback TCP.

``async with serve_palmsens(engine) as srv: srv.url`` gives
``serial:///dev/pts/N?baudrate=230400``. Serving, the fault manipulators
(:mod:`simulators.faults`: ``"tx"`` on the device's output, ``"rx"`` on its input; a
delay holds the stream behind it, an infinite one stalls the line for good) and the
device's runner task are the shared shell's (:mod:`simulators._serving`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from labrig.simulators._serving import Link, SimServer
from labrig.simulators.clock import scaled_clock
from labrig.simulators.engine import ChannelEngine

from .device import MethodScriptDevice

__all__ = ["BAUDRATE", "MethodScriptServer", "serve_palmsens"]

BAUDRATE = 230400


class _Line:
    """The EmStat's serial line: one host at a time; the device's output goes to the
    host that holds the line (nowhere when none does)."""

    def __init__(self, device: MethodScriptDevice) -> None:
        self.device = device
        self.link: Link | None = None
        device.emit = self._emit

    def open_session(self, link: Link) -> _LineSession:
        self.link = link
        return _LineSession(self, link)

    def _emit(self, data: bytes) -> None:
        if self.link is not None:
            self.link.send(data)


class _LineSession:
    def __init__(self, line: _Line, link: Link) -> None:
        self._line = line
        self._link = link

    def received(self, data: bytes) -> None:
        self._line.device.feed(data)

    def closed(self) -> None:
        if self._line.link is self._link:
            self._line.link = None


class MethodScriptServer:
    """The served device: ``url`` for the driver, ``device`` for inspection, ``server``
    (the shell) for connections and ``manipulators``."""

    def __init__(self, device: MethodScriptDevice, manipulators: Sequence[Any] = ()) -> None:
        self.device = device
        self.server = SimServer(_Line(device), manipulators=manipulators, one_host=True)

    @property
    def url(self) -> str:
        return self.server.address

    @property
    def manipulators(self) -> list[Any]:
        return self.server.manipulators


@contextlib.asynccontextmanager
async def serve_palmsens(
    engine: ChannelEngine | None = None,
    *,
    pty: bool = True,
    host: str = "127.0.0.1",
    port: int = 0,
    manipulators: Sequence[Any] = (),
    speed: float = 1.0,
    cell: Any = None,
    noise: float = 1.0,
    seed: int = 0,
) -> AsyncIterator[MethodScriptServer]:
    """A simulated EmStat measuring ``engine``'s cell (a new cell when None).

    Pass the engine that backs a cycler channel to measure the same cell from both.
    """
    now = scaled_clock(speed)
    if engine is None:
        engine = ChannelEngine(cell, seed=seed, noise=noise, now=now())
    device = MethodScriptDevice(engine, now=now, speed=speed)
    srv = MethodScriptServer(device, manipulators)
    async with srv.server:
        if pty:
            srv.server.open_pty(BAUDRATE)
        else:
            await srv.server.listen_tcp(host, port)
        srv.server.start(device.run(), name="palmsens-sim-runner")
        yield srv
