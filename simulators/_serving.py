"""The one shell that serves a simulated instrument on loopback TCP or a pseudo-terminal.

A family supplies only its *device*: ``open_session(link)`` gives a session for each
conversation (a TCP connection, or the line of a pseudo-terminal) whose
``received(data)`` gets the bytes the host sent and answers through ``link.send``.
Request/reply devices (``feed(data, now) -> replies``) plug in through :class:`Replying`.
The shell does the rest, alike for every family:

- **serving**: a TCP listener (hosts at once, or ``one_host`` at a time like a serial
  port), or a pseudo-terminal kept in raw mode whose slave path a driver opens as a
  serial port;
- **faults**: the manipulators of :mod:`simulators.faults` act on every link, ``"rx"``
  on what the host sent and ``"tx"`` on replies. Pieces are delivered in order at their
  due times (a line keeps order); an infinite delay stalls the link for good; a ``None``
  piece hangs up (a no-op on a pseudo-terminal: a serial line cannot be hung up);
- **bookkeeping**: connections counted, the live links, :meth:`SimServer.drop_connections`;
- **command log** (optional): a device calls :meth:`Link.log` for every command it
  receives; the server's :class:`~simulators.command_log.CommandLog` writes it with the
  time and the sender (the process at the other end of a loopback connection);
- **tasks**: background work (a device's runner, a session's command queue) starts with
  :meth:`SimServer.start` or :meth:`Link.start`, under the server's TaskGroup; a link's
  tasks end with the link, all of them with the server;
- **closing**: :meth:`SimServer.aclose` ends timers, tasks, connections, the listener and
  the file descriptors.

Time is the running loop's, so a virtual clock drives the faults' delays as it drives the
device and the driver. (On a pseudo-terminal, bytes cross the kernel through a worker; the
virtual clock looks at its terminals before each jump, so it never jumps past a deadline
while a request or reply is still in the kernel: nothing here has to hold it.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import time
import tty
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Literal, Protocol, Self, cast

from labrig.simulators.clock import Now
from labrig.simulators.command_log import CommandLog, loopback_peer_pid
from labrig.simulators.faults import Piece, ReplyFaults, apply_manipulators

__all__ = [
    "Device",
    "Link",
    "Manipulator",
    "ReplyDevice",
    "Replying",
    "ServedSimulator",
    "Session",
    "SimServer",
    "serve",
]

log = logging.getLogger("labrig.simulators")

_READ_SIZE = 1 << 16
_BACKLOG = 1024
#: looks up the process behind a loopback connection for the command logs
_LOOKUPS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labrig-sim-sender")


class Manipulator(Protocol):
    """The fault-injector shape of :mod:`simulators.faults`: pieces ``(delay_s, chunk)``
    to deliver instead of ``data``; a ``None`` chunk hangs up."""

    def transform(self, direction: Literal["tx", "rx"], data: bytes) -> Sequence[Piece]: ...


class Session(Protocol):
    """One conversation of a device: bytes from the host in; replies via the link."""

    def received(self, data: bytes) -> None: ...

    def closed(self) -> None: ...


class Device(Protocol):
    """What an instrument family supplies: a session per link."""

    def open_session(self, link: Link) -> Session: ...


class ReplyDevice(Protocol):
    """A sans-I/O request/reply device: received bytes in, the replies to send out."""

    def feed(self, data: bytes, now: float) -> list[bytes]: ...


class Replying:
    """A :class:`ReplyDevice` as a :class:`Device`; every link talks to the same device."""

    def __init__(self, device: ReplyDevice, now: Now | None = None) -> None:
        self.device = device
        self._now = now

    def open_session(self, link: Link) -> Session:
        return _ReplySession(self.device, link, self._now or link.now)


class _ReplySession:
    def __init__(self, device: ReplyDevice, link: Link, now: Now) -> None:
        self._device = device
        self._link = link
        self._now = now

    def received(self, data: bytes) -> None:
        for reply in self._device.feed(data, self._now()):
            self._link.send(reply)

    def closed(self) -> None:
        pass


class _Pacer:
    """Delivers pieces at their due times, strictly in order; an infinite delay stalls."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[bytes | None], None]):
        self._loop = loop
        self._deliver = deliver
        self._queue: deque[tuple[float, bytes | None]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._last_due = -math.inf
        self.stalled = False

    def put(self, pieces: Sequence[Piece]) -> None:
        if self.stalled:
            return
        due = max(self._loop.time(), self._last_due)
        for delay, chunk in pieces:
            due += delay
            if math.isinf(due):
                self.stalled = True  # the line hangs: nothing more comes through
                break
            self._queue.append((due, chunk))
            self._last_due = due
        self._pump()

    def _pump(self) -> None:
        now = self._loop.time()
        while self._queue and self._queue[0][0] <= now:
            self._deliver(self._queue.popleft()[1])
        if self._queue and self._timer is None:
            self._timer = self._loop.call_at(self._queue[0][0], self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._pump()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()


class Link:
    """One conversation as a device sees it: a TCP connection or a pseudo-terminal line."""

    def __init__(
        self,
        server: SimServer,
        number: int,
        write: Callable[[bytes], None],
        hang_up: Callable[[], None] | None,
        peer: tuple[str, int] | None = None,
        local: tuple[str, int] | None = None,
    ) -> None:
        self.server = server
        self.number = number
        self.peer = peer
        self._local = local
        self._sender: dict[str, Any] | None = None
        self._pending: list[tuple[float, str, int | None, dict[str, Any]]] = []
        self._lookup_started = False
        self._log_lock = threading.Lock()
        if server.command_log is not None and peer is not None:
            self._look_up(server.command_log)  # now, while the host that connected lives
        self._write = write
        self._hang_up = hang_up
        loop = asyncio.get_running_loop()
        self._tx = _Pacer(loop, self._deliver_tx)
        self._rx = _Pacer(loop, self._deliver_rx)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: Session | None = None
        self.is_closed = False

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    @property
    def sender(self) -> dict[str, Any] | None:
        """Who is at the other end: ``pid`` (None if unknown) and ``peer`` (an address);
        None while it is being looked up."""
        return self._sender

    def log(self, cmd: str, *, chan: int | None = None, **extra: Any) -> None:
        """Record one command received on this link (if the server keeps a log).

        The sending process is looked up in ``/proc`` once per link, in a worker thread
        (a busy machine's socket table takes a while to read; the simulator must answer
        meanwhile): commands received before it is known are written when it is, with
        their own times."""
        log_ = self.server.command_log
        if log_ is None:
            return
        with self._log_lock:
            if self._sender is not None:
                log_.write(cmd, chan=chan, **self._sender, **extra)
                return
            self._pending.append((time.time(), cmd, chan, extra))
        self._look_up(log_)

    def _look_up(self, log_: CommandLog) -> None:
        with self._log_lock:
            if self._lookup_started:
                return
            self._lookup_started = True
        if self.peer is None or self._local is None:  # a pseudo-terminal: the serial port's
            self._resolved(log_, {"pid": None, "peer": "pty" if self.peer is None else "?"})
            return
        peer, local = self.peer, self._local
        future = _LOOKUPS.submit(loopback_peer_pid, peer, local)
        future.add_done_callback(
            lambda f: self._resolved(
                log_, {"pid": f.result() if f.exception() is None else None,
                       "peer": f"{peer[0]}:{peer[1]}"}
            )
        )  # fmt: skip

    def _resolved(self, log_: CommandLog, sender: dict[str, Any]) -> None:
        with self._log_lock:
            self._sender = sender
            for t, cmd, chan, extra in self._pending:
                log_.write(cmd, chan=chan, t=t, **sender, **extra)
            self._pending.clear()

    def _open(self, device: Device) -> None:
        self._session = device.open_session(self)

    # ------------------------------------------------------------------ device side
    def send(self, data: bytes) -> None:
        """Send ``data`` to the host, through the ``"tx"`` manipulators."""
        if self.is_closed or not data:
            return
        self._tx.put(apply_manipulators(self.server.manipulators, "tx", data))

    def hang_up(self) -> None:
        """End this conversation from the instrument's side (no-op on a serial line)."""
        if self._hang_up is not None:
            self.close()

    def start(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """Run ``coro`` for as long as this link lives (see :meth:`SimServer.start`)."""
        task = self.server.start(coro, name=name, on_error=self.hang_up)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ transport side
    def _received(self, data: bytes) -> None:
        self.server.received += len(data)
        self._rx.put(apply_manipulators(self.server.manipulators, "rx", data))

    def _deliver_tx(self, chunk: bytes | None) -> None:
        if chunk is None:
            self.hang_up()
        elif chunk and not self.is_closed:
            self._write(chunk)

    def _deliver_rx(self, chunk: bytes | None) -> None:
        if chunk is None:
            self.hang_up()
        elif chunk and self._session is not None and not self.is_closed:
            try:
                self._session.received(chunk)
            except Exception:
                log.exception("simulated instrument failed on %r; hanging up", chunk[:80])
                self.hang_up()

    def close(self) -> None:
        """Forget the conversation: pending pieces, the session, its tasks, the line."""
        if self.is_closed:
            return
        self.is_closed = True
        self._tx.cancel()
        self._rx.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._session is not None:
            self._session.closed()
        self.server._forget(self)
        if self._hang_up is not None:
            self._hang_up()


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, server: SimServer) -> None:
        self._server = server
        self._link: Link | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's are not subclasses of asyncio.Transport)
        transport = cast(asyncio.Transport, transport)

        def write(data: bytes) -> None:
            if not transport.is_closing():
                transport.write(data)

        peer, local = transport.get_extra_info("peername"), transport.get_extra_info("sockname")
        self._link = self._server._new_link(
            write,
            transport.close,
            peer=tuple(peer[:2]) if isinstance(peer, tuple) else None,
            local=tuple(local[:2]) if isinstance(local, tuple) else None,
        )

    def data_received(self, data: bytes) -> None:
        if self._link is not None:
            self._link._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._link is not None:
            self._link.close()


class SimServer:
    """A simulated instrument being served; use as ``async with`` (or :func:`serve`).

    ``manipulators`` (a list, changeable while serving) act on every link. With
    ``one_host``, a new TCP connection ends the previous one, as on a serial port.
    ``command_log``: where devices record the commands they receive (None: nowhere).
    """

    def __init__(
        self,
        device: Device,
        *,
        manipulators: Sequence[Manipulator] = (),
        one_host: bool = False,
        command_log: CommandLog | None = None,
    ) -> None:
        self.device = device
        self.command_log = command_log
        self.manipulators: list[Manipulator] = list(manipulators)
        self.one_host = one_host
        self.address = ""
        self.host = ""
        self.port: int | None = None
        self.connections = 0
        self.received = 0
        self._links: list[Link] = []
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Server | None = None
        self._closers: list[Callable[[], None]] = []
        self._closed = False

    # ------------------------------------------------------------------ life cycle
    async def __aenter__(self) -> Self:
        if self._group is None and not self._closed:
            self._group = asyncio.TaskGroup()
            await self._group.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def listen_tcp(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve on ``host:port`` (0: a free port); ``address`` becomes ``tcp://...``."""
        loop = asyncio.get_running_loop()
        # a backlog for a station's worth of channels connecting at once (asyncio's
        # default of 100 drops the rest's handshakes while the simulator is busy)
        self._listener = await loop.create_server(
            lambda: _TcpProtocol(self), host, port, backlog=_BACKLOG
        )
        self.host = host
        self.port = int(self._listener.sockets[0].getsockname()[1])
        self.address = f"tcp://{host}:{self.port}"

    def open_pty(self, baudrate: int = 9600) -> None:
        """Serve on a new pseudo-terminal; ``address`` becomes ``serial://<slave>?...``."""
        loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation
        os.set_blocking(master, False)
        out = bytearray()

        def flush() -> None:
            while out:
                try:
                    n = os.write(master, out)
                except BlockingIOError:
                    loop.add_writer(master, flush)
                    return
                except OSError:
                    out.clear()
                    break
                del out[:n]
            with contextlib.suppress(Exception):
                loop.remove_writer(master)

        def write(data: bytes) -> None:
            out.extend(data)
            flush()

        link = self._new_link(write, None)

        def readable() -> None:
            try:
                data = os.read(master, _READ_SIZE)
            except OSError:
                return
            if data:
                link._received(data)

        loop.add_reader(master, readable)

        def close() -> None:
            loop.remove_reader(master)
            with contextlib.suppress(Exception):
                loop.remove_writer(master)
            os.close(master)
            os.close(slave)

        self._closers.append(close)
        self.address = f"serial://{os.ttyname(slave)}?baudrate={baudrate}"

    def start(
        self,
        coro: Coroutine[Any, Any, None],
        *,
        name: str,
        on_error: Callable[[], None] | None = None,
    ) -> asyncio.Task[None]:
        """Run ``coro`` under the server's TaskGroup until it ends or the server closes.

        A failure is logged (and ``on_error`` called), never left unseen.
        """
        if self._group is None or self._closed:
            coro.close()
            raise RuntimeError("the simulator is not serving (use it as 'async with')")
        task = self._group.create_task(self._guarded(coro, name, on_error), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    async def _guarded(
        coro: Coroutine[Any, Any, None], name: str, on_error: Callable[[], None] | None
    ) -> None:
        try:
            await coro
        except Exception:
            log.exception("simulator task %s failed", name)
            if on_error is not None:
                on_error()

    async def aclose(self) -> None:
        """Stop serving: links, pending pieces, tasks, the listener, file descriptors."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.close()
        for link in list(self._links):
            link.close()
        for task in list(self._tasks):
            task.cancel()
        group, self._group = self._group, None
        if group is not None:
            await group.__aexit__(None, None, None)
        if self._listener is not None:
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._listener.wait_closed()
        for close in self._closers:
            close()
        self._closers.clear()
        if self.command_log is not None:
            # the sender lookups under way end (and write what waited for them) first
            await asyncio.get_running_loop().run_in_executor(_LOOKUPS, lambda: None)

    # ------------------------------------------------------------------ links
    @property
    def links(self) -> tuple[Link, ...]:
        """The conversations open now."""
        return tuple(self._links)

    def drop_connections(self) -> None:
        """Hang up every TCP connection (a link failure seen from the instrument)."""
        for link in list(self._links):
            link.hang_up()

    def _new_link(
        self,
        write: Callable[[bytes], None],
        hang_up: Callable[[], None] | None,
        *,
        peer: tuple[str, int] | None = None,
        local: tuple[str, int] | None = None,
    ) -> Link:
        if self.one_host:
            for old in list(self._links):
                old.hang_up()
        self.connections += 1
        link = Link(self, self.connections, write, hang_up, peer, local)
        self._links.append(link)
        link._open(self.device)
        return link

    def _forget(self, link: Link) -> None:
        with contextlib.suppress(ValueError):
            self._links.remove(link)


async def serve(
    device: Device,
    *,
    transport: Literal["tcp", "pty"] = "tcp",
    baudrate: int = 9600,
    host: str = "127.0.0.1",
    port: int = 0,
    manipulators: Sequence[Manipulator] = (),
    one_host: bool = False,
) -> SimServer:
    """A :class:`SimServer` for ``device``, serving already; close it with ``aclose()``
    (or ``async with``) in the task that started it."""
    if transport not in ("tcp", "pty"):
        raise ValueError(f"transport must be 'tcp' or 'pty', got {transport!r}")
    server = SimServer(device, manipulators=manipulators, one_host=one_host)
    await server.__aenter__()
    try:
        if transport == "tcp":
            await server.listen_tcp(host, port)
        else:
            server.open_pty(baudrate)
    except BaseException:
        await server.aclose()
        raise
    return server


class ServedSimulator:
    """What a simulator factory returns: the server's ``address`` for a driver, its reply
    ``faults`` switches, and closing (also as ``async with``). Subclasses add the models."""

    def __init__(self, server: SimServer, faults: ReplyFaults) -> None:
        self.server = server
        self._faults = faults

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def faults(self) -> ReplyFaults:
        return self._faults

    async def aclose(self) -> None:
        await self.server.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
