"""Simulated BioLogic: the simulated EClib on the position's cell, reached through the
lab's driver (the library object stands where the DLL stands; there is no wire)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from ..hw.biologic import BioLogicOptions, biologic_handle
from ..registry import OpenRequest, SimRequest, SimStarted

__all__ = ["simulate_biologic_entry"]


@contextlib.asynccontextmanager
async def simulate_biologic_entry(req: SimRequest[BioLogicOptions]) -> AsyncIterator[SimStarted]:
    from labrig.simulators.biologic import simulate_biologic
    from labrig.simulators.engine import ChannelEngine

    from .cell import engine_of

    now = asyncio.get_running_loop().time()
    engines = [
        engine_of(req.cell) if i in req.labels else ChannelEngine(None, now=now)
        for i in range(req.channels)
    ]
    o = req.options
    async with simulate_biologic(
        engines, model=o.model, phase_unit=o.phase_unit, command_log=req.command_log
    ) as sim:
        open_req = OpenRequest(req.name, f"biologic://{sim.address}", req.channels, o, req.labels)
        async with biologic_handle(open_req, library=sim.library) as handle:
            yield SimStarted(handle=handle, model=sim)
