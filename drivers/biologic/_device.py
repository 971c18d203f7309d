"""One BioLogic instrument: connection, model and family, firmware, link recovery.

A station names the model (``VMP-300``, ``SP-300``, ``VMP3``...), the address (an IP
address or ``USB0``) and where the Development Package is installed. The device checks
the model against the device code the instrument reports, picks the family (technique
files ``x4.ecc`` for the SP-300 family, ``x.ecc`` for the VMP3 family) and makes sure
each channel it uses runs the package's firmware, loading it only when the channel is
stopped and the station allows it: a channel that EC-Lab is running is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import TypeVar

from ._eclib import EClib
from ._errors import BioLogicError, ChannelInUse, FirmwareMismatch, LibraryNotFound, LinkLost
from ._params import ecc_file
from ._structs import ChannelInfos, DeviceCode, DeviceInfos, Family, FirmwareCode, State, family_of

__all__ = ["MODELS", "BioLogicDevice", "Model"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Model:
    """What labrig assumes of a model (each a setting a station can override)."""

    name: str
    code: DeviceCode
    family: Family
    max_frequency_Hz: float
    max_current_A: float  # the largest current range, without a booster
    min_frequency_Hz: float = 10e-6


#: the lab's models; frequency limits are the catalogue's with the EIS board fitted,
#: currents the standard channel's (check each unit: option boards, boosters and firmware
#: change them)
MODELS: dict[str, Model] = {
    m.name.lower(): m
    for m in (
        Model("VMP-300", DeviceCode.VMP300, Family.SP300, 7e6, 0.5),
        Model("SP-300", DeviceCode.SP300, Family.SP300, 7e6, 0.5),
        Model("VSP-300", DeviceCode.VSP300, Family.SP300, 7e6, 0.5),
        Model("SP-240", DeviceCode.SP240, Family.SP300, 7e6, 4.0),
        Model("VMP3", DeviceCode.VMP3, Family.VMP3, 1e6, 0.4),
        Model("VSP", DeviceCode.VSP, Family.VMP3, 1e6, 0.4),
        Model("SP-150", DeviceCode.SP150, Family.VMP3, 1e6, 0.8),
        Model("SP-50", DeviceCode.SP50, Family.VMP3, 1e6, 1.0),
        Model("SP-200", DeviceCode.SP200, Family.VMP3, 1e6, 0.5),
    )
}

#: firmware files of the package, by family (names change between package versions:
#: the station's firmware_file / xilinx_file options override them)
FIRMWARE: dict[Family, tuple[str, str]] = {
    Family.VMP3: ("kernel.bin", "Vmp_ii_0437_a6.xlx"),
    Family.SP300: ("kernel4.bin", "Vmp_iv_0395_aa.xlx"),
}


class BioLogicDevice:
    """A connected instrument; hands its channels to :class:`BioLogicChannel`.

    ``library_dir`` is the Development Package folder on the instrument PC (technique
    and firmware files are looked up there); ``check_files`` verifies they exist before
    the first use (off for the simulator, which has no files).
    """

    def __init__(
        self,
        eclib: EClib,
        address: str,
        *,
        model: str,
        library_dir: str | None = None,
        name: str = "biologic",
        connect_timeout_s: int = 5,
        load_firmware: bool = True,
        force_firmware: bool = False,
        firmware_file: str | None = None,
        xilinx_file: str | None = None,
        check_files: bool = True,
        max_frequency_Hz: float | None = None,
        reconnect_s: float = 60.0,
        backoff_s: float = 1.0,
    ) -> None:
        m = MODELS.get(model.lower())
        if m is None:
            raise ValueError(f"{name}: unknown BioLogic model {model!r}; known: "
                             f"{', '.join(x.name for x in MODELS.values())}")  # fmt: skip
        self.eclib = eclib
        self.address = address
        self.model = m
        self.family = m.family
        self.name = name
        self.library_dir = library_dir
        self.connect_timeout_s = connect_timeout_s
        self.load_firmware = load_firmware
        self.force_firmware = force_firmware
        fw, xlx = FIRMWARE[m.family]
        self.firmware_file = firmware_file or fw
        self.xilinx_file = xilinx_file or xlx
        self.check_files = check_files
        self.max_frequency_Hz = max_frequency_Hz or m.max_frequency_Hz
        self.reconnect_s = reconnect_s
        self.backoff_s = backoff_s
        self.dev_id: int | None = None
        self.infos: DeviceInfos | None = None
        self.reconnects = 0

    # ------------------------------------------------------------------ files
    def path(self, file_name: str) -> str:
        """Full path of a package file (the bare name when no folder is configured)."""
        if not self.library_dir:
            return file_name
        return str(PureWindowsPath(self.library_dir) / file_name)

    def ecc_path(self, stem: str) -> str:
        return self.path(ecc_file(stem, self.family))

    def verify_files(self, stems: tuple[str, ...]) -> None:
        """The technique and firmware files exist (on the instrument PC)."""
        if not self.check_files:
            return
        import os

        want = [self.ecc_path(s) for s in stems]
        want += [self.path(self.firmware_file), self.path(self.xilinx_file)]
        missing = [p for p in want if not os.path.isfile(p)]
        if missing:
            raise LibraryNotFound(
                f"{self.name}: Development Package files not found: {', '.join(missing)} "
                "(check the station's library_dir)",
                code=-5,
                call="verify_files",
            )

    # ------------------------------------------------------------------ connection
    async def open(self) -> None:
        self.dev_id, self.infos = await self.eclib.connect(self.address, self.connect_timeout_s)
        code = int(self.infos.DeviceCode)
        fam = family_of(code)
        if code != int(self.model.code):
            reported = _code_name(code)
            raise FirmwareMismatch(
                f"{self.name}: the station says {self.model.name} but {self.address} is a "
                f"{reported} ({'family ' + fam.name if fam else 'unknown family'}); "
                "fix the model in the station file",
                code=-8,
                call="BL_Connect",
            )

    async def close(self) -> None:
        if self.dev_id is not None:
            dev, self.dev_id = self.dev_id, None
            with contextlib.suppress(BioLogicError):  # the link may already be gone
                await self.eclib.disconnect(dev)

    @property
    def id(self) -> int:
        if self.dev_id is None:
            raise LinkLost(f"{self.name}: not connected", code=-1, call="")
        return self.dev_id

    async def reconnect(self) -> None:
        """Connect again after a lost link, with backoff, for up to ``reconnect_s``."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.reconnect_s
        delay = self.backoff_s
        last: BioLogicError | None = None
        while True:
            try:
                if self.dev_id is not None:
                    try:
                        await self.eclib.test_connection(self.dev_id)
                        return
                    except LinkLost:
                        self.dev_id = None
                await self.open()
                self.reconnects += 1
                return
            except LinkLost as exc:
                last = exc
            remaining = end - loop.time()
            if remaining <= 0:
                raise LinkLost(
                    f"{self.name}: link not back within {self.reconnect_s:g} s ({last})",
                    code=last.code if last else -200,
                    call="BL_Connect",
                )
            await asyncio.sleep(min(delay, remaining))  # a last try at the grace's end
            delay = min(delay * 2.0, 10.0)

    async def retry(self, op: Callable[[], Awaitable[T]], *, attempts: int = 1000) -> T:
        """Run ``op``; after a lost link reconnect (within ``reconnect_s``) and run it
        again. Only for operations that are safe to repeat."""
        while True:
            try:
                return await op()
            except LinkLost:
                attempts -= 1
                if attempts <= 0:
                    raise
                await self.reconnect()

    # ------------------------------------------------------------------ channels
    async def prepare_channel(self, channel: int) -> ChannelInfos:
        """Check the channel is plugged, free and on the package's firmware (load it if
        the station allows and the channel is stopped)."""
        plugged = await self.eclib.channels_plugged(self.id)
        if channel not in plugged:
            raise ChannelInUse(
                f"{self.name}: channel {channel} is not plugged (plugged: {plugged})",
                code=-3,
                call="BL_GetChannelsPlugged",
            )
        info = await self.eclib.channel_infos(self.id, channel)
        fw = int(info.FirmwareCode)
        if fw == FirmwareCode.KERNEL and not self.force_firmware:
            return info
        if int(info.State) != State.STOP:
            raise ChannelInUse(
                f"{self.name}: channel {channel} is running with firmware code {fw} "
                "(EC-Lab or another program): not touched",
                code=-13,
                call="BL_GetChannelInfos",
            )
        if not self.load_firmware:
            raise FirmwareMismatch(
                f"{self.name}: channel {channel} has firmware code {fw}, not the Development "
                "Package's (5); allow load_firmware or load it once by hand",
                code=-308,
                call="BL_GetChannelInfos",
            )
        results = await self.eclib.load_firmware(
            self.id, [channel], self.path(self.firmware_file), self.path(self.xilinx_file),
            force=self.force_firmware or fw != FirmwareCode.NONE,
        )  # fmt: skip
        if results[0] != 0:
            from ._errors import error_for

            raise error_for(results[0], "BL_LoadFirmware", name=self.name)
        return await self.eclib.channel_infos(self.id, channel)


def _code_name(code: int) -> str:
    try:
        return DeviceCode(code).name
    except ValueError:
        return f"device code {code}"
