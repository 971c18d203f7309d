"""Gamry Interface 1000 / Reference 600 through GamryCOM (Windows COM server).

A station names the instrument ``gamry://<section>``, its name in the Gamry device list
(``gamry://`` alone: the only one connected).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import Field

from labrig.drivers.capabilities import InstrumentError

from ..registry import Handle, InstrumentLimits, InstrumentOptions, OpenRequest

__all__ = ["GamryOptions", "gamry_handle", "gamry_limits", "open_gamry_entry"]

SCHEME = "gamry://"

#: model -> (EIS range Hz, largest |current| A): the catalogue's (check the unit)
MODELS: dict[str, tuple[tuple[float, float], float]] = {
    "Interface 1000": ((10e-6, 1e6), 1.0),
    "Reference 600": ((10e-6, 5e6), 0.6),
}


class GamryOptions(InstrumentOptions):
    model: Literal["Interface 1000", "Reference 600"] = "Interface 1000"
    pstat_class: str = Field("GamryCOM.GamryPC6Pstat", pattern=r"^GamryCOM\.GamryPC[56]Pstat$")
    max_frequency_Hz: float | None = Field(None, gt=0, description="None: the model's")
    max_current_A: float | None = Field(None, gt=0, description="None: the model's")
    ocv_before_eis_s: float = Field(10.0, gt=0)
    readz_retries: int = Field(10, ge=0)
    poll_s: float = Field(0.2, gt=0)
    supervise_s: float = Field(5.0, gt=0, description="sample period the host ends steps by")
    call_timeout_s: float = Field(10.0, gt=0, description="deadline of one COM call")
    typelib: str | None = Field(None, description="GamryCOM's type library, if not the default")

    def check_channels(self, channels: int) -> None:
        if channels != 1:
            raise ValueError(f"a Gamry potentiostat has one channel, not {channels}")


@contextlib.asynccontextmanager
async def gamry_handle(
    req: OpenRequest[GamryOptions], *, backend: Any = None
) -> AsyncIterator[Handle]:
    """The potentiostat of ``req`` through ``backend`` (None: comtypes and GamryCOM)."""
    from labrig.drivers.gamry import open_gamry

    if not req.address.startswith(SCHEME):
        raise InstrumentError(f"{req.name}: address {req.address!r} must be {SCHEME}<section>")
    section = req.address[len(SCHEME) :] or None
    opts = req.options.model_dump(exclude_none=True)
    opts.pop("model")
    opts.pop("max_current_A", None)  # checked before the run (gamry_limits)
    top = gamry_limits(req.options).frequency_Hz
    assert top is not None
    opts["max_frequency_Hz"] = top[1]
    async with open_gamry(backend=backend, name=req.name, section=section, **opts) as ch:
        yield Handle(req.name, cycler=lambda _index: ch, impedance=lambda _index: ch)


def gamry_limits(o: GamryOptions) -> InstrumentLimits:
    """The model's EIS range and current (the station's options override them)."""
    (f_lo, f_hi), amps = MODELS[o.model]
    return InstrumentLimits(
        model=f"Gamry {o.model}",
        settings={"frequency_Hz": "options.max_frequency_Hz", "current_A": "options.max_current_A"},
        frequency_Hz=(f_lo, o.max_frequency_Hz or f_hi),
        current_A=o.max_current_A or amps,
    )


@contextlib.asynccontextmanager
async def open_gamry_entry(req: OpenRequest[GamryOptions]) -> AsyncIterator[Handle]:
    async with gamry_handle(req) as handle:
        yield handle
