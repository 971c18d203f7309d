"""Start a simulated Gamry for a driver: the COM backend, on the running loop's clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from labrig.simulators.engine import ChannelEngine

from ._com import SimGamryCom

__all__ = ["simulate_gamry"]


@contextlib.asynccontextmanager
async def simulate_gamry(
    engine: ChannelEngine | None = None,
    *,
    section: str = "IFC1000-12345",
    label: str = "Interface 1000",
    pstat_class: str = "GamryPC6Pstat",
    seed: int = 0,
) -> AsyncIterator[SimGamryCom]:
    """``async with simulate_gamry(engine) as com:`` then ``open_gamry(backend=com)``."""
    clock = asyncio.get_running_loop().time
    eng = engine if engine is not None else ChannelEngine(None, seed=seed, now=clock())
    com = SimGamryCom(clock)
    com.add_device(section, eng, label=label, pstat_class=pstat_class)
    yield com
