"""TCP transport on asyncio streams: ``tcp://host:port``."""

from __future__ import annotations

import asyncio
from typing import Any

from ._base import Transport, TransportClosed

__all__ = ["TcpTransport"]


class TcpTransport(Transport):
    """A TCP client connection."""

    def __init__(self, host: str, port: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def address(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    async def _connect(self, deadline: float) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def _disconnect(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        writer.close()
        try:
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
        except (OSError, TimeoutError):
            pass  # the peer is gone already; nothing more to release

    def _send_now(self, data: bytes) -> bool:
        writer = self._writer
        if writer is None or writer.transport.is_closing():
            return False
        # below the stream's high-water mark a write is queued at once and drain() would
        # return without waiting; above it, the caller waits under the deadline
        limit = writer.transport.get_write_buffer_limits()[1]
        if writer.transport.get_write_buffer_size() + len(data) > limit:
            return False
        writer.write(data)
        return True

    async def _send(self, data: bytes, deadline: float) -> None:
        if self._writer is None:
            raise TransportClosed(f"{self.address}: not connected")
        self._writer.write(data)
        await self._writer.drain()

    async def _receive(
        self, deadline: float, terminator: bytes | None = None, size: int | None = None
    ) -> bytes:
        if self._reader is None:
            raise TransportClosed(f"{self.address}: not connected")
        data = await self._reader.read(1 << 16)
        if not data:
            raise TransportClosed(f"{self.address}: closed by the peer")
        return data

    async def _receive_nowait(self) -> bytes:
        if self._reader is None:
            raise TransportClosed(f"{self.address}: not connected")
        # two turns of the loop let bytes the selector already saw reach the reader
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        buffered = len(self._reader._buffer)  # type: ignore[attr-defined]  # no public "bytes ready" API
        if buffered:
            return await self._reader.read(buffered)
        if self._reader.at_eof():
            raise TransportClosed(f"{self.address}: closed by the peer")
        return b""
