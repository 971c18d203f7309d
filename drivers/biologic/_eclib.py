"""The EClib binding: typed async calls on a loaded library, serialised, under deadlines.

:class:`EClib` wraps whatever stands where BioLogic's DLL stands: ``ctypes.WinDLL`` of
``EClib64.dll`` in the lab, the simulator's library object in tests. The calls are the
same either way: explicit ctypes values, ``byref`` for what the library fills in,
structures by value where the DLL takes them so. On a real DLL the binding also
declares each function's ``argtypes``/``restype``.

The DLL is not thread-safe and blocks: every call runs on one dedicated (daemon) thread
per library, one at a time, under a deadline. A call that outlives its deadline leaves
that thread stuck inside the DLL; the binding then fails every further call at once with
:class:`LinkLost` until the stuck call returns (a hung DLL must never hang the run).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

from labrig.drivers.libthread import LibraryThread

from ._errors import LinkLost, error_for
from ._params import Param, encode_params
from ._structs import (
    ChannelInfos,
    CurrentValues,
    DataBuffer,
    DataInfos,
    DeviceInfos,
    EccParams,
)

__all__ = ["EClib", "declare"]

_I32, _U8, _U32, _BOOL, _STR = (
    ctypes.c_int32, ctypes.c_uint8, ctypes.c_uint32, ctypes.c_bool, ctypes.c_char_p,
)  # fmt: skip
_P = ctypes.POINTER

#: argtypes of the calls labrig makes (restype is int32 for all)
SIGNATURES: dict[str, list[Any]] = {
    "BL_GetLibVersion": [_STR, _P(_U32)],
    "BL_GetErrorMsg": [_I32, _STR, _P(_U32)],
    "BL_Connect": [_STR, _U8, _P(_I32), _P(DeviceInfos)],
    "BL_Disconnect": [_I32],
    "BL_TestConnection": [_I32],
    "BL_GetChannelsPlugged": [_I32, _P(_U8), _U8],
    "BL_GetChannelInfos": [_I32, _U8, _P(ChannelInfos)],
    "BL_GetMessage": [_I32, _U8, _STR, _P(_U32)],
    "BL_LoadFirmware": [_I32, _P(_U8), _P(_I32), _U8, _BOOL, _BOOL, _STR, _STR],
    "BL_LoadTechnique": [_I32, _U8, _STR, EccParams, _BOOL, _BOOL, _BOOL],
    "BL_UpdateParameters": [_I32, _U8, _I32, EccParams, _STR],
    "BL_StartChannel": [_I32, _U8],
    "BL_StopChannel": [_I32, _U8],
    "BL_GetCurrentValues": [_I32, _U8, _P(CurrentValues)],
    "BL_GetData": [_I32, _U8, _P(DataBuffer), _P(DataInfos), _P(CurrentValues)],
}


def declare(lib: Any) -> None:
    """Set ``argtypes``/``restype`` on a real ctypes library (a simulator has none)."""
    for fname, argtypes in SIGNATURES.items():
        fn = getattr(lib, fname, None)
        if fn is not None and hasattr(fn, "argtypes"):
            fn.argtypes = argtypes
            fn.restype = _I32


class EClib:
    """Typed, serialised calls on one loaded EClib (``lib``).

    ``call_timeout_s`` is the deadline of an ordinary call; BL_Connect and
    BL_LoadFirmware get ``slow_timeout_s``. ``name`` prefixes error messages.
    """

    def __init__(
        self,
        lib: Any,
        *,
        name: str = "biologic",
        call_timeout_s: float = 10.0,
        slow_timeout_s: float = 60.0,
    ) -> None:
        declare(lib)
        self.lib = lib
        self.name = name
        self.call_timeout_s = call_timeout_s
        self.slow_timeout_s = slow_timeout_s
        self.calls: list[str] = []  # names of the calls made, in order (for the record)
        self._thread = LibraryThread(f"{name}-eclib")
        self._lock = asyncio.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._stuck_call = ""

    def close(self) -> None:
        """Stop the library thread (a call still stuck in the DLL is abandoned)."""
        self._thread.shutdown(wait=self._idle.is_set())

    # ------------------------------------------------------------------ raw calls
    async def raw(self, fname: str, *args: Any, timeout_s: float | None = None) -> int:
        """Run ``lib.fname(*args)`` on the library thread; the int32 it returns."""
        fn = getattr(self.lib, fname, None)
        if fn is None:
            raise error_for(-10, fname, name=self.name, detail=f"the library has no {fname}")
        deadline = self.call_timeout_s if timeout_s is None else timeout_s
        async with self._lock:
            if not self._idle.is_set():
                raise LinkLost(
                    f"{self.name}: {self._stuck_call} has not returned; the library is "
                    f"stuck, {fname} not sent",
                    code=-202,
                    call=fname,
                )
            self._idle.clear()
            self._stuck_call = fname
            self.calls.append(fname)
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(self._thread, functools.partial(self._run, fn, args))
            fut.add_done_callback(_consume)
            try:
                async with asyncio.timeout(deadline):
                    return int(await asyncio.shield(fut))
            except TimeoutError:
                raise LinkLost(
                    f"{self.name}: {fname} did not return within {deadline:g} s",
                    code=-202,
                    call=fname,
                ) from None

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> int:
        try:
            return int(fn(*args))
        finally:
            self._idle.set()

    async def check(self, fname: str, *args: Any, timeout_s: float | None = None) -> None:
        """Run a call; a nonzero code raises the typed error with the library's text."""
        code = await self.raw(fname, *args, timeout_s=timeout_s)
        if code != 0:
            raise error_for(code, fname, name=self.name, detail=await self.error_text(code))

    async def error_text(self, code: int) -> str:
        """BL_GetErrorMsg's text for ``code`` ("" if even that fails)."""
        buf = ctypes.create_string_buffer(256)
        size = _U32(256)
        try:
            if await self.raw("BL_GetErrorMsg", _I32(code), buf, ctypes.byref(size)) != 0:
                return ""
        except LinkLost:
            return ""
        return buf.value.decode("latin-1", "replace")

    # ------------------------------------------------------------------ typed calls
    async def lib_version(self) -> str:
        buf = ctypes.create_string_buffer(64)
        size = _U32(64)
        await self.check("BL_GetLibVersion", buf, ctypes.byref(size))
        return buf.value.decode("latin-1", "replace")

    async def connect(self, address: str, timeout_s: int = 5) -> tuple[int, DeviceInfos]:
        """BL_Connect: the device id and its informations."""
        dev_id = _I32(0)
        infos = DeviceInfos()
        t = max(1, min(255, int(timeout_s)))
        await self.check(
            "BL_Connect", _STR(address.encode("ascii")), _U8(t), ctypes.byref(dev_id),
            ctypes.byref(infos), timeout_s=max(self.slow_timeout_s, t + 5.0),
        )  # fmt: skip
        return int(dev_id.value), infos

    async def disconnect(self, dev_id: int) -> None:
        await self.check("BL_Disconnect", _I32(dev_id))

    async def test_connection(self, dev_id: int) -> None:
        await self.check("BL_TestConnection", _I32(dev_id))

    async def channels_plugged(self, dev_id: int, size: int = 16) -> list[int]:
        arr = (_U8 * size)()
        await self.check("BL_GetChannelsPlugged", _I32(dev_id), arr, _U8(size))
        return [k for k in range(size) if arr[k]]

    async def channel_infos(self, dev_id: int, channel: int) -> ChannelInfos:
        infos = ChannelInfos()
        await self.check("BL_GetChannelInfos", _I32(dev_id), _U8(channel), ctypes.byref(infos))
        return infos

    async def message(self, dev_id: int, channel: int) -> str:
        """BL_GetMessage: the channel's next firmware message ("" when none)."""
        buf = ctypes.create_string_buffer(1024)
        size = _U32(1024)
        await self.check("BL_GetMessage", _I32(dev_id), _U8(channel), buf, ctypes.byref(size))
        return buf.value.decode("latin-1", "replace")

    async def load_firmware(
        self, dev_id: int, channels: Sequence[int], bin_file: str, xlx_file: str, *, force: bool
    ) -> list[int]:
        """BL_LoadFirmware on ``channels``; the per-channel result codes."""
        n = len(channels)
        chans = (_U8 * n)(*channels)
        results = (_I32 * n)()
        await self.check(
            "BL_LoadFirmware", _I32(dev_id), chans, results, _U8(n), _BOOL(False),
            _BOOL(force), _STR(bin_file.encode("mbcs" if _windows() else "utf-8")),
            _STR(xlx_file.encode("mbcs" if _windows() else "utf-8")),
            timeout_s=self.slow_timeout_s,
        )  # fmt: skip
        return [int(results[k]) for k in range(n)]

    async def load_technique(
        self, dev_id: int, channel: int, ecc_path: str, params: Sequence[Param],
        *, first: bool, last: bool,
    ) -> None:  # fmt: skip
        arr, rec = encode_params(params)
        await self.check(
            "BL_LoadTechnique", _I32(dev_id), _U8(channel), _STR(_path_bytes(ecc_path)), rec,
            _BOOL(first), _BOOL(last), _BOOL(False),
        )  # fmt: skip
        del arr  # kept alive until the call returned

    async def update_parameters(
        self, dev_id: int, channel: int, index: int, ecc_path: str, params: Sequence[Param]
    ) -> None:
        arr, rec = encode_params(params)
        await self.check(
            "BL_UpdateParameters", _I32(dev_id), _U8(channel), _I32(index), rec,
            _STR(_path_bytes(ecc_path)),
        )  # fmt: skip
        del arr

    async def start_channel(self, dev_id: int, channel: int) -> None:
        await self.check("BL_StartChannel", _I32(dev_id), _U8(channel))

    async def stop_channel(self, dev_id: int, channel: int) -> None:
        await self.check("BL_StopChannel", _I32(dev_id), _U8(channel))

    async def current_values(self, dev_id: int, channel: int) -> CurrentValues:
        cv = CurrentValues()
        await self.check("BL_GetCurrentValues", _I32(dev_id), _U8(channel), ctypes.byref(cv))
        return cv

    async def get_data(
        self, dev_id: int, channel: int
    ) -> tuple[ctypes.Array[ctypes.c_uint32], DataInfos, CurrentValues]:
        """BL_GetData: the raw buffer, its data infos and the current values."""
        buf = DataBuffer()
        infos = DataInfos()
        cv = CurrentValues()
        await self.check(
            "BL_GetData", _I32(dev_id), _U8(channel), ctypes.byref(buf), ctypes.byref(infos),
            ctypes.byref(cv),
        )  # fmt: skip
        return buf, infos, cv


def _consume(fut: asyncio.Future[Any]) -> None:
    # a call abandoned at its deadline may still fail later: nobody awaits it any more
    if not fut.cancelled():
        fut.exception()


def _windows() -> bool:
    import sys

    return sys.platform == "win32"


def _path_bytes(path: str) -> bytes:
    return path.encode("mbcs" if _windows() else "utf-8")
