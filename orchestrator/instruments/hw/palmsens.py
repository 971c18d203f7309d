"""PalmSens EmStat / Nexus potentiostats over MethodSCRIPT (serial)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from pydantic import Field

from ..registry import Handle, InstrumentOptions, OpenRequest

__all__ = ["PalmSensOptions", "open_palmsens"]


class PalmSensOptions(InstrumentOptions):
    timeout_s: float = Field(3.0, gt=0, description="deadline of a reply line")
    eis_pgstat_mode: int = Field(3, ge=0, le=5)
    dc_pgstat_mode: int = Field(2, ge=0, le=5)
    cp_pgstat_mode: int = Field(2, ge=0, le=5)
    eis_current_range_A: tuple[float, float] = (1e-9, 0.01)
    cp_current_range_A: float = Field(0.01, gt=0)
    ocp_interval_s: float = Field(0.1, gt=0)
    ocv_before_eis_s: float = Field(1.0, gt=0)


@contextlib.asynccontextmanager
async def open_palmsens(req: OpenRequest[PalmSensOptions]) -> AsyncIterator[Handle]:
    from labrig.drivers.palmsens import PalmSensChannel

    channel = PalmSensChannel.from_url(req.address, name=req.name, **req.options.model_dump())
    async with channel:
        # one potentiostat; several positions reach it through a multiplexer
        yield Handle(req.name, impedance=lambda _index: channel)
