"""Simulated Alicat mass-flow controllers on one bus (ASCII, loopback TCP)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..hw.alicat import AlicatOptions
from ..registry import ServeOptions, SimRequest, SimStarted

__all__ = ["serve_alicat", "simulate_alicat"]


@contextlib.asynccontextmanager
async def simulate_alicat(req: SimRequest[AlicatOptions]) -> AsyncIterator[SimStarted]:
    """One controller per channel of the station's bus; a line named after a gas
    (``N2``, ``O2``, ...) starts with that gas selected, any other with N2."""
    from labrig.simulators.gas import GAS_TABLE, MfcParams, start_alicat_sim

    known = {name.lower(): name for name in GAS_TABLE.values()}
    units = {
        req.options.units[i]: known.get(req.labels.get(i, "").lower(), "N2")
        for i in range(req.channels)
    }
    sim = await start_alicat_sim(units=units, params=MfcParams(seed=req.seed))
    async with sim:
        yield SimStarted(address=sim.address, model=sim)


@contextlib.asynccontextmanager
async def serve_alicat(opts: ServeOptions) -> AsyncIterator[str]:
    """Two controllers (A: N2, B: O2) on one bus."""
    from labrig.simulators.furnace.serve import scaled_clock
    from labrig.simulators.gas import start_alicat_sim

    sim = await start_alicat_sim(
        transport="pty" if opts.pty else "tcp",
        now=scaled_clock(opts.speed),
        host=opts.host,
        port=opts.port or 0,
    )
    async with sim:
        yield sim.address
