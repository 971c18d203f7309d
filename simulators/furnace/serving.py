"""Serve a sans-I/O simulated device on loopback TCP or a pseudo-terminal.

A *device* turns received bytes into replies: ``feed(data, now) -> list[bytes]``. The
server hands every reply through :class:`ReplyFaults` - the byte manipulator that makes a
simulated instrument fall silent, babble garbage, truncate or corrupt a frame, or answer
late - so drivers meet faults on the wire, never through ``if testing`` branches.

Pseudo-terminals: the server keeps the master side and the slave open in raw mode (no
echo, no CR/LF translation); a client opens the slave path as a serial port. Time comes
from the running loop, so a virtual clock drives the device as it drives the client.
Used by the furnace, gas and chamber simulators alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import tty
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, Self

__all__ = ["Device", "Manipulator", "ReplyFaults", "SimServer", "serve"]


class Device(Protocol):
    def feed(self, data: bytes, now: float) -> list[bytes]: ...


@dataclass
class ReplyFaults:
    """Switches that manipulate replies on their way out (seeded, reproducible).

    ``silent``: drop every reply. ``garbage``: replace each reply by random bytes of the
    same length. ``truncate_to``: keep only the first n bytes. ``corrupt``: flip one bit of
    one byte. ``delay_s``: answer that much later (on the loop's clock). ``drop_next``:
    drop only the next n replies. ``extra``: further callables applied in order (return
    None to drop).
    """

    silent: bool = False
    garbage: bool = False
    truncate_to: int | None = None
    corrupt: bool = False
    delay_s: float = 0.0
    drop_next: int = 0
    seed: int = 0
    extra: list[Callable[[bytes], bytes | None]] = field(default_factory=list)
    dropped: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def clear(self) -> None:
        self.silent = self.garbage = self.corrupt = False
        self.truncate_to = None
        self.delay_s = 0.0
        self.drop_next = 0
        self.extra.clear()

    def apply(self, reply: bytes) -> bytes | None:
        if self.silent or self.drop_next > 0:
            self.drop_next = max(0, self.drop_next - 1)
            self.dropped += 1
            return None
        data = reply
        if self.garbage:
            data = self._rng.randbytes(len(reply))
        if self.truncate_to is not None:
            data = data[: self.truncate_to]
        if self.corrupt and data:
            i = self._rng.randrange(len(data))
            data = data[:i] + bytes([data[i] ^ (1 << self._rng.randrange(8))]) + data[i + 1 :]
        out: bytes | None = data
        for f in self.extra:
            if out is None:
                break
            out = f(out)
        return out


class _Sink(Protocol):
    def send(self, data: bytes) -> None: ...

    def drop(self) -> None: ...


class Manipulator(Protocol):
    """The shared fault-injector shape (``simulators.faults``): pieces ``(delay_s, chunk)``
    to deliver instead of ``data``; a ``None`` chunk drops the link."""

    def transform(
        self, direction: Literal["tx", "rx"], data: bytes
    ) -> Sequence[tuple[float, bytes | None]]: ...


class SimServer:
    """A running server. ``address`` is a URL for the driver side; ``aclose()`` stops it.

    ``faults`` are the simple switches; ``manipulators`` (``simulators.faults`` objects)
    are applied after them to every reply as direction ``"tx"``.
    """

    def __init__(self, device: Device, faults: ReplyFaults) -> None:
        self.device = device
        self.faults = faults
        self.manipulators: list[Manipulator] = []
        self.address = ""
        self._loop = asyncio.get_running_loop()
        self._timers: set[asyncio.TimerHandle] = set()
        self._closers: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.received = 0

    # ------------------------------------------------------------------ plumbing

    def _on_data(self, data: bytes, sink: _Sink) -> None:
        self.received += len(data)
        for reply in self.device.feed(data, self._loop.time()):
            out = self.faults.apply(reply)
            if not out:
                continue
            pieces: list[tuple[float, bytes | None]] = [(self.faults.delay_s, out)]
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
            due = 0.0
            for delay, chunk in pieces:
                due += delay
                if math.isinf(due):
                    break  # a stall: never delivered
                if due > 0:
                    self._send_later(due, chunk, sink)
                else:
                    self._deliver(chunk, sink)

    def _deliver(self, chunk: bytes | None, sink: _Sink) -> None:
        if chunk is None:
            sink.drop()
        elif chunk:
            sink.send(chunk)

    def _send_later(self, delay: float, chunk: bytes | None, sink: _Sink) -> None:
        def later() -> None:
            self._timers.discard(handle)
            self._deliver(chunk, sink)

        handle = self._loop.call_later(delay, later)
        self._timers.add(handle)

    async def _start_tcp(self, host: str, port: int) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)

            class Sink:
                def send(self, data: bytes) -> None:
                    if not writer.is_closing():
                        writer.write(data)

                def drop(self) -> None:
                    writer.close()

            try:
                while data := await reader.read(4096):
                    self._on_data(data, Sink())
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()
                self._tasks.discard(task)

        self._server = await asyncio.start_server(handle, host, port)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"tcp://{host}:{port}"

    def _start_pty(self, baudrate: int) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        path = os.ttyname(slave)

        class Sink:
            def send(self, data: bytes) -> None:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.write(master, data)

            def drop(self) -> None:
                pass  # a serial line cannot be hung up; the manipulator's drop is a no-op

        sink = Sink()

        def readable() -> None:
            try:
                data = os.read(master, 4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if data:
                self._on_data(data, sink)

        self._loop.add_reader(master, readable)

        def close() -> None:
            self._loop.remove_reader(master)
            os.close(master)
            os.close(slave)

        self._closers.append(close)
        self.address = f"serial://{path}?baudrate={baudrate}"

    async def aclose(self) -> None:
        """Stop serving: cancel pending delayed replies, close connections and fds."""
        for h in list(self._timers):
            h.cancel()
        self._timers.clear()
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        for close in self._closers:
            close()
        self._closers.clear()

    async def __aenter__(self) -> SimServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def serve(
    device: Device,
    *,
    transport: Literal["tcp", "pty"] = "tcp",
    baudrate: int = 9600,
    faults: ReplyFaults | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> SimServer:
    """Start serving ``device``; returns the server with its ``address``.

    TCP listens on ``host:port`` (0: a free port).
    """
    server = SimServer(device, faults if faults is not None else ReplyFaults())
    if transport == "tcp":
        await server._start_tcp(host, port)
    elif transport == "pty":
        server._start_pty(baudrate)
    else:
        raise ValueError(f"transport must be 'tcp' or 'pty', got {transport!r}")
    return server


class ServedSimulator:
    """What a simulator factory returns: the server's ``address`` for a driver, its
    reply ``faults``, and closing (also as ``async with``). Subclasses add the models."""

    def __init__(self, server: SimServer) -> None:
        self.server = server

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def faults(self) -> ReplyFaults:
        return self.server.faults

    async def aclose(self) -> None:
        await self.server.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
