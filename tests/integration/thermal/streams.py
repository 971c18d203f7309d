"""Minimal byte streams for the thermal drivers' tests: loopback TCP and a pty.

Stand-ins with the duck-typed shape the drivers use (``write``, ``read_exactly``,
``read_until``) until the shared transport is wired in; they are real I/O, not mocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from urllib.parse import urlsplit


class AsyncioStream:
    """Over an asyncio StreamReader/StreamWriter pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def read_exactly(self, n: int) -> bytes:
        return await self._reader.readexactly(n)

    async def read_until(self, terminator: bytes) -> bytes:
        return await self._reader.readuntil(terminator)

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


class PtyStream:
    """The slave side of a pseudo-terminal, raw, read through the loop's selector."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self._fd)
        self._loop = asyncio.get_running_loop()
        self._buf = bytearray()
        self._more = asyncio.Event()
        self._loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        self._buf += data
        self._more.set()

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:
                await asyncio.sleep(0)
                continue
            view = view[n:]

    async def _wait(self) -> None:
        self._more.clear()
        await self._more.wait()

    async def read_exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            await self._wait()
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def read_until(self, terminator: bytes) -> bytes:
        while (i := self._buf.find(terminator)) < 0:
            await self._wait()
        end = i + len(terminator)
        out = bytes(self._buf[:end])
        del self._buf[:end]
        return out

    async def aclose(self) -> None:
        self._loop.remove_reader(self._fd)
        os.close(self._fd)


async def open_stream(url: str) -> AsyncioStream | PtyStream:
    """``tcp://host:port`` or ``serial:///dev/pts/N?...`` (a pty opened raw)."""
    parts = urlsplit(url)
    if parts.scheme == "tcp":
        assert parts.hostname is not None and parts.port is not None
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return AsyncioStream(reader, writer)
    if parts.scheme == "serial":
        return PtyStream(parts.path)
    raise ValueError(f"unsupported address {url!r}")
