"""``labrig sim serve eurotherm``: register the furnace simulator with the registry."""

from __future__ import annotations

import contextlib

from labrig.simulators.clock import scaled_clock
from labrig.simulators.furnace.simulator import start_eurotherm_sim
from labrig.simulators.registry import ServeOptions, register

__all__ = ["serve_eurotherm"]


async def serve_eurotherm(options: ServeOptions, stack: contextlib.AsyncExitStack) -> str:
    """A 2400 furnace with a 1000 °C independent limit."""
    sim = await start_eurotherm_sim(
        transport="pty" if options.pty else "tcp",
        limit_C=1000.0,
        now=scaled_clock(options.speed),
        host=options.host,
        port=options.port or 0,
    )
    stack.push_async_callback(sim.aclose)
    return sim.address


register("eurotherm", serve_eurotherm)
