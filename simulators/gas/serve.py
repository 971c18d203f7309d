"""``labrig sim serve alicat``: two controllers (A: N2, B: O2) on one bus."""

from __future__ import annotations

import contextlib

from labrig.simulators.clock import scaled_clock
from labrig.simulators.gas.simulator import start_alicat_sim
from labrig.simulators.registry import ServeOptions, register

__all__ = ["serve_alicat"]


async def serve_alicat(options: ServeOptions, stack: contextlib.AsyncExitStack) -> str:
    sim = await start_alicat_sim(
        transport="pty" if options.pty else "tcp",
        now=scaled_clock(options.speed),
        host=options.host,
        port=options.port or 0,
    )
    stack.push_async_callback(sim.aclose)
    return sim.address


register("alicat", serve_alicat)
