"""BioLogic VMP-300 / SP-300 / VMP3 through the EC-Lab Development Package (Windows DLL).

A station names the instrument ``biologic://USB0`` (or ``biologic://10.0.0.41``), its
model and where the package is installed; each channel a position uses is one driver
channel that is both its cycler and its impedance channel.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import Field

from labrig.drivers.capabilities import InstrumentError

from ..registry import Handle, InstrumentLimits, InstrumentOptions, OpenRequest

__all__ = ["BioLogicOptions", "biologic_handle", "biologic_limits", "open_biologic_entry"]

SCHEME = "biologic://"


class BioLogicOptions(InstrumentOptions):
    model: Literal[
        "VMP-300", "SP-300", "VSP-300", "SP-240", "VMP3", "VSP", "SP-150", "SP-50", "SP-200"
    ] = Field("VMP-300", description="the model: it picks the family (x4.ecc or x.ecc)")
    library_dir: str | None = Field(None, description="the Development Package's folder")
    max_frequency_Hz: float | None = Field(None, gt=0, description="None: the model's")
    max_current_A: float | None = Field(
        None, gt=0, description="largest |current| of a channel (None: the model's)"
    )
    load_firmware: bool = True
    force_firmware: bool = False
    firmware_file: str | None = None
    xilinx_file: str | None = None
    phase_unit: Literal["rad", "deg"] = "rad"
    poll_s: float = Field(10.0, gt=0, description="how often a block's data are drained")
    eis_poll_s: float = Field(1.0, gt=0)
    eis_average_n: int = Field(1, ge=1)
    eis_wait_for_steady: float = Field(0.1, ge=0)
    ocv_before_eis_s: float = Field(0.0, ge=0)
    call_timeout_s: float = Field(10.0, gt=0, description="deadline of one DLL call")
    reconnect_s: float = Field(60.0, gt=0, description="how long a lost link may take")
    connect_timeout_s: int = Field(5, ge=1, le=255)

    def check_channels(self, channels: int) -> None:
        if channels > 16:
            raise ValueError(f"a BioLogic instrument has at most 16 channels, not {channels}")


def _dll_address(url: str, name: str) -> str:
    if not url.startswith(SCHEME) or len(url) == len(SCHEME):
        raise InstrumentError(f"{name}: address {url!r} must be {SCHEME}USB0 or {SCHEME}<IP>")
    return url[len(SCHEME) :]


@contextlib.asynccontextmanager
async def biologic_handle(
    req: OpenRequest[BioLogicOptions], *, library: Any = None
) -> AsyncIterator[Handle]:
    """The channels ``req`` uses, opened on ``library`` (None: the installed DLL)."""
    from labrig.drivers.biologic import open_biologic

    opts = req.options.model_dump(exclude_none=True)
    opts.pop("max_current_A", None)  # checked before the run (biologic_limits)
    model, library_dir = opts.pop("model"), opts.pop("library_dir", None)
    address = _dll_address(req.address, req.name)
    async with contextlib.AsyncExitStack() as stack:
        chans: dict[int, Any] = {}
        for index in sorted(req.labels) or [0]:
            chans[index] = await stack.enter_async_context(
                open_biologic(model=model, address=address, channel=index, library=library,
                              library_dir=library_dir, name=f"{req.name}/{index}", **opts)
            )  # fmt: skip

        def pick(index: int) -> Any:
            if index not in chans:
                raise InstrumentError(f"{req.name}: channel {index} is not opened here")
            return chans[index]

        yield Handle(req.name, cycler=pick, impedance=pick)


def biologic_limits(o: BioLogicOptions) -> InstrumentLimits:
    """The model's EIS range and current (the station's options override them)."""
    from labrig.drivers.biologic import MODELS

    m = MODELS[o.model.lower()]
    return InstrumentLimits(
        model=f"BioLogic {m.name}",
        settings={"frequency_Hz": "options.max_frequency_Hz", "current_A": "options.max_current_A"},
        frequency_Hz=(m.min_frequency_Hz, o.max_frequency_Hz or m.max_frequency_Hz),
        current_A=o.max_current_A or m.max_current_A,
    )


@contextlib.asynccontextmanager
async def open_biologic_entry(req: OpenRequest[BioLogicOptions]) -> AsyncIterator[Handle]:
    async with biologic_handle(req) as handle:
        yield handle
