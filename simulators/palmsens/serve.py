"""Serve a simulated EmStat on a pseudo-terminal (like its USB serial port) or loopback TCP.

``async with serve_palmsens(engine) as srv: srv.url`` gives
``serial:///dev/pts/N?baudrate=230400``. The device's output goes through fault
manipulators (:mod:`simulators.faults`, direction ``"tx"``) and its input through them
as ``"rx"``; a delay holds the stream behind it (a serial line keeps order) and an
infinite one stalls the line for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import select
import tty
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from labrig.simulators.engine import ChannelEngine
from labrig.simulators.faults import apply_manipulators
from labrig.simulators.maccor.serve import scaled_clock

from .device import MethodScriptDevice

__all__ = ["BAUDRATE", "MethodScriptServer", "serve_palmsens"]

BAUDRATE = 230400
#: loop turns to wait at most for written bytes to reach the pty's slave side
_SETTLE_TURNS = 5000


class _Pacer:
    """Delivers chunks at their due times, strictly in order (a serial line keeps order)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: Callable[[bytes], None]) -> None:
        self._loop = loop
        self._sink = sink
        self._queue: deque[tuple[float, bytes]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self.last_due = 0.0

    def put(self, due: float, chunk: bytes) -> None:
        self.last_due = due
        if not self._queue and due <= self._loop.time():
            self._sink(chunk)
            return
        self._queue.append((due, chunk))
        if self._timer is None:
            self._arm()

    def _arm(self) -> None:
        self._timer = self._loop.call_at(self._queue[0][0], self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._queue and self._queue[0][0] <= now:
            self._sink(self._queue.popleft()[1])
        if self._queue:
            self._arm()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()


class MethodScriptServer:
    """Owns the device's runner task, the pty (or TCP listener) and pending output."""

    def __init__(self, device: MethodScriptDevice, manipulators: Sequence[Any] = ()) -> None:
        self.device = device
        self.manipulators = list(manipulators)
        self.url = ""
        self._loop = asyncio.get_running_loop()
        self._runner: asyncio.Task[None] | None = None
        self._tx = _Pacer(self._loop, self._send)
        self._rx = _Pacer(self._loop, device.feed)
        self._stalled = False
        self._write: Any = None  # callable(bytes) for the current link
        self._master: int | None = None
        self._slave: int | None = None
        self._outbuf = bytearray()
        self._settling = False
        self._server: asyncio.Server | None = None
        self._conn_tasks: set[asyncio.Task[None]] = set()
        self._writer: asyncio.StreamWriter | None = None
        device.emit = self._emit

    # ------------------------------------------------------------------ output path
    def _pieces(self, direction: str, data: bytes) -> list[tuple[float, bytes | None]]:
        return apply_manipulators(self.manipulators, direction, data)

    def _emit(self, data: bytes) -> None:
        if self._stalled:
            return
        now = self._loop.time()
        due = max(now, self._tx.last_due)
        for delay, chunk in self._pieces("tx", data):
            due += delay
            if math.isinf(due):
                self._stalled = True  # the line hangs: nothing more comes out
                return
            if chunk is not None:  # a serial line cannot be hung up: drop is a no-op
                self._tx.put(due, chunk)

    def _send(self, chunk: bytes) -> None:
        if self._master is not None:
            self._outbuf += chunk
            self._flush()
        elif self._writer is not None and not self._writer.is_closing():
            self._writer.write(chunk)

    def _flush(self) -> None:
        assert self._master is not None
        while self._outbuf:
            try:
                n = os.write(self._master, self._outbuf)
            except BlockingIOError:
                self._loop.add_writer(self._master, self._flush)
                return
            except OSError:
                self._outbuf.clear()
                return
            del self._outbuf[:n]
        with contextlib.suppress(Exception):
            self._loop.remove_writer(self._master)
        self._hold_clock()

    def _hold_clock(self) -> None:
        """Keep the loop busy until written bytes surface on the terminal's slave side.

        The kernel moves pty bytes asynchronously; on a virtual clock an idle loop would
        otherwise jump past the reader's deadline before they arrive. Bounded by a count
        of loop turns, not by time.
        """
        if self._settling or self._slave is None:
            return
        self._settling = True
        slave = self._slave

        def check(turns: int) -> None:
            try:
                ready, _, _ = select.select([slave], [], [], 0)
            except (OSError, ValueError):
                ready = [slave]
            if ready or turns <= 0:
                self._settling = False
                return
            self._loop.call_soon(check, turns - 1)

        self._loop.call_soon(check, _SETTLE_TURNS)

    def _received(self, data: bytes) -> None:
        now = self._loop.time()
        due = max(now, self._rx.last_due)
        for delay, chunk in self._pieces("rx", data):
            due += delay
            if chunk is None or math.isinf(due):
                continue
            self._rx.put(due, chunk)

    # ------------------------------------------------------------------ links
    def start_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave

        def readable() -> None:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if data:
                self._received(data)

        self._loop.add_reader(master, readable)
        self.url = f"serial://{os.ttyname(slave)}?baudrate={BAUDRATE}"

    async def start_tcp(self, host: str, port: int) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._conn_tasks.add(task)
            if self._writer is not None:
                self._writer.close()  # one host at a time, like a serial port
            self._writer = writer
            try:
                while data := await reader.read(4096):
                    self._received(data)
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()
                if self._writer is writer:
                    self._writer = None
                self._conn_tasks.discard(task)

        self._server = await asyncio.start_server(handle, host, port)
        bound = self._server.sockets[0].getsockname()[1]
        self.url = f"tcp://{host}:{bound}"

    # ------------------------------------------------------------------ life cycle
    def start_runner(self) -> None:
        self._runner = self._loop.create_task(self.device.run(), name="palmsens-sim-runner")

    async def aclose(self) -> None:
        self._tx.cancel()
        self._rx.cancel()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._server is not None:
            self._server.close()
        tasks = list(self._conn_tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self._master is not None:
            self._loop.remove_reader(self._master)
            with contextlib.suppress(Exception):
                self._loop.remove_writer(self._master)
            os.close(self._master)
            self._master = None
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None


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
    try:
        if pty:
            srv.start_pty()
        else:
            await srv.start_tcp(host, port)
        srv.start_runner()
        yield srv
    finally:
        await srv.aclose()
