"""Open a BioLogic channel from a station's options; one connection per instrument.

Several positions of a station sit on channels of the same instrument: they share one
:class:`BioLogicDevice` (one BL_Connect) and one library thread, counted by users and
closed with the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import struct
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ._channel import BioLogicChannel
from ._device import BioLogicDevice
from ._eclib import EClib
from ._errors import LibraryNotFound

__all__ = ["CHANNEL_OPTIONS", "DEVICE_OPTIONS", "load_library", "open_biologic"]

#: station options that go to the device (the rest go to the channel)
DEVICE_OPTIONS = frozenset({
    "connect_timeout_s", "load_firmware", "force_firmware", "firmware_file", "xilinx_file",
    "check_files", "max_frequency_Hz", "reconnect_s", "backoff_s",
})  # fmt: skip
CHANNEL_OPTIONS = frozenset({
    "poll_s", "eis_poll_s", "phase_unit", "eis_average_n", "eis_wait_for_steady",
    "ocv_before_eis_s", "frequency_rtol",
})  # fmt: skip
LIBRARY_OPTIONS = frozenset({"call_timeout_s", "slow_timeout_s"})


def load_library(library_dir: str) -> Any:
    """``EClib64.dll`` (64-bit Python) or ``EClib.dll`` from the Development Package."""
    if sys.platform != "win32":
        raise LibraryNotFound(
            "the EC-Lab Development Package is a Windows library: run labrig on the "
            "instrument's PC, or dry-run with --sim",
            code=-10,
            call="load_library",
        )
    dll = "EClib64.dll" if struct.calcsize("P") == 8 else "EClib.dll"
    path = os.path.join(library_dir, dll)
    if not os.path.isfile(path):
        raise LibraryNotFound(
            f"{path} not found: check the station's library_dir", code=-10, call="load_library"
        )
    win_dll = getattr(ctypes, "WinDLL")  # noqa: B009 - only on Windows
    return win_dll(path)


@dataclass
class _Shared:
    device: BioLogicDevice
    eclib: EClib
    ready: asyncio.Future[None]
    users: int = 0


_DEVICES: dict[tuple[int, int, str], _Shared] = {}


@contextlib.asynccontextmanager
async def open_biologic(
    *,
    model: str,
    address: str,
    channel: int = 0,
    library: Any = None,
    library_dir: str | None = None,
    name: str | None = None,
    **options: Any,
) -> AsyncIterator[BioLogicChannel]:
    """A ready :class:`BioLogicChannel`; its safe state and the device's disconnect on exit.

    ``library`` is a loaded EClib (the simulator's in tests); None loads the DLL from
    ``library_dir``. ``options`` are the station's: see :data:`DEVICE_OPTIONS`,
    :data:`CHANNEL_OPTIONS` and ``call_timeout_s`` / ``slow_timeout_s``.
    """
    unknown = set(options) - DEVICE_OPTIONS - CHANNEL_OPTIONS - LIBRARY_OPTIONS
    if unknown:
        raise ValueError(f"unknown BioLogic option(s): {', '.join(sorted(unknown))}")
    dev_name = name.rsplit("/", 1)[0] if name else "biologic"
    lib = library if library is not None else load_library(library_dir or "")
    dev_kw = {k: v for k, v in options.items() if k in DEVICE_OPTIONS}
    dev_kw.setdefault("check_files", library is None)
    lib_kw = {k: v for k, v in options.items() if k in LIBRARY_OPTIONS}
    ch_kw = {k: v for k, v in options.items() if k in CHANNEL_OPTIONS}
    shared = await _acquire(lib, address, model, library_dir, dev_name, dev_kw, lib_kw)
    try:
        ch = BioLogicChannel(shared.device, channel, name=name, **ch_kw)
        async with ch:
            yield ch
    finally:
        await _release(lib, address, shared)


async def _acquire(
    lib: Any, address: str, model: str, library_dir: str | None, name: str,
    dev_kw: dict[str, Any], lib_kw: dict[str, Any],
) -> _Shared:  # fmt: skip
    loop = asyncio.get_running_loop()
    key = (id(loop), id(lib), address)
    shared = _DEVICES.get(key)
    if shared is None:
        eclib = EClib(lib, name=name, **lib_kw)
        device = BioLogicDevice(eclib, address, model=model, library_dir=library_dir, name=name,
                                **dev_kw)  # fmt: skip
        shared = _Shared(device, eclib, loop.create_future())
        _DEVICES[key] = shared
        shared.users += 1
        try:
            await device.open()
        except BaseException as exc:
            _DEVICES.pop(key, None)
            shared.ready.set_exception(exc)
            shared.ready.exception()  # read: others awaiting it get it too
            eclib.close()
            raise
        shared.ready.set_result(None)
        return shared
    shared.users += 1
    try:
        await asyncio.shield(shared.ready)
    except BaseException:
        shared.users -= 1
        raise
    return shared


async def _release(lib: Any, address: str, shared: _Shared) -> None:
    shared.users -= 1
    if shared.users > 0:
        return
    key = (id(asyncio.get_running_loop()), id(lib), address)
    if _DEVICES.get(key) is shared:
        del _DEVICES[key]
    try:
        await shared.device.close()
    finally:
        shared.eclib.close()
