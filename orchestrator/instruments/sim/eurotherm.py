"""Simulated tube furnace behind a Eurotherm controller (Modbus RTU, loopback TCP)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..hw.eurotherm import EurothermOptions
from ..registry import ServeOptions, SimRequest, SimStarted

__all__ = ["serve_eurotherm", "simulate_eurotherm"]


@contextlib.asynccontextmanager
async def simulate_eurotherm(req: SimRequest[EurothermOptions]) -> AsyncIterator[SimStarted]:
    """The controller configured as the station says (series, Modbus unit, decimals),
    with the independent over-temperature limit at ``req.furnace_limit_C``."""
    from labrig.simulators.furnace import series_2400, series_3200, start_eurotherm_sim

    o = req.options
    series = (series_2400 if o.series == "2400" else series_3200)(decimals=o.decimals)
    sim = await start_eurotherm_sim(series=series, address=o.unit, limit_C=req.furnace_limit_C)
    async with sim:
        yield SimStarted(address=sim.address, model=sim)


@contextlib.asynccontextmanager
async def serve_eurotherm(opts: ServeOptions) -> AsyncIterator[str]:
    """A 2400 furnace with a 1000 °C independent limit."""
    from labrig.simulators.furnace import start_eurotherm_sim
    from labrig.simulators.furnace.serve import scaled_clock

    sim = await start_eurotherm_sim(
        transport="pty" if opts.pty else "tcp",
        limit_C=1000.0,
        now=scaled_clock(opts.speed),
        host=opts.host,
        port=opts.port or 0,
    )
    async with sim:
        yield sim.address
