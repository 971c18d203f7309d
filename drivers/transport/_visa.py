"""VISA transport on pyvisa: ``visa://TCPIP::127.0.0.1::5025::SOCKET``.

pyvisa is blocking and not safe for concurrent use of one resource, so every call runs in
a worker thread (``asyncio.to_thread``) under one ``asyncio.Lock`` per resource name, and
the deadline becomes the VISA timeout of that call (a worker thread cannot be cancelled,
so the instrument-side timeout is what bounds it). The backend defaults to ``@py``
(pyvisa-py).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

from labrig.drivers.capabilities import InstrumentTimeout

from ._base import Transport, TransportClosed

__all__ = ["VisaTransport"]

# one lock per (event loop, resource): asyncio locks belong to a loop
_LOCKS: dict[tuple[int, str], asyncio.Lock] = {}


def _resource_lock(resource: str) -> asyncio.Lock:
    key = (id(asyncio.get_running_loop()), resource)
    lock = _LOCKS.get(key)
    if lock is None:
        lock = _LOCKS[key] = asyncio.Lock()
    return lock


class VisaTransport(Transport):
    """A VISA message-based resource reached through pyvisa."""

    def __init__(self, resource: str, *, backend: str = "@py", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resource = resource
        self.backend = backend
        self._rm: Any = None
        self._inst: Any = None

    @property
    def address(self) -> str:
        return f"visa://{self.resource}"

    async def _connect(self, deadline: float) -> None:
        import pyvisa  # deferred: importing pyvisa is slow and only VISA users need it

        timeout_ms = self._timeout_ms(deadline)

        def _open() -> tuple[Any, Any]:
            rm = pyvisa.ResourceManager(self.backend)
            try:
                inst = rm.open_resource(self.resource, open_timeout=timeout_ms)
            except Exception:
                rm.close()
                raise
            return rm, inst

        async with _resource_lock(self.resource):
            try:
                self._rm, self._inst = await asyncio.to_thread(_open)
            except pyvisa.errors.VisaIOError as exc:
                raise TransportClosed(f"{self.address}: cannot open: {exc}") from exc

    async def _disconnect(self) -> None:
        inst, rm = self._inst, self._rm
        self._inst = self._rm = None

        def _close() -> None:
            try:
                if inst is not None:
                    inst.close()
            finally:
                if rm is not None:
                    rm.close()

        async with _resource_lock(self.resource):
            # closing a dead session must not mask the error that brought us here
            with contextlib.suppress(Exception):
                await asyncio.to_thread(_close)

    async def _send(self, data: bytes, deadline: float) -> None:
        inst = self._require()
        await self._call(deadline, lambda: inst.write_raw(data))

    async def _receive(
        self, deadline: float, terminator: bytes | None = None, size: int | None = None
    ) -> bytes:
        inst = self._require()
        if terminator:
            term = chr(terminator[-1])

            def _read_term() -> bytes:
                if inst.read_termination != term:
                    inst.read_termination = term
                data: bytes = inst.read_raw()
                return data

            return await self._call(deadline, _read_term)
        count = max(1, size or 1)

        def _read_n() -> bytes:
            data: bytes = inst.read_bytes(count, break_on_termchar=False)
            return data

        return await self._call(deadline, _read_n)

    async def _receive_nowait(self) -> bytes:
        # VISA has no "bytes ready" query on sockets: a read with a tiny timeout will do
        inst = self._require()
        import pyvisa

        def _poll() -> bytes:
            old = inst.timeout
            inst.timeout = 1
            try:
                data: bytes = inst.read_bytes(1, break_on_termchar=False)
                return data
            except pyvisa.errors.VisaIOError:
                return b""
            finally:
                inst.timeout = old

        async with _resource_lock(self.resource):
            return await asyncio.to_thread(_poll)

    async def _call(self, deadline: float, fn: Any) -> bytes:
        import pyvisa

        inst = self._require()
        async with _resource_lock(self.resource):
            timeout_ms = self._timeout_ms(deadline)

            def _run() -> Any:
                inst.timeout = timeout_ms
                return fn()

            try:
                # shield: cancelling the await cannot stop the thread; let it finish
                result: Any = await asyncio.shield(asyncio.to_thread(_run))
            except pyvisa.errors.VisaIOError as exc:
                if exc.error_code == pyvisa.constants.StatusCode.error_timeout:
                    msg = f"{self.address}: no reply before the deadline"
                    raise InstrumentTimeout(msg) from exc
                raise TransportClosed(f"{self.address}: {exc}") from exc
            except (OSError, EOFError) as exc:
                raise TransportClosed(f"{self.address}: {exc}") from exc
        return result if isinstance(result, bytes) else b""

    def _timeout_ms(self, deadline: float) -> int:
        remaining = deadline - asyncio.get_running_loop().time()
        if not math.isfinite(remaining):
            return 60_000
        return max(1, int(remaining * 1000))

    def _require(self) -> Any:
        if self._inst is None:
            raise TransportClosed(f"{self.address}: not connected")
        return self._inst
