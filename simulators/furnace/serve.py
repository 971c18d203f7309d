"""``labrig sim serve eurotherm``: register the furnace simulator with the registry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from labrig.simulators.furnace.simulator import start_eurotherm_sim
from labrig.simulators.registry import ServeOptions, register

__all__ = ["scaled_clock", "serve_eurotherm"]


def scaled_clock(speed: float) -> Callable[[], float]:
    """The loop's clock, running ``speed`` times faster from now (for real-clock serving)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    if speed == 1.0:
        return loop.time
    return lambda: t0 + (loop.time() - t0) * speed


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
