"""PalmSens EmStat / Nexus potentiostats over MethodSCRIPT (serial)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Literal

from pydantic import Field

from ..registry import Handle, InstrumentLimits, InstrumentOptions, OpenRequest

__all__ = ["MODELS", "PalmSensOptions", "open_palmsens", "palmsens_limits"]

#: model -> EIS range (Hz): the catalogue's (check the unit and its firmware)
MODELS: dict[str, tuple[float, float]] = {
    "EmStat Pico": (0.016, 200e3),
    "EmStat4": (10e-6, 200e3),
    "EmStat4S": (10e-6, 200e3),
    "Nexus": (10e-6, 1e6),
}

#: options that describe the instrument to the station check, not to the driver
_RANGE_OPTIONS = ("model", "min_frequency_Hz", "max_frequency_Hz", "max_current_A")


class PalmSensOptions(InstrumentOptions):
    model: Literal["EmStat Pico", "EmStat4", "EmStat4S", "Nexus"] = Field(
        "EmStat Pico", description="the model: its EIS range and current"
    )
    min_frequency_Hz: float | None = Field(None, gt=0, description="None: the model's")
    max_frequency_Hz: float | None = Field(None, gt=0, description="None: the model's")
    max_current_A: float | None = Field(
        None, gt=0, description="largest |current| of a GEIS (None: not checked)"
    )
    timeout_s: float = Field(3.0, gt=0, description="deadline of a reply line")
    eis_pgstat_mode: int = Field(3, ge=0, le=5)
    dc_pgstat_mode: int = Field(2, ge=0, le=5)
    cp_pgstat_mode: int = Field(2, ge=0, le=5)
    eis_current_range_A: tuple[float, float] = (1e-9, 0.01)
    cp_current_range_A: float = Field(0.01, gt=0)
    ocp_interval_s: float = Field(0.1, gt=0)
    ocv_before_eis_s: float = Field(1.0, gt=0)


def palmsens_limits(o: PalmSensOptions) -> InstrumentLimits:
    """The model's EIS range (the station's options override it)."""
    f_lo, f_hi = MODELS[o.model]
    return InstrumentLimits(
        model=f"PalmSens {o.model}",
        settings={
            "frequency_Hz": "options.min_frequency_Hz / max_frequency_Hz",
            "current_A": "options.max_current_A",
        },
        frequency_Hz=(o.min_frequency_Hz or f_lo, o.max_frequency_Hz or f_hi),
        current_A=o.max_current_A,
    )


@contextlib.asynccontextmanager
async def open_palmsens(req: OpenRequest[PalmSensOptions]) -> AsyncIterator[Handle]:
    from labrig.drivers.palmsens import PalmSensChannel

    opts = req.options.model_dump(exclude=set(_RANGE_OPTIONS))
    channel = PalmSensChannel.from_url(req.address, name=req.name, **opts)
    async with channel:
        # one potentiostat; several positions reach it through a multiplexer
        yield Handle(req.name, impedance=lambda _index: channel)
