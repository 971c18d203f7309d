"""Simulated Gamry: the simulated GamryCOM on the position's cell, reached through the
lab's driver (the backend stands where comtypes and GamryCOM stand; there is no wire)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..hw.gamry import GamryOptions, gamry_handle
from ..registry import OpenRequest, SimRequest, SimStarted

__all__ = ["simulate_gamry_entry"]

SECTION = "IFC1000-00001"


@contextlib.asynccontextmanager
async def simulate_gamry_entry(req: SimRequest[GamryOptions]) -> AsyncIterator[SimStarted]:
    from labrig.simulators.gamry import simulate_gamry

    from .cell import engine_of

    async with simulate_gamry(engine_of(req.cell), section=SECTION) as com:
        open_req = OpenRequest(req.name, f"gamry://{SECTION}", 1, req.options, req.labels)
        async with gamry_handle(open_req, backend=com) as handle:
            yield SimStarted(handle=handle, model=com)
