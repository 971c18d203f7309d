"""Serial transport on pyserial: ``serial:///dev/ttyUSB0?baudrate=9600`` or any pyserial URL.

POSIX ports (including pseudo-terminals) are non-blocking and watched with
``loop.add_reader`` on their file descriptor, so the event loop never blocks. URL
backends without a descriptor (``socket://``, ``rfc2217://``, ``loop://``) are read in a
worker thread with a short timeout per call.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import serial

from ._base import Transport, TransportClosed

__all__ = ["SerialTransport"]

#: how long one worker-thread read may block before we look at the deadline again
_THREAD_SLICE_S = 0.05


class SerialTransport(Transport):
    """A serial port, a pseudo-terminal, or any pyserial URL."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: float = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.port = port
        self.settings = {
            "baudrate": baudrate,
            "bytesize": bytesize,
            "parity": parity,
            "stopbits": stopbits,
        }
        self._ser: Any = None
        self._fd: int | None = None
        self._ready: asyncio.Event | None = None

    @property
    def address(self) -> str:
        if "://" in self.port:
            return self.port
        return f"serial://{self.port}?baudrate={self.settings['baudrate']}"

    async def _connect(self, deadline: float) -> None:
        try:
            if "://" in self.port:
                ser = serial.serial_for_url(self.port, do_not_open=True, **self.settings)
            else:
                ser = serial.Serial(port=None, **self.settings)
                ser.port = self.port
            ser.timeout = 0
            ser.write_timeout = 2.0
            ser.open()
        except (serial.SerialException, ValueError) as exc:
            raise TransportClosed(f"{self.address}: cannot open: {exc}") from exc
        self._ser = ser
        fd = getattr(ser, "fd", None)
        if isinstance(fd, int):
            loop = asyncio.get_running_loop()
            self._fd = fd
            self._ready = asyncio.Event()
            loop.add_reader(fd, self._ready.set)
        else:
            ser.timeout = _THREAD_SLICE_S

    async def _disconnect(self) -> None:
        ser, self._ser = self._ser, None
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            self._fd = None
        if ser is not None:
            with contextlib.suppress(OSError, serial.SerialException):
                ser.close()

    async def _send(self, data: bytes, deadline: float) -> None:
        ser = self._require()
        try:
            if self._fd is not None:
                ser.write(data)
            else:
                await asyncio.to_thread(ser.write, data)
        except serial.SerialException as exc:
            raise TransportClosed(f"{self.address}: write failed: {exc}") from exc

    async def _receive(
        self, deadline: float, terminator: bytes | None = None, size: int | None = None
    ) -> bytes:
        ser = self._require()
        loop = asyncio.get_running_loop()
        while True:
            if self._fd is not None and self._ready is not None:
                data = self._read_fd(ser)
                if data:
                    return data
                self._ready.clear()
                await self._ready.wait()
                continue
            data = await asyncio.to_thread(self._read_blocking, ser)
            if data:
                return data
            if loop.time() >= deadline:
                raise TimeoutError

    async def _receive_nowait(self) -> bytes:
        ser = self._require()
        if self._fd is not None:
            return self._read_fd(ser)
        waiting = await asyncio.to_thread(lambda: ser.in_waiting)
        if not waiting:
            return b""
        data: bytes = await asyncio.to_thread(ser.read, waiting)
        return data

    def _read_fd(self, ser: Any) -> bytes:
        try:
            data: bytes = ser.read(1 << 16)
        except serial.SerialException as exc:
            # pyserial reports a hung-up peer as "ready to read but returned no data"
            raise TransportClosed(f"{self.address}: {exc}") from exc
        except OSError as exc:
            raise TransportClosed(f"{self.address}: {exc}") from exc
        return data

    def _read_blocking(self, ser: Any) -> bytes:
        try:
            data: bytes = ser.read(max(1, ser.in_waiting))
        except (serial.SerialException, OSError) as exc:
            raise TransportClosed(f"{self.address}: {exc}") from exc
        return data

    def _require(self) -> Any:
        if self._ser is None:
            raise TransportClosed(f"{self.address}: not connected")
        return self._ser
