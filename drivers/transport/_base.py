"""The abstract byte transport every driver talks through.

A transport moves bytes to and from one endpoint under a deadline. Deadlines are absolute
times on the running loop's clock (``loop.time()``), so they stay right on the virtual
clock of a dry run; :meth:`Transport.deadline` turns a timeout into one.

Fault injection: every transport accepts *manipulators*, objects with one method

    transform(direction: "tx" | "rx", data: bytes) -> Sequence[tuple[float, bytes | None]]

returning the pieces to deliver instead of ``data``, each after a delay in seconds:
several pieces split a frame, altered bytes corrupt it, an empty list drops it, an
infinite delay stalls the link and a ``None`` piece drops the connection. The same duck
type is what ``simulators.faults`` provides, so one fault plan serves both ends.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import Literal, Protocol, runtime_checkable

from labrig.drivers.capabilities import InstrumentError, InstrumentTimeout
from labrig.drivers.retry import Backoff, Retry

__all__ = [
    "Backoff",
    "Direction",
    "Manipulator",
    "Transport",
    "TransportClosed",
]

Direction = Literal["tx", "rx"]

#: A reply larger than this is not an instrument talking, it is a runaway stream.
DEFAULT_MAX_FRAME = 1 << 24


class TransportClosed(InstrumentError):
    """The link is down (peer closed, reset, or a manipulator dropped it)."""


@runtime_checkable
class Manipulator(Protocol):
    """Duck type of a fault injector placed on a transport (see module docstring)."""

    def transform(self, direction: Direction, data: bytes) -> Sequence[tuple[float, bytes | None]]:
        """Pieces ``(delay_s, chunk)`` to deliver instead of ``data``; ``None`` drops the link."""
        ...


class LineStream(Protocol):
    """What a line-oriented driver needs of its link (a :class:`Transport` fits): write a
    command, read a reply up to its terminator, drop stale bytes before a command."""

    async def write(self, data: bytes) -> None: ...

    async def read_until(self, terminator: bytes) -> bytes: ...

    async def read_available(self) -> bytes: ...


class Transport(abc.ABC):
    """Bytes to and from one endpoint; an async context manager.

    Subclasses implement :meth:`_connect`, :meth:`_disconnect`, :meth:`_send` and
    :meth:`_receive`; this class adds buffering, deadlines, manipulators and reconnects.
    """

    def __init__(
        self,
        *,
        timeout: float = 2.0,
        manipulators: Sequence[Manipulator] = (),
        backoff: Backoff | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.timeout = timeout
        self.manipulators: list[Manipulator] = list(manipulators)
        self.backoff = backoff or Backoff()
        self.max_frame = max_frame
        self.reconnects = 0
        self._buf = bytearray()
        self._pending: deque[tuple[float, bytes | None]] = deque()
        self._connected = False

    # ----------------------------------------------------------------- subclass hooks
    @property
    @abc.abstractmethod
    def address(self) -> str:
        """The URL this transport reaches."""

    @abc.abstractmethod
    async def _connect(self, deadline: float) -> None: ...

    @abc.abstractmethod
    async def _disconnect(self) -> None: ...

    @abc.abstractmethod
    async def _send(self, data: bytes, deadline: float) -> None: ...

    @abc.abstractmethod
    async def _receive(
        self, deadline: float, terminator: bytes | None = None, size: int | None = None
    ) -> bytes:
        """At least one byte before ``deadline`` (hints say what the caller waits for).

        Raises :class:`TransportClosed` on end of stream and :class:`InstrumentTimeout`
        at the deadline.
        """

    @abc.abstractmethod
    async def _receive_nowait(self) -> bytes:
        """Whatever bytes are ready now, without waiting (may be empty)."""

    # ------------------------------------------------------------------ life cycle
    @property
    def is_open(self) -> bool:
        return self._connected

    def deadline(self, timeout: float | None = None) -> float:
        """Absolute loop time ``timeout`` seconds from now (default: ``self.timeout``)."""
        t = self.timeout if timeout is None else timeout
        return asyncio.get_running_loop().time() + t

    async def open(self, deadline: float | None = None) -> None:
        if self._connected:
            return
        dl = self.deadline() if deadline is None else deadline
        self._buf.clear()
        self._pending.clear()
        try:
            async with asyncio.timeout_at(dl):
                await self._connect(dl)
        except TimeoutError as exc:
            raise InstrumentTimeout(f"connecting to {self.address} timed out") from exc
        except OSError as exc:
            raise TransportClosed(f"cannot connect to {self.address}: {exc}") from exc
        self._connected = True

    async def close(self) -> None:
        if not self._connected:
            return
        self._connected = False
        self._buf.clear()
        self._pending.clear()
        await self._disconnect()

    async def __aenter__(self) -> Transport:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def reconnect(self, give_up_after: float | None = 30.0) -> None:
        """Close and open again, retrying with :attr:`backoff`.

        Raises :class:`TransportClosed` when ``give_up_after`` seconds pass without a link.
        """
        loop = asyncio.get_running_loop()
        end = math.inf if give_up_after is None else loop.time() + give_up_after
        await self.close()
        policy = Retry(on=(TransportClosed, InstrumentTimeout), deadline=end, backoff=self.backoff)
        try:
            await policy.call(lambda: self.open(min(end, self.deadline())))
        except (TransportClosed, InstrumentTimeout) as exc:
            raise TransportClosed(
                f"{self.address}: no link after {policy.failures} attempts ({exc})"
            ) from exc
        self.reconnects += 1

    # --------------------------------------------------------------------- writing
    async def write(self, data: bytes, deadline: float | None = None) -> None:
        """Send ``data`` (through the manipulators) before ``deadline``."""
        self._require_open()
        dl = self.deadline() if deadline is None else deadline
        pieces = self._transform("tx", data)
        loop = asyncio.get_running_loop()
        for delay, chunk in pieces:
            if delay > 0:
                if loop.time() + delay > dl:
                    await asyncio.sleep(max(0.0, dl - loop.time()))
                    raise InstrumentTimeout(f"{self.address}: write stalled past its deadline")
                await asyncio.sleep(delay)
            if chunk is None:
                await self._drop("tx")
            if chunk:
                await self._guarded_send(chunk, dl)

    def _send_now(self, data: bytes) -> bool:
        """Hand ``data`` to the link at once if it can take it without waiting (True),
        sparing a deadline timer per command; False: :meth:`_send` under the deadline."""
        return False

    async def _guarded_send(self, chunk: bytes, deadline: float) -> None:
        if self._send_now(chunk):
            return
        try:
            async with asyncio.timeout_at(deadline):
                await self._send(chunk, deadline)
        except TimeoutError as exc:
            raise InstrumentTimeout(f"{self.address}: write timed out") from exc
        except (OSError, EOFError) as exc:
            await self._mark_down()
            raise TransportClosed(f"{self.address}: link lost while writing: {exc}") from exc

    # --------------------------------------------------------------------- reading
    async def read_until(self, terminator: bytes, deadline: float | None = None) -> bytes:
        """Bytes up to and including ``terminator``."""
        if not terminator:
            raise ValueError("terminator must not be empty")
        dl = self.deadline() if deadline is None else deadline
        start = 0
        while True:
            idx = self._buf.find(terminator, start)
            if idx >= 0:
                end = idx + len(terminator)
                out = bytes(self._buf[:end])
                del self._buf[:end]
                return out
            start = max(0, len(self._buf) - len(terminator) + 1)
            if len(self._buf) > self.max_frame:
                head = bytes(self._buf[:80])
                self._buf.clear()
                raise InstrumentError(
                    f"{self.address}: no {terminator!r} within {self.max_frame} bytes "
                    f"(starts {head!r})"
                )
            await self._fill(dl, terminator=terminator)

    async def read_exactly(self, n: int, deadline: float | None = None) -> bytes:
        """Exactly ``n`` bytes."""
        dl = self.deadline() if deadline is None else deadline
        while len(self._buf) < n:
            await self._fill(dl, size=n - len(self._buf))
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def read_available(self) -> bytes:
        """Whatever has arrived, without waiting (empty if nothing)."""
        if self._connected:
            loop = asyncio.get_running_loop()
            try:
                while True:
                    before = len(self._buf) + len(self._pending)
                    await self._fill(loop.time(), size=None, poll=True)
                    if len(self._buf) + len(self._pending) == before:
                        break
            except InstrumentTimeout:
                pass
        out = bytes(self._buf)
        self._buf.clear()
        return out

    async def query(
        self,
        data: bytes,
        *,
        terminator: bytes | None = b"\n",
        size: int | None = None,
        timeout_s: float | None = None,
    ) -> bytes:
        """Write ``data`` and read the reply (to ``terminator``, or ``size`` bytes)."""
        dl = self.deadline(timeout_s)
        await self.write(data, dl)
        if size is not None:
            return await self.read_exactly(size, dl)
        if terminator is None:
            raise ValueError("query needs a terminator or a size")
        return await self.read_until(terminator, dl)

    # -------------------------------------------------------------------- internals
    def _require_open(self) -> None:
        if not self._connected:
            raise TransportClosed(f"{self.address}: not connected")

    def _transform(self, direction: Direction, data: bytes) -> list[tuple[float, bytes | None]]:
        pieces: list[tuple[float, bytes | None]] = [(0.0, data)]
        for m in self.manipulators:
            nxt: list[tuple[float, bytes | None]] = []
            for delay, chunk in pieces:
                if chunk is None:
                    nxt.append((delay, None))
                    continue
                out = list(m.transform(direction, chunk))
                if out:
                    out[0] = (out[0][0] + delay, out[0][1])
                nxt.extend(out)
            pieces = nxt
        return pieces

    async def _drop(self, direction: Direction) -> None:
        await self._mark_down()
        raise TransportClosed(f"{self.address}: link dropped ({direction})")

    async def _mark_down(self) -> None:
        if self._connected:
            self._connected = False
            self._pending.clear()
            with contextlib.suppress(OSError):
                await self._disconnect()

    async def _fill(
        self,
        deadline: float,
        *,
        terminator: bytes | None = None,
        size: int | None = None,
        poll: bool = False,
    ) -> None:
        """Move at least one byte into the buffer, or raise at the deadline."""
        self._require_open()
        loop = asyncio.get_running_loop()
        if self._pending:
            due, chunk = self._pending[0]
            now = loop.time()
            if due > now:
                if due > deadline:
                    if not poll:
                        await asyncio.sleep(max(0.0, deadline - now))
                    raise InstrumentTimeout(f"{self.address}: no reply before the deadline")
                await asyncio.sleep(due - now)
            self._pending.popleft()
            if chunk is None:
                await self._drop("rx")
            else:
                self._buf += chunk
            return
        try:
            if poll:
                raw = await self._receive_nowait()
                if not raw:
                    return
            else:
                async with asyncio.timeout_at(deadline):
                    raw = await self._receive(deadline, terminator, size)
        except TimeoutError as exc:
            raise InstrumentTimeout(f"{self.address}: no reply before the deadline") from exc
        except TransportClosed:
            await self._mark_down()
            raise
        except (OSError, EOFError) as exc:
            await self._mark_down()
            raise TransportClosed(f"{self.address}: link lost while reading: {exc}") from exc
        if not self.manipulators:
            self._buf += raw
            return
        now = loop.time()
        for delay, chunk in self._transform("rx", raw):
            prev = self._pending[-1][0] if self._pending else now
            self._pending.append((max(prev, now) + delay, chunk))
        if not self._pending:
            return
        # deliver the first due piece right away so a split frame behaves like the wire
        if self._pending[0][0] <= now:
            _, chunk = self._pending.popleft()
            if chunk is None:
                await self._drop("rx")
            else:
                self._buf += chunk
